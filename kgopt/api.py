"""The Python entry point: ``ie = kgopt.load("RE", "zh"); ie("text")``.

``load`` finds the compiled program (``compiled/<TASK>_<lang>.json`` in the current
directory, then the bundled ones: ``kgopt.locations``), checks its manifest, and returns an ``Extractor``:
a callable that asks the configured endpoint (the embedded model if none) and returns the
labels in IEPile's unified format (``[{"entity", "entity_type"}]``, ``[{"head", "relation",
"tail"}]``, ...). The schema comes from the manifest (the sources it was compiled on) or is
passed in.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

from kgopt.core.schema import Record, Schema, merge_schemas
from kgopt.core.tasks import get_task
from kgopt.errors import ConfigError
from kgopt.locations import find_program

class Extractor:
    """A loaded program bound to an endpoint. Call it on a text; ``batch`` for many."""

    def __init__(self, program, manifest: dict[str, Any], path: Path | None = None, connection=None):
        self.program = program
        self.manifest = manifest
        self.path = path
        self._connection = connection
        self.schemas = {k: Schema.coerce(v) for k, v in (manifest.get("schemas") or {}).items()}

    @property
    def task(self) -> str:
        return self.program.task

    @property
    def lang(self) -> str:
        return self.program.lang

    @property
    def connection(self):
        from kgopt.clients.lm import as_connection

        self._connection = as_connection(self._connection)
        return self._connection

    def schema_for(self, schema: Any = None, source: str | None = None) -> Schema:
        """The schema to ask with: given, or the manifest's (one source/topic, or their union)."""
        if schema is not None:
            return Schema.coerce(schema)
        if source is not None:
            if source not in self.schemas:
                raise ConfigError(f"{self.path or 'program'}: no schema for {source!r}; known: {', '.join(self.schemas) or 'none'}")
            return self.schemas[source]
        if len(self.schemas) == 1:
            return next(iter(self.schemas.values()))
        if not self.schemas:
            raise ConfigError(f"{self.path or 'program'}: the manifest has no schema; pass schema=")
        if get_task(self.task).asks_topics:
            raise ConfigError(f"{self.task} asks one topic at a time: pass source= one of {', '.join(self.schemas)}")
        return merge_schemas(self.schemas.values())

    def run(self, text: str, schema: Any = None, source: str | None = None, record: Record | None = None):
        """The full prediction: ``.result`` (labels) and ``.calls`` (each chunk's raw answer and status)."""
        lm = self.connection.lm
        self.program.set_lm(lm)
        return self.program(text=text, schema=self.schema_for(schema, source), record=record)

    def __call__(self, text: str, schema: Any = None, source: str | None = None, record: Record | None = None) -> list[dict[str, Any]]:
        return self.run(text, schema, source, record).result

    def batch(self, texts: Iterable[str], schema: Any = None, source: str | None = None, threads: int = 4) -> list[list[dict[str, Any]]]:
        """Labels for many texts, ``threads`` requests in flight, results in input order."""
        texts = list(texts)
        self.program.set_lm(self.connection.lm)  # connect once, from this thread
        sch = self.schema_for(schema, source)
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            return list(pool.map(lambda t: self.program(text=t, schema=sch).result, texts))


def load(task_or_path: str | os.PathLike, lang: str | None = None, connection=None, compiled_dir: str | os.PathLike | None = None) -> Extractor:
    """``load("RE", "zh")`` or ``load("compiled/RE_zh.json")``: a ready ``Extractor``."""
    from kgopt.program import load_program

    p = Path(task_or_path)
    if lang is None and (p.suffix == ".json" or p.exists()):
        path = p
    else:
        if lang is None:
            raise ConfigError("load(task, lang): give a language (zh or en), or a program path")
        path = find_program(str(task_or_path), lang, compiled_dir)
    program, manifest = load_program(path, task=None if lang is None else str(task_or_path), lang=lang)
    return Extractor(program, manifest, path, connection)
