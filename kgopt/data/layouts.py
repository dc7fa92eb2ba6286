"""Where a task's annotated data comes from: one object per layout, not ``dataset ==`` branches.

- ``IEPileTree``: IEPile's unified per-source files ``IE-zh|IE-en/<TASK>/<SOURCE>/{train,dev,test}.json``
  plus each source's three-line ``schema.json`` (every IEPile task);
- ``InstructIEFiles``: ``{train,valid,test}_{zh,en}.json`` plus ``schema_{zh,en}.json`` (KG);
- ``UserData``: a user's own data (``docs/own-data.md``): a folder holding ``train.jsonl``,
  ``dev.jsonl``, an optional ``test.jsonl`` and ``schema.json``, or those files named one by
  one. Its one source is called ``"user"`` (``UserData.SOURCE``), whatever the folder's name.

``layout_of(task, data_dir)`` is the layout a ``data_dir`` means for a task: a layout object is
itself; a folder in the user format (``is_user_folder``) is ``UserData``; any other path (or
None, the default root) is the IEPile tree, or InstructIE's files for KG. ``load_examples``,
``split_files`` and ``list_sources`` in ``kgopt.data.readers`` ask it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from kgopt.core.schema import Record, Schema
from kgopt.core.tasks import TASK_FOLDER, TaskSpec, get_task
from kgopt.data.readers import (
    USER_TASKS,
    AskedRecord,
    _base,
    iepile_root,
    instructie_root,
    is_user_schema,
    read_iepile_schema,
    read_instructie,
    read_instructie_schema,
    read_unified,
    read_user_records,
    read_user_schema,
)
from kgopt.errors import ConfigError, DataError

__all__ = ["DataLayout", "IEPileTree", "InstructIEFiles", "UserData", "is_user_folder", "layout_of"]


def _spec(task: str | TaskSpec) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else get_task(task)


def _asked(spec: TaskSpec, records: Iterable[Record], schema: Schema, limit: int | None) -> Iterator[AskedRecord]:
    """Up to ``limit`` records with their schema. EEA is asked with the record's triggers: a record
    with no event asks nothing (and does not count)."""
    n = 0
    for rec in records:
        if limit is not None and n >= limit:
            return
        if spec.given_triggers and not rec.labels:
            continue
        yield AskedRecord(rec, schema)
        n += 1


class DataLayout:
    """One place annotated data can come from. Subclasses say where each split's file is."""

    kind: str = ""

    def sources(self, spec: TaskSpec, lang: str) -> list[str]:
        """The task's sources here (IEPile: its source folders; InstructIE and user data: one)."""
        raise NotImplementedError

    def schemas(self, spec: TaskSpec, lang: str) -> dict[str, Schema]:
        """Each source's schema (InstructIE: each topic's)."""
        raise NotImplementedError

    def examples(self, spec: TaskSpec, lang: str, split: str, source: str | None = None, limit: int | None = None) -> list[AskedRecord]:
        """The records of a split, each with its schema; ``limit`` per source."""
        raise NotImplementedError

    def split_files(self, spec: TaskSpec, lang: str, split: str, source: str | None = None) -> list[Path]:
        """The files ``examples`` reads for a split (data, then schema), for hashing into manifests."""
        raise NotImplementedError

    def records_in(self, path: Path, used: list[AskedRecord]) -> int | None:
        """How many of ``used`` came from ``path`` (one of ``split_files``); None for a schema file."""
        raise NotImplementedError

    @property
    def manifest_root(self) -> Path | None:
        """The folder a manifest shows this layout's file paths relative to."""
        raise NotImplementedError


class IEPileTree(DataLayout):
    """IEPile's unified tree under a data root (``iepile_root``: the root itself or its ``iepile/``)."""

    kind = "iepile"

    def __init__(self, data_dir: str | os.PathLike | None = None):
        self.data_dir = data_dir

    def __repr__(self) -> str:
        return f"IEPileTree({str(self.data_dir) if self.data_dir is not None else None!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, IEPileTree) and _base(self.data_dir) == _base(other.data_dir)

    __hash__ = None  # type: ignore[assignment]

    @property
    def root(self) -> Path:
        return iepile_root(self.data_dir)

    @property
    def manifest_root(self) -> Path:
        return _base(self.data_dir)

    def _check(self, spec: TaskSpec) -> None:
        if spec.dataset != "iepile":
            raise DataError(f"{spec.name} is not read from IEPile's tree (it reads {spec.dataset})", str(_base(self.data_dir)))

    def task_folder(self, spec: TaskSpec, lang: str) -> Path:
        return self.root / f"IE-{lang}" / TASK_FOLDER[spec.name]

    def source_folder(self, spec: TaskSpec, lang: str, source: str) -> Path:
        return self.task_folder(spec, lang) / source

    @staticmethod
    def split_name(split: str) -> str:
        return {"valid": "dev"}.get(split, split)

    def split_file(self, spec: TaskSpec, lang: str, source: str, split: str) -> Path:
        return self.source_folder(spec, lang, source) / f"{self.split_name(split)}.json"

    def sources(self, spec, lang):
        self._check(spec)
        folder = self.task_folder(spec, lang)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / "schema.json").is_file())

    def schemas(self, spec, lang):
        return {src: read_iepile_schema(self.source_folder(spec, lang, src) / "schema.json") for src in self.sources(spec, lang)}

    def examples(self, spec, lang, split, source=None, limit=None):
        self._check(spec)
        sources = [source] if source else self.sources(spec, lang)
        if not sources:
            raise DataError(f"no {spec.name} sources for {lang}", str(self.task_folder(spec, lang)))
        out: list[AskedRecord] = []
        read_any = False
        for src in sources:
            folder = self.source_folder(spec, lang, src)
            if not folder.is_dir():
                raise DataError(f"unknown source {src!r} (have: {', '.join(self.sources(spec, lang))})", str(folder))
            schema = read_iepile_schema(folder / "schema.json")
            path = self.split_file(spec, lang, src, split)
            if not source and not path.is_file():
                continue  # e.g. DeepKE_sample ships a test split only
            read_any = True
            out += _asked(spec, read_unified(path, spec.label_key, src), schema, limit)
        if not read_any:
            raise DataError(f"no {spec.name} source has a {split} split", str(self.task_folder(spec, lang)))
        return out

    def split_files(self, spec, lang, split, source=None):
        out = []
        for src in [source] if source else self.sources(spec, lang):
            path = self.split_file(spec, lang, src, split)
            if path.is_file():
                out += [path, path.parent / "schema.json"]
        return out

    def records_in(self, path, used):
        if path.name == "schema.json":
            return None
        return sum(ex.record.source == path.parent.name for ex in used)  # a file holds its folder's source


class InstructIEFiles(DataLayout):
    """InstructIE's files under a data root (``instructie_root``: the root itself or its ``InstructIE/``)."""

    kind = "instructie"
    SOURCE = "InstructIE"

    def __init__(self, data_dir: str | os.PathLike | None = None):
        self.data_dir = data_dir

    def __repr__(self) -> str:
        return f"InstructIEFiles({str(self.data_dir) if self.data_dir is not None else None!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, InstructIEFiles) and _base(self.data_dir) == _base(other.data_dir)

    __hash__ = None  # type: ignore[assignment]

    @property
    def root(self) -> Path:
        return instructie_root(self.data_dir)

    @property
    def manifest_root(self) -> Path:
        return _base(self.data_dir)

    def _check(self, spec: TaskSpec) -> None:
        if spec.dataset != "instructie":
            raise DataError(f"{spec.name} is not read from InstructIE's files (it reads {spec.dataset})", str(_base(self.data_dir)))

    @staticmethod
    def split_name(split: str) -> str:
        return {"dev": "valid"}.get(split, split)

    def split_file(self, lang: str, split: str) -> Path:
        return self.root / f"{self.split_name(split)}_{lang}.json"

    def schema_file(self, lang: str) -> Path:
        return self.root / f"schema_{lang}.json"

    def sources(self, spec, lang):
        self._check(spec)
        return [self.SOURCE]

    def schemas(self, spec, lang):
        self._check(spec)
        return read_instructie_schema(self.schema_file(lang))

    def examples(self, spec, lang, split, source=None, limit=None):
        # ``source`` is not a filter here: InstructIE has one (augment's --source names a topic).
        schemas = self.schemas(spec, lang)
        path = self.split_file(lang, split)
        out: list[AskedRecord] = []
        for rec in read_instructie(path):
            if limit is not None and len(out) >= limit:
                break
            if rec.cate not in schemas:
                raise DataError(f"record {rec.id}: topic {rec.cate!r} is not in schema_{lang}.json", str(path))
            out.append(AskedRecord(rec, schemas[rec.cate]))
        return out

    def split_files(self, spec, lang, split, source=None):
        return [self.split_file(lang, split), self.schema_file(lang)]

    def records_in(self, path, used):
        return None if path.name.startswith("schema") else len(used)  # one file per split holds every topic


USER_FILES = {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl", "schema": "schema.json"}


def is_user_folder(path: Any) -> bool:
    """A folder in the user format: it holds ``train.jsonl`` and a ``schema.json`` that is one JSON
    object (``{"labels": [...]}``; IEPile's schema.json is three JSON lines, the first a list)."""
    if not isinstance(path, (str, os.PathLike)) or path == "":
        return False
    folder = Path(path)
    return (folder / USER_FILES["train"]).is_file() and is_user_schema(folder / USER_FILES["schema"])


class UserData(DataLayout):
    """A user's own annotated data (``docs/own-data.md``): NER, RE or EE-family records as JSON
    lines, and one schema file.

    ``UserData(folder)``: ``folder/train.jsonl``, ``folder/dev.jsonl``, ``folder/schema.json`` and,
    if it is there, ``folder/test.jsonl``. ``UserData(train=..., dev=..., test=..., schema=...)``:
    the files themselves; the schema is required, each split only when it is read. Every file
    named must exist. Its one source is ``"user"``. ``to_json()`` (and ujson) give its file paths.
    """

    kind = "user"
    SOURCE = "user"

    def __init__(self, folder: str | os.PathLike | None = None, *, train: str | os.PathLike | None = None,
                 dev: str | os.PathLike | None = None, test: str | os.PathLike | None = None,
                 schema: str | os.PathLike | None = None):
        given = {"train": train, "dev": dev, "test": test, "schema": schema}
        if folder is not None:
            if any(v is not None for v in given.values()):
                raise ConfigError("give user data as a folder or as files (train=, dev=, test=, schema=), not both")
            folder = Path(folder)
            if not folder.is_dir():
                raise DataError("user data folder not found", str(folder))
            missing = [USER_FILES[k] for k in ("train", "dev", "schema") if not (folder / USER_FILES[k]).is_file()]
            if missing:
                raise DataError(f"a user data folder holds train.jsonl, dev.jsonl and schema.json (test.jsonl optional); "
                                f"missing: {', '.join(missing)}", str(folder))
            files = {k: folder / name for k, name in USER_FILES.items()}
            if not files["test"].is_file():
                files["test"] = None
        else:
            if schema is None:
                raise ConfigError("user data needs its schema file (schema=, --schema FILE)")
            if all(given[k] is None for k in ("train", "dev", "test")):
                raise ConfigError("user data needs at least one records file (train=, dev=, test=)")
            files = {k: (Path(v) if v is not None else None) for k, v in given.items()}
            for k, p in files.items():
                if p is not None and not p.is_file():
                    raise DataError(f"{k} file not found", str(p))
        self.folder: Path | None = folder
        self.train: Path | None = files["train"]
        self.dev: Path | None = files["dev"]
        self.test: Path | None = files["test"]
        self.schema: Path = files["schema"]
        self._schemas: dict[str, Schema] = {}

    # --- identity and serialisation -----------------------------------------------------------

    def to_json(self) -> dict[str, str | None]:
        """Its file paths (a missing optional split is null)."""
        return {k: (str(p) if p is not None else None) for k, p in self.files().items()}

    toDict = to_json  # what ujson calls: ujson.dumps(user_data) writes the paths

    def files(self) -> dict[str, Path | None]:
        return {"train": self.train, "dev": self.dev, "test": self.test, "schema": self.schema}

    def __repr__(self) -> str:
        if self.folder is not None:
            return f"UserData({str(self.folder)!r})"
        return "UserData(" + ", ".join(f"{k}={v!r}" for k, v in self.to_json().items() if v is not None) + ")"

    __str__ = __repr__

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, UserData) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.to_json().items(), key=lambda kv: kv[0])))

    # --- the layout ---------------------------------------------------------------------------

    def _where(self) -> str | None:
        return str(self.folder) if self.folder is not None else None

    def _check(self, spec: TaskSpec) -> None:
        if spec.name not in USER_TASKS:
            raise DataError(f"user data holds {', '.join(USER_TASKS)} records, not {spec.name} (KG reads InstructIE's files)",
                            self._where() or str(self.schema))

    def split_path(self, split: str) -> Path | None:
        return {"train": self.train, "dev": self.dev, "valid": self.dev, "test": self.test}[split]

    def schema_for(self, spec: TaskSpec | str) -> Schema:
        """The schema file read for a task (NER: entity types; RE: relations; EE family: event types)."""
        spec = _spec(spec)
        self._check(spec)
        if spec.name not in self._schemas:
            self._schemas[spec.name] = read_user_schema(self.schema, spec.name)
        return self._schemas[spec.name]

    def _source(self, spec: TaskSpec, source: str | None) -> None:
        if source not in (None, self.SOURCE):
            raise DataError(f"unknown source {source!r}: user data has one source, {self.SOURCE!r}", self._where() or str(self.schema))

    def sources(self, spec, lang):
        self._check(spec)
        return [self.SOURCE]

    def schemas(self, spec, lang):
        return {self.SOURCE: self.schema_for(spec)}

    def examples(self, spec, lang, split, source=None, limit=None):
        self._check(spec)
        self._source(spec, source)
        path = self.split_path(split)
        if path is None:
            if self.folder is not None:
                raise DataError(f"no {USER_FILES.get(split, 'dev.jsonl')} in this user data folder", str(self.folder))
            raise DataError(f"no {split} file was given for this user data ({', '.join(k for k, v in self.to_json().items() if v)})")
        schema = self.schema_for(spec)
        return list(_asked(spec, read_user_records(path, spec.name, self.SOURCE), schema, limit))

    def split_files(self, spec, lang, split, source=None):
        self._source(spec, source)
        path = self.split_path(split)
        return [path, self.schema] if path is not None and path.is_file() else []

    def records_in(self, path, used):
        return None if Path(path) == self.schema else len(used)  # one file per split

    @property
    def manifest_root(self) -> Path:
        """The folder above the data's folder: a manifest shows ``<folder>/train.jsonl``, no absolute paths."""
        parents = [p.resolve().parent for p in self.files().values() if p is not None]
        common = Path(os.path.commonpath(parents)) if parents else Path.cwd()
        return common.parent


def layout_of(task: str | TaskSpec, data_dir: Any = None) -> DataLayout:
    """The layout ``data_dir`` means for ``task``: a layout object as given; a folder in the user
    format as ``UserData``; otherwise the IEPile tree (InstructIE's files for KG) under the root
    ``data_dir`` (None: ``KGOPT_DATA_DIR`` or ``dataset/``)."""
    spec = _spec(task)
    if isinstance(data_dir, DataLayout):
        return data_dir
    if is_user_folder(data_dir):
        return UserData(data_dir)
    if spec.dataset == "instructie":
        return InstructIEFiles(data_dir)
    return IEPileTree(data_dir)
