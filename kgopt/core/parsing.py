"""Model text -> the task's canonical structure (IEPile unified labels).

Model output is untrusted input: nothing here raises on it. ``parse_answer`` returns what
it could read plus a status and the list of what it dropped and why.

Two modes:
- ``official``: bare ``json.loads``, as the IEPile evaluator does.
- ``lenient``: code fences, prose around the JSON, trailing commas, single quotes and
  truncated output are repaired (json-repair), then the same validation runs.
Validation is against the chunk's schema: labels that were not asked are dropped, a lone
string where a list belongs is wrapped, ``"NAN"`` and empty values are dropped, RE accepts
``subject/object`` and ``head/tail``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kgopt.core.tasks import NAN, TaskSpec

OK = "ok"  # strict JSON and every item valid
REPAIRED = "repaired"  # needed lenient repair to read
PARTIAL = "partial"  # read, but some items were dropped
INVALID = "invalid"  # nothing usable (not JSON / not an object)
EMPTY = "empty"  # the model said nothing
ERROR = "error"  # no answer at all: the LLM call failed (set by the caller, never by the parser)

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.S)


@dataclass
class ParseResult:
    labels: list[dict[str, Any]]
    status: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in (OK, REPAIRED, PARTIAL)


def load_json(raw: Any, mode: str = "lenient") -> tuple[Any, str]:
    """Decode model text. Returns ``(object or None, status)``; never raises."""
    if not isinstance(raw, str):
        return None, INVALID
    if not raw.strip():
        return None, EMPTY
    try:
        # stdlib json, not ujson: the official evaluator's json.loads decides what is valid.
        return json.loads(raw), OK
    except (ValueError, RecursionError):
        if mode == "official":
            return None, INVALID
    return _repair(raw)


def _repair(raw: str) -> tuple[Any, str]:
    import json_repair  # imported lazily: only lenient parsing needs it

    text = raw.strip()
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1).strip()
    # Prose around the JSON: start at the first bracket.
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return None, INVALID
    text = text[min(starts):]
    try:
        obj = json_repair.loads(text)
    except Exception:  # json-repair is robust, but model output is adversarial input
        return None, INVALID
    if obj in ("", None) or (isinstance(obj, (dict, list)) and not obj and text[:1] not in "{["):
        return None, INVALID
    return obj, REPAIRED


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _clean_str(value: Any) -> str | None:
    """A usable span string, or None (NAN, empty, or not a scalar)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        return None
    if value == NAN or not value.strip():
        return None
    return value


class _Collector:
    def __init__(self) -> None:
        self.labels: list[dict[str, Any]] = []
        self.problems: list[str] = []

    def drop(self, why: str) -> None:
        if len(self.problems) < 50:  # a runaway output must not make a runaway report
            self.problems.append(why)


def _entities(obj, chunk, spec, col, key_item, key_type):
    allowed = set(chunk)
    for label, values in obj.items():
        if label not in allowed:
            col.drop(f"label not in schema: {label!r}")
            continue
        for v in _as_list(values):
            s = _clean_str(v)
            if s is None:
                if v != NAN and v != "":
                    col.drop(f"{label}: not a string: {str(v)[:40]!r}")
                continue
            item = {key_item: s, key_type: label}
            if spec.shape == "triggers":
                item["arguments"] = []
            col.labels.append(item)


def _pair(v: Any) -> tuple[Any, Any, dict]:
    if isinstance(v, dict):
        head = v.get("subject", v.get("head"))
        tail = v.get("object", v.get("tail"))
        return head, tail, v
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return v[0], v[1], {}
    return None, None, {}


def _triples(obj, chunk, spec, col):
    if spec.shape == "typed_triples":
        allowed = {r for it in chunk for r in it["relations"]}
    else:
        allowed = set(chunk)
    for rel, values in obj.items():
        if rel not in allowed:
            col.drop(f"relation not in schema: {rel!r}")
            continue
        for v in _as_list(values):
            h, t, extra = _pair(v)
            h, t = _clean_str(h), _clean_str(t)
            if h is None or t is None:
                col.drop(f"{rel}: incomplete triple {str(v)[:60]!r}")
                continue
            item = {"head": h, "relation": rel, "tail": t}
            if spec.shape == "typed_triples":
                item = {
                    "head": h,
                    "head_type": _clean_str(extra.get("head_type", extra.get("subject_type"))) or "",
                    "relation": rel,
                    "tail": t,
                    "tail_type": _clean_str(extra.get("tail_type", extra.get("object_type"))) or "",
                }
            col.labels.append(item)


def _arguments(args: Any, roles: set[str], label: str, col) -> list[dict[str, str]]:
    out = []
    if not isinstance(args, dict):
        if args not in (None, NAN, "", [], {}):
            col.drop(f"{label}: arguments are not an object")
        return out
    for role, value in args.items():
        if role not in roles:
            col.drop(f"{label}: role not in schema: {role!r}")
            continue
        for v in _as_list(value):
            s = _clean_str(v)
            if s is not None:
                out.append({"argument": s, "role": role})
    return out


def _events(obj, chunk, spec, col):
    roles = {it["event_type"]: set(it["arguments"]) for it in chunk}
    triggers = {it["event_type"]: it.get("trigger") for it in chunk}
    for etype, values in obj.items():
        if etype not in roles:
            col.drop(f"event type not in schema: {etype!r}")
            continue
        for v in _as_list(values):
            if not isinstance(v, dict):
                if v not in (NAN, "", None):
                    col.drop(f"{etype}: event is not an object")
                continue
            if spec.shape == "events":
                trig = _clean_str(v.get("trigger"))
                if trig is None:
                    col.drop(f"{etype}: event without a trigger")
                    continue
                args = _arguments(v.get("arguments", {}), roles[etype], etype, col)
            else:  # EEA answers are {role: value}; the trigger was given in the schema
                given = triggers.get(etype)
                trig = given[0] if isinstance(given, list) and len(given) == 1 else ""
                args = _arguments(v, roles[etype], etype, col)
            col.labels.append({"event_trigger": trig, "event_type": etype, "arguments": args})


def _entity_attributes(obj, chunk, spec, col):
    """OneKE KG: ``{entity_type: {head: {attribute: tail or [tails]}}}`` -> typed-head triples."""
    attributes = {it["entity_type"]: set(it["attributes"]) for it in chunk}
    for etype, heads in obj.items():
        if etype not in attributes:
            col.drop(f"entity type not in schema: {etype!r}")
            continue
        if not isinstance(heads, dict):
            if heads not in (NAN, "", None, [], {}):
                col.drop(f"{etype}: entities are not an object")
            continue
        for head, attrs in heads.items():
            h = _clean_str(head)
            if h is None or not isinstance(attrs, dict):
                if attrs not in (NAN, "", None, [], {}):
                    col.drop(f"{etype}: {str(head)[:40]!r} has no attribute object")
                continue
            for attr, tails in attrs.items():
                if attr not in attributes[etype]:
                    col.drop(f"{etype}: attribute not in schema: {attr!r}")
                    continue
                for v in _as_list(tails):
                    t = _clean_str(v)
                    if t is not None:
                        col.labels.append({"head": h, "head_type": etype, "relation": attr, "tail": t, "tail_type": ""})


def _normalise_top(obj: Any, spec: TaskSpec) -> Any:
    """Accept a few common near-misses of the top-level shape."""
    if isinstance(obj, list) and spec.shape in ("triples", "typed_triples"):
        # InstructIE style: [{"head","relation","tail",...}] -> {relation: [...]}
        grouped: dict[str, list] = {}
        for it in obj:
            if isinstance(it, dict) and isinstance(it.get("relation"), str):
                grouped.setdefault(it["relation"], []).append(it)
        return grouped if grouped else obj
    if isinstance(obj, list) and len(obj) == 1 and isinstance(obj[0], dict):
        return obj[0]
    return obj


def parse_answer(spec: TaskSpec, raw: Any, chunk: list[Any], mode: str = "lenient") -> ParseResult:
    """Parse one model answer for one schema chunk into unified labels. Never raises."""
    try:
        return _parse(spec, raw, chunk, mode)
    except Exception as exc:  # last line of defence: model output must never crash a run
        return ParseResult([], INVALID, [f"parser error: {type(exc).__name__}"])


def _parse(spec: TaskSpec, raw: Any, chunk: list[Any], mode: str) -> ParseResult:
    obj, status = load_json(raw, mode)
    if obj is None:
        return ParseResult([], status, [] if status == EMPTY else ["not JSON"])
    if mode == "lenient":
        obj = _normalise_top(obj, spec)
    if not isinstance(obj, dict):
        return ParseResult([], INVALID, [f"answer is a {type(obj).__name__}, not an object"])
    col = _Collector()
    if spec.shape == "entities":
        _entities(obj, chunk, spec, col, "entity", "entity_type")
    elif spec.shape == "triggers":
        _entities(obj, chunk, spec, col, "event_trigger", "event_type")
    elif spec.shape in ("triples", "typed_triples"):
        _triples(obj, chunk, spec, col)
    elif spec.shape == "entity_attributes":
        _entity_attributes(obj, chunk, spec, col)
    else:
        _events(obj, chunk, spec, col)
    if col.problems and status == OK:
        status = PARTIAL
    return ParseResult(col.labels, status, col.problems)


def merge_labels(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Merge the answers of a record's chunks, dropping exact duplicates, keeping order."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for labels in parts:
        for item in labels:
            key = json.dumps(item, sort_keys=True, ensure_ascii=False)
            if key not in seen:
                seen.add(key)
                out.append(item)
    return out
