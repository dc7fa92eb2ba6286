"""Plain data types for schemas and records, and the schema round-robin.

Pure: no I/O, no providers. Everything here is what the rest of kgopt passes around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kgopt.errors import ConfigError


@dataclass(frozen=True)
class Schema:
    """An IEPile three-line schema (types, roles, type -> roles), or one InstructIE topic.

    For IEPile: ``types`` are entity or event types, ``roles`` relation names or argument
    roles, ``type_roles`` maps an event type to its roles.
    For an InstructIE topic: ``types`` is ``[topic]``, ``roles`` the topic's relations and
    ``signatures`` the ``headtype_relation_tailtype`` strings.
    ``descriptions`` maps a label (a type or a role) to what it means, in the words of a user
    schema file (``docs/own-data.md``); IEPile and InstructIE schemas have none.
    """

    types: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    type_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    signatures: tuple[str, ...] = ()
    descriptions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, types=(), roles=(), type_roles=None, signatures=(), descriptions=None) -> "Schema":
        return cls(
            types=tuple(types),
            roles=tuple(roles),
            type_roles={k: tuple(v) for k, v in (type_roles or {}).items()},
            signatures=tuple(signatures),
            descriptions={str(k): str(v) for k, v in (descriptions or {}).items() if v},
        )

    @classmethod
    def coerce(cls, value: Any) -> "Schema":
        """A Schema, or one from a manifest's dict form ``{types, roles, type_roles, signatures, descriptions}``."""
        if isinstance(value, Schema):
            return value
        if isinstance(value, dict):
            descriptions = value.get("descriptions") or {}
            if not isinstance(descriptions, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in descriptions.items()):
                raise ConfigError("schema descriptions must be an object mapping a label to its description (a string)")
            return cls.make(value.get("types", ()), value.get("roles", ()), value.get("type_roles", {}), value.get("signatures", ()),
                            descriptions)
        raise ConfigError(f"schema must be a kgopt Schema or a dict with types/roles/type_roles, got {type(value).__name__}")

    def to_json(self) -> dict[str, Any]:
        """The manifest form (what ``coerce`` reads back): types, roles, type_roles, and the
        descriptions when there are any (a schema without keeps the form it always had)."""
        out: dict[str, Any] = {"types": list(self.types), "roles": list(self.roles),
                               "type_roles": {k: list(v) for k, v in self.type_roles.items()}}
        if self.descriptions:
            out["descriptions"] = dict(self.descriptions)
        return out


def merge_schemas(schemas) -> Schema:
    """The union of several schemas, first-seen order (e.g. every source of a task)."""
    types: list[str] = []
    roles: list[str] = []
    type_roles: dict[str, tuple[str, ...]] = {}
    descriptions: dict[str, str] = {}
    for s in schemas:
        types += [t for t in s.types if t not in types]
        roles += [r for r in s.roles if r not in roles]
        for t, rs in s.type_roles.items():
            type_roles.setdefault(t, rs)
        for label, text in s.descriptions.items():
            descriptions.setdefault(label, text)
    return Schema.make(types, roles, type_roles, descriptions=descriptions)


@dataclass
class Record:
    """One annotated (or unannotated) text in IEPile's unified format.

    ``labels`` holds the gold list exactly as the unified files do: NER
    ``{"entity","entity_type"}``, RE ``{"head","relation","tail"}``, EE/EET/EEA
    ``{"event_trigger","event_type","arguments":[{"argument","role"}]}``, KG adds
    ``head_type``/``tail_type`` to RE's keys.
    """

    id: str
    text: str
    labels: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    cate: str | None = None  # InstructIE topic


def split_round_robin(items: list[Any], split_size: int) -> list[list[Any]]:
    """Split a schema's label list into chunks the way IEPile/OneKE build instructions.

    Full chunks of ``split_size``; a remainder of at least ``max(1, split_size // 2)``
    becomes its own chunk, a shorter one joins the previous chunk. An empty list gives
    one empty chunk so that every record is still asked once.
    """
    if split_size < 1:
        raise ValueError(f"split_size must be >= 1, got {split_size}")
    if not items:
        return [[]]
    full = max(len(items) // split_size, 1) * split_size
    chunks = [list(items[i : i + split_size]) for i in range(0, min(full, len(items)), split_size)]
    rest = list(items[full:])
    if rest:
        if len(rest) >= max(1, split_size // 2):
            chunks.append(rest)
        else:
            chunks[-1].extend(rest)
    return chunks
