"""Readers for the real dataset layouts.

- IEPile unified per-source files: ``IE-zh|IE-en/<TASK>/<SOURCE>/{train,dev,test}.json``
  plus the three-line ``schema.json``.
- IEPile instruction files ``train.json``/``dev.json``: ``{"task","source","instruction","output"}``.
- InstructIE ``{train,valid,test}_{zh,en}.json`` plus ``schema_{zh,en}.json`` (topic ->
  [[signatures], [relations]]).

Every reader streams and every bad record raises ``DataError`` naming file and line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from kgopt.core.schema import Record, Schema
from kgopt.core.shapes import RECORD_ITEMS
from kgopt.core.tasks import TASK_FOLDER, check_lang, get_task
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


def read_unified(path: str | os.PathLike, label_key: str, source: str = "") -> Iterator[Record]:
    """IEPile unified records ``{"text", <label_key>: [...]}``; ``id`` is kept if present."""
    path = Path(path)
    for lineno, obj, text in _records(path):
        labels = check_labels(label_key, obj.get(label_key, []), path, lineno)
        rid = obj.get("id", lineno)
        yield Record(id=str(rid), text=text, labels=labels, source=source)


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


def read_instructie(path: str | os.PathLike) -> Iterator[Record]:
    """InstructIE records ``{"id","cate","text","relation":[{head,head_type,relation,tail,tail_type}]}``."""
    path = Path(path)
    for lineno, obj, text in _records(path):
        cate = obj.get("cate")
        if cate is not None and not isinstance(cate, str):
            raise DataError("field 'cate' must be a string", str(path), lineno)
        labels = check_labels("relation", obj.get("relation", []), path, lineno)
        yield Record(id=str(obj.get("id", lineno)), text=text, labels=labels, source="InstructIE", cate=cate)


# --- layouts: a data directory, a task, a language, a split --------------------------------------



def iepile_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The IEPile root: ``data_dir`` itself if it holds IE-zh/IE-en, else ``data_dir/iepile``."""
    base = Path(data_dir) if data_dir else default_data_dir()
    if (base / "IE-zh").is_dir() or (base / "IE-en").is_dir():
        return base
    for name in ("iepile", "IEPile", "IEPILE"):
        if (base / name).is_dir():
            return base / name
    raise DataError("no IEPile data here (expected IE-zh/ or IE-en/, or an iepile/ folder)", str(base))


def instructie_root(data_dir: str | os.PathLike | None = None) -> Path:
    base = Path(data_dir) if data_dir else default_data_dir()
    if any(base.glob("schema_*.json")):
        return base
    for name in ("InstructIE", "instructie"):
        if (base / name).is_dir():
            return base / name
    raise DataError("no InstructIE data here (expected schema_zh.json, or an InstructIE/ folder)", str(base))


SPLITS = ("train", "dev", "valid", "test")  # dev and valid name the same split


def _split_file(split: str, dataset: str) -> str:
    if dataset == "instructie":
        return {"dev": "valid"}.get(split, split)
    return {"valid": "dev"}.get(split, split)


def list_sources(task: str, lang: str, data_dir=None) -> list[str]:
    spec = get_task(task)
    check_lang(lang)
    if spec.dataset == "instructie":
        return ["InstructIE"]
    folder = iepile_root(data_dir) / f"IE-{lang}" / TASK_FOLDER[spec.name]
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "schema.json").is_file())


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
) -> list[AskedRecord]:
    """Records of one task/language/split, each with its schema. ``limit`` applies per source."""
    spec = get_task(task)
    check_lang(lang)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    out: list[AskedRecord] = []
    if spec.dataset == "instructie":
        root = instructie_root(data_dir)
        schemas = read_instructie_schema(root / f"schema_{lang}.json")
        path = root / f"{_split_file(split, 'instructie')}_{lang}.json"
        for rec in read_instructie(path):
            if limit is not None and len(out) >= limit:
                break
            if rec.cate not in schemas:
                raise DataError(f"record {rec.id}: topic {rec.cate!r} is not in schema_{lang}.json", str(path))
            out.append(AskedRecord(rec, schemas[rec.cate]))
        return out
    sources = [source] if source else list_sources(spec.name, lang, data_dir)
    read_any = False
    if not sources:
        raise DataError(f"no {spec.name} sources for {lang}", str(iepile_root(data_dir) / f"IE-{lang}" / TASK_FOLDER[spec.name]))
    for src in sources:
        folder = iepile_root(data_dir) / f"IE-{lang}" / TASK_FOLDER[spec.name] / src
        if not folder.is_dir():
            raise DataError(f"unknown source {src!r} (have: {', '.join(list_sources(spec.name, lang, data_dir))})", str(folder))
        schema = read_iepile_schema(folder / "schema.json")
        path = folder / f"{_split_file(split, 'iepile')}.json"
        if not source and not path.is_file():
            continue  # e.g. DeepKE_sample ships a test split only
        read_any = True
        n = 0
        for rec in read_unified(path, spec.label_key, src):
            if limit is not None and n >= limit:
                break
            # EEA is asked with the record's triggers: a record with no event asks nothing.
            if spec.given_triggers and not rec.labels:
                continue
            out.append(AskedRecord(rec, schema))
            n += 1
    if not read_any:
        raise DataError(f"no {spec.name} source has a {split} split", str(iepile_root(data_dir) / f"IE-{lang}" / TASK_FOLDER[spec.name]))
    return out


def split_files(task: str, lang: str, split: str, data_dir=None, source: str | None = None) -> list[Path]:
    """The files ``load_examples`` reads for a split (data and schema), for hashing into manifests."""
    spec = get_task(task)
    if spec.dataset == "instructie":
        root = instructie_root(data_dir)
        return [root / f"{_split_file(split, 'instructie')}_{lang}.json", root / f"schema_{lang}.json"]
    out = []
    for src in [source] if source else list_sources(spec.name, lang, data_dir):
        folder = iepile_root(data_dir) / f"IE-{lang}" / TASK_FOLDER[spec.name] / src
        path = folder / f"{_split_file(split, 'iepile')}.json"
        if path.is_file():
            out += [path, folder / "schema.json"]
    return out
