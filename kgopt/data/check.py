"""``kgopt data check``: is this data readable, and what is in it.

``check_data(path, task=None, lang=None)`` reads a user's data (a folder in the format of
``docs/own-data.md``, a ``UserData`` of named files, or one records file), an IEPile unified tree
or InstructIE's files, and returns a ``DataReport``:

- every error, as ``FILE:LINE: field ...: what is wrong`` (a user's records file is read on past
  a bad line, so that one run lists them all; IEPile's and InstructIE's files stop at their first);
- per data set (a source, with one schema): records per split, records with no labels, how
  often each label occurs per split, labels in the data that the schema lacks and labels of the
  schema the data never uses;
- warnings: annotated spans that are not in their record's text (they can never be extracted
  as they are written).

Nothing is read into memory whole but a schema; nothing is sent to a model.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from kgopt.core.schema import Record, Schema
from kgopt.core.shapes import RECORD_ITEMS
from kgopt.core.tasks import TASK_FOLDER, check_lang, get_task
from kgopt.data.jsonio import iter_json_or_errors
from kgopt.data.layouts import USER_FILES, UserData
from kgopt.data.readers import (
    USER_TASKS,
    iepile_root,
    instructie_root,
    is_user_schema,
    iter_instructie,
    iter_unified,
    read_iepile_schema,
    read_instructie_schema,
    read_user_schema,
    user_record,
)
from kgopt.errors import DataError, KgoptError

__all__ = ["DataReport", "DataSet", "SplitStats", "check_data"]

MAX_ERRORS = 200  # listed; a file with more is broken throughout, the first ones say how
MAX_WARNINGS = 50
FOLDER_KEY = {"NER": "entity", "RE": "relation", "KG": "relation", "EE": "event"}  # IEPile task folder -> record key


@dataclass
class SplitStats:
    """One file of one split."""

    split: str
    file: str
    records: int = 0
    no_labels: int = 0
    labels: Counter = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "records": self.records, "no_labels": self.no_labels, "labels": dict(self.labels.most_common())}


@dataclass
class DataSet:
    """One source's data: its schema and its splits."""

    name: str
    task: str  # the record family's task: NER, RE, EE (or EET/EEA when asked), KG
    lang: str | None
    schema_file: str | None
    schema_labels: list[str] = field(default_factory=list)
    described: int = 0  # labels with a description
    splits: list[SplitStats] = field(default_factory=list)
    unknown: Counter = field(default_factory=Counter)  # labels (EE: "type/role") the schema lacks, with their counts

    @property
    def used(self) -> set[str]:
        return {label for s in self.splits for label in s.labels}

    def not_in_data(self) -> list[str]:
        used = self.used
        return [label for label in self.schema_labels if label not in used]

    def not_in_schema(self) -> list[str]:
        return [label for label, _ in self.unknown.most_common()]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "lang": self.lang,
            "schema": self.schema_file,
            "schema_labels": self.schema_labels,
            "described": self.described,
            "splits": {s.split: s.to_json() for s in self.splits},
            "not_in_schema": dict(self.unknown.most_common()),
            "not_in_data": self.not_in_data(),
        }


@dataclass
class DataReport:
    path: str
    layout: str  # "user", "iepile", "instructie", "iepile+instructie"
    datasets: list[DataSet] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    errors_total: int = 0
    warnings: list[str] = field(default_factory=list)
    warnings_total: int = 0

    @property
    def ok(self) -> bool:
        return self.errors_total == 0

    def error(self, exc: DataError | str) -> None:
        self.errors_total += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(str(exc))

    def warn(self, text: str) -> None:
        self.warnings_total += 1
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(text)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "layout": self.layout,
            "ok": self.ok,
            "errors": self.errors,
            "errors_total": self.errors_total,
            "warnings": self.warnings,
            "warnings_total": self.warnings_total,
            "datasets": [d.to_json() for d in self.datasets],
        }

    def text(self) -> str:
        """The report as ``kgopt data check`` prints it (errors excepted: the CLI prints those)."""
        out = [f"{self.path}: {self.layout} data, {len(self.datasets)} data set{'s' if len(self.datasets) != 1 else ''}"]
        for d in self.datasets:
            out.append("")
            out.append(f"== {d.name} ({d.task}{'/' + d.lang if d.lang else ''})")
            if d.schema_file:
                out.append(f"schema {d.schema_file}: {len(d.schema_labels)} labels, {d.described} with a description")
            if d.splits:
                width = max(len(s.split) for s in d.splits)
                out.append(f"{'split':<{max(width, 5)}}  records  no labels  file")
                out += [f"{s.split:<{max(width, 5)}}  {s.records:>7}  {s.no_labels:>9}  {s.file}" for s in d.splits]
                labels = list(d.schema_labels) + [lab for lab in sorted(d.used) if lab not in d.schema_labels]
                if labels:
                    lw = max(5, *(_width(lab) for lab in labels))
                    out.append(_pad("label", lw) + "  " + "  ".join(f"{s.split:>{max(5, len(s.split))}}" for s in d.splits))
                    for lab in labels:
                        out.append(_pad(lab, lw) + "  " + "  ".join(f"{s.labels.get(lab, 0):>{max(5, len(s.split))}}" for s in d.splits))
            missing, unused = d.not_in_schema(), d.not_in_data()
            out.append("in the data, not in the schema: " + (", ".join(f"{lab} ({d.unknown[lab]})" for lab in missing) if missing else "none"))
            out.append("in the schema, not in the data: " + (", ".join(unused) if unused else "none"))
        out.append("")
        if self.warnings_total:
            out.append(f"{self.warnings_total} warning{'s' if self.warnings_total != 1 else ''}:")
            out += [f"  {w}" for w in self.warnings]
            if self.warnings_total > len(self.warnings):
                out.append(f"  ... and {self.warnings_total - len(self.warnings)} more")
        errors = f"{self.errors_total} error{'s' if self.errors_total != 1 else ''}" if self.errors_total else "no errors"
        out.append(f"{errors}, {self.warnings_total} warning{'s' if self.warnings_total != 1 else ''}")
        return "\n".join(out)


def _width(text: str) -> int:
    """Columns a string takes in a terminal (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


# --- records against their schema ----------------------------------------------------------


def _label_of(key: str, item: dict[str, Any]) -> str:
    return item.get(RECORD_ITEMS[key].label_field, "")


class _Counter:
    """Counts one data set's records into a split, and compares their labels with the schema."""

    def __init__(self, report: DataReport, data: DataSet, key: str):
        self.report, self.data, self.key = report, data, key

    def add(self, stats: SplitStats, rec: Record, path: Path, line: int | None, allowed: Schema | None) -> None:
        stats.records += 1
        if not rec.labels:
            stats.no_labels += 1
        items = RECORD_ITEMS[self.key]
        for i, item in enumerate(rec.labels):
            label = _label_of(self.key, item)
            stats.labels[label] += 1
            if allowed is not None:
                labels = items.schema_labels(allowed)
                if label not in labels:
                    self.data.unknown[f"{rec.cate}/{label}" if rec.cate else label] += 1
                elif self.key == "event":
                    roles = allowed.type_roles.get(label, ())
                    for a in item.get("arguments") or []:
                        if isinstance(a, dict) and a.get("role") not in roles:
                            self.data.unknown[f"{label}/{a.get('role')}"] += 1
            for span_field, span in _spans(self.key, item):
                if isinstance(span, str) and span and span not in rec.text:
                    where = f"{path}:{line}" if line is not None else str(path)
                    self.report.warn(f"{where}: {self.key}[{i}].{span_field} {span[:60]!r} is not in the text")


def _spans(key: str, item: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    if key == "entity":
        yield "entity", item.get("entity")
    elif key == "relation":
        yield "head", item.get("head")
        yield "tail", item.get("tail")
    else:
        yield "event_trigger", item.get("event_trigger")
        for j, a in enumerate(item.get("arguments") or []):
            if isinstance(a, dict):
                yield f"arguments[{j}].argument", a.get("argument")


def _schema_labels(key: str, schema: Schema) -> list[str]:
    return list(RECORD_ITEMS[key].schema_labels(schema))


# --- a user's data ---------------------------------------------------------------------------


def _infer_task(files: list[Path], schema: Path | None) -> str:
    """NER, RE or EE, from the record keys the files use (and an EE schema's roles)."""
    keys: set[str] = set()
    for path in files:
        for n, (_, obj) in enumerate(iter_json_or_errors(path)):
            if isinstance(obj, dict):
                keys |= {k for k in RECORD_ITEMS if k in obj}
            if n >= 200:
                break
    family = {"entity": "NER", "relation": "RE", "event": "EE"}
    if len(keys) == 1:
        return family[keys.pop()]
    where = ", ".join(str(p) for p in files) or str(schema)
    if not keys:
        raise DataError("cannot tell the task: no record has an 'entity', 'relation' or 'event' list; pass --task", where)
    raise DataError(f"cannot tell the task: the records have {', '.join(sorted(map(repr, keys)))}; pass --task", where)


def _check_user(report: DataReport, files: dict[str, Path | None], schema_path: Path | None, task: str | None, lang: str | None) -> None:
    present = [p for p in files.values() if p is not None and p.is_file()]
    if task is None:
        if not present:
            return  # the missing files are the errors
        try:
            task = _infer_task(present, schema_path)
        except DataError as exc:
            report.error(exc)
            return
    spec = get_task(task)
    if spec.name not in USER_TASKS:
        raise DataError(f"the user data format holds {', '.join(USER_TASKS)} records, not {spec.name} (KG reads InstructIE's files)",
                        str(schema_path or (present[0] if present else "")))
    data = DataSet(UserData.SOURCE, spec.name, lang, str(schema_path) if schema_path else None)
    report.datasets.append(data)
    schema = None
    if schema_path is not None:
        try:
            schema = read_user_schema(schema_path, spec.name)
            data.schema_labels = _schema_labels(spec.label_key, schema)
            data.described = len(schema.descriptions)
        except DataError as exc:
            report.error(exc)
    counter = _Counter(report, data, spec.label_key)
    for split, path in files.items():
        if path is None:
            continue
        stats = SplitStats(split, str(path))
        data.splits.append(stats)
        seen: dict[str, int] = {}
        for line, obj in iter_json_or_errors(path):
            if isinstance(obj, DataError):
                report.error(obj)
                continue
            try:
                rec = user_record(obj, spec.label_key, path, line)
            except DataError as exc:
                report.error(exc)
                continue
            if "id" in obj:
                if rec.id in seen:
                    report.error(DataError(f"field 'id': {rec.id!r} is the id of line {seen[rec.id]} too", str(path), line))
                seen.setdefault(rec.id, line)
            counter.add(stats, rec, path, line, schema)


def _user_folder(report: DataReport, folder: Path, task: str | None, lang: str | None) -> None:
    files: dict[str, Path | None] = {}
    for split in ("train", "dev", "test"):
        p = folder / USER_FILES[split]
        if p.is_file():
            files[split] = p
        elif split != "test":
            report.error(DataError(f"{USER_FILES[split]} is missing (a user data folder holds train.jsonl, dev.jsonl, "
                                   "schema.json, and test.jsonl if you have one)", str(folder)))
    schema = folder / USER_FILES["schema"]
    if not schema.is_file():
        report.error(DataError("schema.json is missing", str(folder)))
    _check_user(report, files, schema if schema.is_file() else None, task, lang)


def _looks_like_user_folder(folder: Path) -> bool:
    return any((folder / USER_FILES[s]).is_file() for s in ("train", "dev", "test")) or is_user_schema(folder / USER_FILES["schema"])


# --- IEPile's tree and InstructIE's files -------------------------------------------------------


def _check_iepile(report: DataReport, root: Path, task: str | None, lang: str | None) -> None:
    folders = [TASK_FOLDER[get_task(task).name]] if task else None
    for lg in [lang] if lang else ["zh", "en"]:
        base = root / f"IE-{lg}"
        if not base.is_dir():
            continue
        for task_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            if (folders is not None and task_dir.name not in folders) or task_dir.name not in FOLDER_KEY:
                continue
            key = FOLDER_KEY[task_dir.name]
            for src in sorted(p for p in task_dir.iterdir() if p.is_dir()):
                schema_path = src / "schema.json"
                data = DataSet(f"IE-{lg}/{task_dir.name}/{src.name}", get_task(task).name if task else task_dir.name, lg,
                               str(schema_path))
                report.datasets.append(data)
                schema = None
                try:
                    schema = read_iepile_schema(schema_path)
                    data.schema_labels = _schema_labels(key, schema)
                except DataError as exc:
                    report.error(exc)
                counter = _Counter(report, data, key)
                for split in ("train", "dev", "test"):
                    path = src / f"{split}.json"
                    if not path.is_file():
                        continue
                    stats = SplitStats(split, str(path))
                    data.splits.append(stats)
                    try:
                        for line, rec in iter_unified(path, key, src.name):
                            counter.add(stats, rec, path, line, schema)
                    except DataError as exc:
                        report.error(exc)


def _check_instructie(report: DataReport, root: Path, lang: str | None) -> None:
    langs = [lang] if lang else sorted(p.stem.split("_", 1)[1] for p in root.glob("schema_*.json"))
    for lg in langs:
        schema_path = root / f"schema_{lg}.json"
        data = DataSet(f"InstructIE/{lg}", "KG", lg, str(schema_path))
        report.datasets.append(data)
        schemas: dict[str, Schema] = {}
        try:
            schemas = read_instructie_schema(schema_path)
            data.schema_labels = list(dict.fromkeys(r for s in schemas.values() for r in s.roles))
        except DataError as exc:
            report.error(exc)
        counter = _Counter(report, data, "relation")
        for split in ("train", "valid", "test"):
            path = root / f"{split}_{lg}.json"
            if not path.is_file():
                continue
            stats = SplitStats(split, str(path))
            data.splits.append(stats)
            try:
                for line, rec in iter_instructie(path):
                    if schemas and rec.cate not in schemas:
                        report.error(DataError(f"field 'cate': topic {rec.cate!r} is not in schema_{lg}.json", str(path), line))
                        continue
                    counter.add(stats, rec, path, line, schemas.get(rec.cate) if schemas else None)
            except DataError as exc:
                report.error(exc)


# --- the entry point ---------------------------------------------------------------------------


def check_data(path: str | os.PathLike | UserData, task: str | None = None, lang: str | None = None) -> DataReport:
    """Check a user's data folder (or a ``UserData``, or one records file), an IEPile tree,
    InstructIE's files, or a data root holding both. ``task`` picks which task's data (and, for a
    user's data, how its schema reads; default: told by the records); ``lang`` which language of
    a tree. A path that is no data at all is a ``DataError``; everything else is in the report."""
    if task is not None:
        task = get_task(task).name
    if lang is not None:
        check_lang(lang)
    if isinstance(path, UserData):
        report = DataReport(str(path), "user")
        _check_user(report, {k: p for k, p in (("train", path.train), ("dev", path.dev), ("test", path.test)) if p is not None},
                    path.schema, task, lang)
        return report
    path = Path(path)
    if not path.exists():
        raise DataError("not found", str(path))
    if path.is_file():
        report = DataReport(str(path), "user")
        schema = path.parent / USER_FILES["schema"]
        _check_user(report, {_split_of(path): path}, schema if is_user_schema(schema) else None, task, lang)
        return report
    if _looks_like_user_folder(path):
        report = DataReport(str(path), "user")
        _user_folder(report, path, task, lang)
        return report
    kinds = []
    report = DataReport(str(path), "")
    want_iepile = task is None or get_task(task).dataset == "iepile" or task == "KG"
    want_instructie = task is None or get_task(task).dataset == "instructie"
    for kind, find, run in (("iepile", iepile_root, lambda r: _check_iepile(report, r, task, lang)),
                            ("instructie", instructie_root, lambda r: _check_instructie(report, r, lang))):
        if (kind == "iepile" and not want_iepile) or (kind == "instructie" and not want_instructie):
            continue
        try:
            root = find(path)
        except KgoptError:
            continue
        kinds.append(kind)
        run(root)
    if not kinds:
        raise DataError("no data here: expected a user data folder (train.jsonl, dev.jsonl, schema.json), "
                        "an IEPile tree (IE-zh/, IE-en/ or iepile/) or InstructIE's files (schema_*.json)", str(path))
    report.layout = "+".join(kinds)
    return report


def _split_of(path: Path) -> str:
    stem = path.name.split(".", 1)[0]
    return {"valid": "dev"}.get(stem, stem) if stem in ("train", "dev", "valid", "test") else path.name
