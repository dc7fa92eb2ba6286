"""What a compiled program records about how it was made."""

from __future__ import annotations

import hashlib
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from kgopt.core.schema import Schema
from kgopt.data.readers import Example


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_entry(path: Path, root: Path | None, records: int) -> dict[str, Any]:
    try:
        shown = str(path.resolve().relative_to(root.resolve())) if root else str(path)
    except ValueError:
        shown = str(path)
    return {"path": shown, "sha256": file_sha256(path), "records_used": records}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("kgopt", "dspy", "optuna", "openai"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def schema_json(schema: Schema) -> dict[str, Any]:
    return {"types": list(schema.types), "roles": list(schema.roles), "type_roles": {k: list(v) for k, v in schema.type_roles.items()}}


def schemas_of(examples: list[Example]) -> dict[str, dict[str, Any]]:
    """One schema per source (InstructIE: per topic), for ``kgopt.load`` to ask with."""
    out: dict[str, dict[str, Any]] = {}
    for ex in examples:
        key = ex.record.cate if ex.record.source == "InstructIE" and ex.record.cate else ex.record.source
        out.setdefault(key, schema_json(ex.schema))
    return out


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
