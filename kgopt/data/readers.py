"""Readers for the real dataset layouts.

- IEPile unified per-source files: ``IE-zh|IE-en/<TASK>/<SOURCE>/{train,dev,test}.json``
  plus the three-line ``schema.json``.
- IEPile instruction files ``train.json``/``dev.json``: ``{"task","source","instruction","output"}``.
- InstructIE ``{train,valid,test}_{zh,en}.json`` plus ``schema_{zh,en}.json`` (topic ->
  [[signatures], [relations]]).
- kgopt's own format for a user's data (``docs/own-data.md``): JSON lines of unified records
  (``read_user_records``) plus one ``{"labels": [...]}`` schema object (``read_user_schema``).

Every reader streams and every bad record raises ``DataError`` naming file and line. Where a
task's files are (a tree, files, a user's folder) is the business of ``kgopt.data.layouts``;
``load_examples``, ``split_files`` and ``list_sources`` ask the layout of their ``data_dir``.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from kgopt.core.schema import Record, Schema
from kgopt.core.shapes import RECORD_ITEMS
from kgopt.core.tasks import check_lang, get_task
from kgopt.data.jsonio import iter_json, loads_checked
from kgopt.errors import DataError
from kgopt.locations import default_data_dir

# --- single files ---------------------------------------------------------------------------


def read_iepile_schema(path: str | os.PathLike) -> Schema:
    """IEPile's ``schema.json``: three JSON lines (types, roles, type -> roles)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("schema file not found", str(path))
    lines = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"not UTF-8 ({exc.reason})", str(path), lineno) from None
            if line.strip():
                lines.append((lineno, loads_checked(line, str(path), lineno)))
    if len(lines) != 3:
        raise DataError(f"expected 3 JSON lines (types, roles, type->roles), found {len(lines)}", str(path))
    (l1, types), (l2, roles), (l3, type_roles) = lines
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise DataError("line 1 must be a list of type names", str(path), l1)
    if not isinstance(roles, list) or not all(isinstance(t, str) for t in roles):
        raise DataError("line 2 must be a list of relation/role names", str(path), l2)
    if not isinstance(type_roles, dict) or not all(isinstance(v, list) for v in type_roles.values()):
        raise DataError("line 3 must be an object mapping type -> list of roles", str(path), l3)
    return Schema.make(types, roles, type_roles)


def check_labels(task_key: str, labels: Any, path: Path | None, lineno: int | None) -> list[dict[str, Any]]:
    """``labels`` as the list of ``task_key`` items (``RECORD_ITEMS``) it must be, else ``DataError``."""
    where = str(path) if path is not None else None
    if not isinstance(labels, list):
        raise DataError(f"field {task_key!r} must be a list", where, lineno)
    items = RECORD_ITEMS[task_key]
    for i, item in enumerate(labels):
        if not isinstance(item, dict):
            raise DataError(f"{task_key}[{i}] must be an object", where, lineno)
        missing = [k for k in items.fields if k not in item]
        if missing:
            raise DataError(f"{task_key}[{i}] lacks field(s) {', '.join(missing)}", where, lineno)
        problem = items.problem(item)
        if problem:
            raise DataError(f"{task_key}[{i}].{problem}", where, lineno)
    return labels


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any], str]]:
    """``(line, record, text)`` for each record object of a file that has a string ``text``."""
    for lineno, obj in iter_json(path):
        if not isinstance(obj, dict):
            raise DataError("a record must be a JSON object", str(path), lineno)
        text = obj.get("text")
        if not isinstance(text, str):
            raise DataError("field 'text' is missing or not a string", str(path), lineno)
        yield lineno, obj, text


def iter_unified(path: str | os.PathLike, label_key: str, source: str = "") -> Iterator[tuple[int, Record]]:
    """``(line, record)`` for each IEPile unified record of a file (``read_unified``)."""
    path = Path(path)
    for lineno, obj, text in _records(path):
        labels = check_labels(label_key, obj.get(label_key, []), path, lineno)
        rid = obj.get("id", lineno)
        yield lineno, Record(id=str(rid), text=text, labels=labels, source=source)


def read_unified(path: str | os.PathLike, label_key: str, source: str = "") -> Iterator[Record]:
    """IEPile unified records ``{"text", <label_key>: [...]}``; ``id`` is kept if present."""
    for _, rec in iter_unified(path, label_key, source):
        yield rec


@dataclass
class InstructionLine:
    """One line of an IEPile instruction file: one schema chunk of one record."""

    task: str
    source: str
    instruction: dict[str, Any]  # {"instruction", "schema", "input"}
    output: str
    line: int


def read_instruction_file(path: str | os.PathLike) -> Iterator[InstructionLine]:
    """IEPile ``train.json``/``dev.json`` lines (``instruction`` is itself a JSON string)."""
    path = Path(path)
    for lineno, obj in iter_json(path):
        if not isinstance(obj, dict):
            raise DataError("a line must be a JSON object", str(path), lineno)
        for k in ("task", "instruction"):
            if not isinstance(obj.get(k), str):
                raise DataError(f"field {k!r} is missing or not a string", str(path), lineno)
        try:
            instr = json.loads(obj["instruction"])
        except RecursionError:
            raise DataError("field 'instruction' is not a JSON string: nested too deeply", str(path), lineno) from None
        except ValueError as exc:
            raise DataError(f"field 'instruction' is not a JSON string: {exc}", str(path), lineno) from None
        if not isinstance(instr, dict) or not {"instruction", "schema", "input"} <= set(instr):
            raise DataError("field 'instruction' must encode {instruction, schema, input}", str(path), lineno)
        output = obj.get("output", "")
        if not isinstance(output, str):
            raise DataError("field 'output' must be a JSON string", str(path), lineno)
        yield InstructionLine(obj["task"], str(obj.get("source", "")), instr, output, lineno)


def read_instructie_schema(path: str | os.PathLike) -> dict[str, Schema]:
    """InstructIE ``schema_{zh,en}.json``: one object, topic -> [[signatures], [relations]]."""
    path = Path(path)
    if not path.is_file():
        raise DataError("schema file not found", str(path))
    try:  # one (usually pretty-printed) object: small, read whole
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", str(path), exc.lineno) from None
    except RecursionError:
        raise DataError("invalid JSON: nested too deeply", str(path)) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 ({exc.reason})", str(path)) from None
    if not isinstance(data, dict):
        raise DataError("expected one JSON object mapping topic -> [[signatures], [relations]]", str(path))
    out = {}
    for topic, value in data.items():
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, list) for v in value)):
            raise DataError(f"topic {topic!r}: expected [[signatures], [relations]]", str(path))
        out[topic] = Schema.make([topic], value[1], {}, value[0])
    return out


def iter_instructie(path: str | os.PathLike) -> Iterator[tuple[int, Record]]:
    """``(line, record)`` for each InstructIE record of a file (``read_instructie``)."""
    path = Path(path)
    for lineno, obj, text in _records(path):
        cate = obj.get("cate")
        if cate is not None and not isinstance(cate, str):
            raise DataError("field 'cate' must be a string", str(path), lineno)
        labels = check_labels("relation", obj.get("relation", []), path, lineno)
        yield lineno, Record(id=str(obj.get("id", lineno)), text=text, labels=labels, source="InstructIE", cate=cate)


def read_instructie(path: str | os.PathLike) -> Iterator[Record]:
    """InstructIE records ``{"id","cate","text","relation":[{head,head_type,relation,tail,tail_type}]}``."""
    for _, rec in iter_instructie(path):
        yield rec


# --- the user format: JSON lines of unified records, and a {"labels": [...]} schema ---------------

USER_TASKS = ("NER", "RE", "EE", "EET", "EEA")  # the task families the user format holds
USER_SCHEMA_KEYS = ("labels",)
USER_LABEL_KEYS = ("label", "description", "roles")


def _user_task(task: str, path: Path | None) -> Any:
    spec = get_task(task)
    if spec.name not in USER_TASKS:
        raise DataError(f"the user data format holds {', '.join(USER_TASKS)} records, not {spec.name} "
                        "(KG reads InstructIE's layout)", str(path) if path is not None else None)
    return spec


def _json_object_file(path: Path, what: str) -> tuple[Any, str]:
    """A small file holding one JSON document (read whole), and its text; errors name file and line."""
    if not path.is_file():
        raise DataError(f"{what} not found", str(path))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 ({exc.reason})", str(path)) from None
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", str(path), exc.lineno) from None
    except RecursionError:
        raise DataError("invalid JSON: nested too deeply", str(path)) from None


def _element_lines(text: str, key: str, expected: list[Any]) -> list[int | None]:
    """The line each element of the top-level list ``key`` starts on (for error messages), or
    Nones when the text cannot be followed (the decoded elements must be ``expected``)."""
    none = [None] * len(expected)
    m = re.search(r'"' + re.escape(key) + r'"\s*:\s*\[', text)
    if not m:
        return none
    decoder, pos, out = json.JSONDecoder(), m.end(), []
    ws = re.compile(r"[ \t\r\n]*")
    for want in expected:
        pos = ws.match(text, pos).end()
        try:
            got, end = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return none
        if got != want:
            return none
        out.append(text.count("\n", 0, pos) + 1)
        pos = ws.match(text, end).end()
        if text.startswith(",", pos):
            pos += 1
    return out


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def read_user_schema(path: str | os.PathLike, task: str) -> Schema:
    """A user schema file: one JSON object ``{"labels": [label, ...]}``, each label a string or
    ``{"label": str, "description": str?, "roles": [str]?}`` (roles: EE/EET/EEA event types only).

    NER's labels are entity types, RE's relations, the EE family's event types (with their
    argument roles). Every field is checked: a ``DataError`` names the file, the label's line
    and the field.
    """
    path = Path(path)
    spec = _user_task(task, path)
    events = spec.label_key == "event"
    data, text = _json_object_file(path, "schema file")
    where = str(path)
    if not isinstance(data, dict):
        raise DataError('a schema file holds one JSON object {"labels": [...]}', where, 1)
    unknown = [k for k in data if k not in USER_SCHEMA_KEYS]
    if unknown:
        raise DataError(f"unknown field(s) {', '.join(map(repr, unknown))}; a schema file holds \"labels\" only", where)
    if "labels" not in data:
        raise DataError("field 'labels' is missing", where)
    labels = data["labels"]
    if not isinstance(labels, list) or not labels:
        raise DataError("field 'labels' must be a non-empty list", where)
    lines = _element_lines(text, "labels", labels)
    names: list[str] = []
    roles: list[str] = []
    type_roles: dict[str, list[str]] = {}
    descriptions: dict[str, str] = {}
    first_line: dict[str, int | None] = {}
    for i, (item, line) in enumerate(zip(labels, lines)):
        field_name = f"labels[{i}]"
        if isinstance(item, str):
            item = {"label": item}
        elif not isinstance(item, dict):
            raise DataError(f"field {field_name!r} must be a string or an object {{label, description?, roles?}}", where, line)
        unknown = [k for k in item if k not in USER_LABEL_KEYS]
        if unknown:
            raise DataError(f"field {field_name!r}: unknown field(s) {', '.join(map(repr, unknown))} "
                            f"(a label has {', '.join(USER_LABEL_KEYS)})", where, line)
        name = item.get("label")
        if not _nonempty_str(name):
            raise DataError(f"field '{field_name}.label' is missing or not a non-empty string", where, line)
        if name in first_line:
            at = f" (first on line {first_line[name]})" if first_line[name] else ""
            raise DataError(f"field '{field_name}.label': label {name!r} is listed twice{at}", where, line)
        first_line[name] = line
        desc = item.get("description")
        if desc is not None and not isinstance(desc, str):
            raise DataError(f"field '{field_name}.description' must be a string", where, line)
        if "roles" in item:
            if not events:
                raise DataError(f"field '{field_name}.roles': only event types (EE, EET, EEA) have roles; this is {spec.name}", where, line)
            rs = item["roles"]
            if not isinstance(rs, list) or not all(_nonempty_str(r) for r in rs):
                raise DataError(f"field '{field_name}.roles' must be a list of non-empty strings", where, line)
            if len(set(rs)) != len(rs):
                raise DataError(f"field '{field_name}.roles' lists a role twice", where, line)
        names.append(name)
        if desc and desc.strip():
            descriptions[name] = desc.strip()
        if events:
            type_roles[name] = list(item.get("roles", []))
            roles += [r for r in type_roles[name] if r not in roles]
    if events:
        return Schema.make(names, roles, type_roles, descriptions=descriptions)
    if spec.label_key == "relation":
        return Schema.make((), names, {}, descriptions=descriptions)
    return Schema.make(names, (), {}, descriptions=descriptions)


def is_user_schema(path: str | os.PathLike) -> bool:
    """Whether a schema file is in the user format (one JSON object) rather than IEPile's lines."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).lstrip(b" \t\r\n\xef\xbb\xbf")
    except OSError:
        return False
    return head.startswith(b"{")  # IEPile's schema starts with its list of types


def read_schema_file(path: str | os.PathLike, task: str) -> Schema:
    """A schema file for ``task`` in either format: the user one, or IEPile's three lines."""
    return read_user_schema(path, task) if is_user_schema(path) else read_iepile_schema(path)


def _user_items(key: str, labels: Any, path: Path, lineno: int) -> list[dict[str, Any]]:
    """``check_labels`` and more: every span and label field a non-empty string."""
    check_labels(key, labels, path, lineno)
    items = RECORD_ITEMS[key]
    for i, item in enumerate(labels):
        for f in items.fields:
            if f == "arguments":
                for j, arg in enumerate(item[f]):
                    for g in ("argument", "role"):
                        if not _nonempty_str(arg[g]):
                            raise DataError(f"field '{key}[{i}].arguments[{j}].{g}' must be a non-empty string", str(path), lineno)
            elif not _nonempty_str(item[f]):
                raise DataError(f"field '{key}[{i}].{f}' must be a non-empty string", str(path), lineno)
    return labels


def user_record(obj: Any, label_key: str, path: Path, lineno: int, source: str = "user") -> Record:
    """One line of a user records file as a ``Record``, every field checked (``DataError`` names
    the file, the line and the field). ``id`` is optional (a string or an integer; default the
    line number); the ``label_key`` list is required (empty for a text with nothing to extract)."""
    where = str(path)
    if not isinstance(obj, dict):
        raise DataError("a record must be a JSON object", where, lineno)
    if "text" not in obj:
        raise DataError("field 'text' is missing", where, lineno)
    text = obj["text"]
    if not _nonempty_str(text):
        raise DataError("field 'text' must be a non-empty string", where, lineno)
    rid = obj.get("id", lineno)
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
        raise DataError("field 'id' must be a non-empty string or an integer", where, lineno)
    if label_key not in obj:
        others = [k for k in RECORD_ITEMS if k in obj]
        hint = f"; the record has {others[0]!r}: is the task right?" if others else " (an empty list if the text has none)"
        raise DataError(f"field {label_key!r} is missing{hint}", where, lineno)
    labels = _user_items(label_key, obj[label_key], path, lineno)
    return Record(id=str(rid), text=text, labels=labels, source=source)


def read_user_records(path: str | os.PathLike, task: str, source: str = "user") -> Iterator[Record]:
    """A user records file: JSON lines ``{"id"?, "text", <entity|relation|event>: [...]}`` (the
    unified records of ``read_unified``, checked strictly); ids must not repeat."""
    path = Path(path)
    spec = _user_task(task, path)
    seen: dict[str, int] = {}
    for lineno, obj in iter_json(path):
        rec = user_record(obj, spec.label_key, path, lineno, source)
        if isinstance(obj, dict) and "id" in obj:
            if rec.id in seen:
                raise DataError(f"field 'id': {rec.id!r} is the id of line {seen[rec.id]} too", str(path), lineno)
            seen[rec.id] = lineno
        yield rec


# --- layouts: a data directory, a task, a language, a split --------------------------------------


def _base(data_dir) -> Path:
    if data_dir is None or data_dir == "":
        return default_data_dir()
    if not isinstance(data_dir, (str, os.PathLike)):
        raise DataError(f"{data_dir!r} is not a data folder (this data has another layout)")
    return Path(data_dir)


def iepile_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The IEPile root: ``data_dir`` itself if it holds IE-zh/IE-en, else ``data_dir/iepile``."""
    base = _base(data_dir)
    if (base / "IE-zh").is_dir() or (base / "IE-en").is_dir():
        return base
    for name in ("iepile", "IEPile", "IEPILE"):
        if (base / name).is_dir():
            return base / name
    raise DataError("no IEPile data here (expected IE-zh/ or IE-en/, or an iepile/ folder)", str(base))


def instructie_root(data_dir: str | os.PathLike | None = None) -> Path:
    base = _base(data_dir)
    if any(base.glob("schema_*.json")):
        return base
    for name in ("InstructIE", "instructie"):
        if (base / name).is_dir():
            return base / name
    raise DataError("no InstructIE data here (expected schema_zh.json, or an InstructIE/ folder)", str(base))


SPLITS = ("train", "dev", "valid", "test")  # dev and valid name the same split


def list_sources(task: str, lang: str, data_dir=None) -> list[str]:
    """The sources of a task in ``data_dir`` (a path, or a ``kgopt.data.layouts`` layout such as ``UserData``)."""
    from kgopt.data.layouts import layout_of

    spec = get_task(task)
    check_lang(lang)
    return layout_of(spec, data_dir).sources(spec, lang)


@dataclass
class AskedRecord:
    """A record with the schema it is asked against (a dspy.Example is one schema chunk of it)."""

    record: Record
    schema: Schema


def load_examples(
    task: str,
    lang: str,
    split: str = "test",
    data_dir=None,
    source: str | None = None,
    limit: int | None = None,
    skip: int = 0,
) -> list[AskedRecord]:
    """Records of one task/language/split, each with its schema. ``skip`` and ``limit`` apply per
    source: the first ``skip`` records of each source are left out, then ``limit`` are kept (so a
    split can be measured in parts: ``skip=0, limit=20``, then ``skip=20, limit=20``).

    ``data_dir``: a data root (IEPile tree and InstructIE files), a folder of a user's data
    (``train.jsonl``, ``dev.jsonl``, ``test.jsonl``, ``schema.json``) or a layout object
    (``kgopt.data.layouts.UserData(train=..., dev=..., schema=...)``); None: the default root.
    """
    from kgopt.data.layouts import layout_of

    spec = get_task(task)
    check_lang(lang)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if skip < 0:
        raise DataError(f"skip must be 0 or more records, got {skip}")
    examples = layout_of(spec, data_dir).examples(spec, lang, split, source, None if limit is None else skip + limit)
    if not skip:
        return examples
    seen: Counter = Counter()
    kept = []
    for ex in examples:
        seen[ex.record.source] += 1
        if seen[ex.record.source] > skip:
            kept.append(ex)
    return kept


def split_files(task: str, lang: str, split: str, data_dir=None, source: str | None = None) -> list[Path]:
    """The files ``load_examples`` reads for a split (data and schema), for hashing into manifests."""
    from kgopt.data.layouts import layout_of

    spec = get_task(task)
    return layout_of(spec, data_dir).split_files(spec, lang, split, source)
