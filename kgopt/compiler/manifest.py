"""What a compiled program records about how it was made."""

from __future__ import annotations

import hashlib
import platform
import time
from importlib import metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgopt.core.schema import Schema
from kgopt.data.readers import AskedRecord, default_data_dir, split_files
from kgopt.redaction import redact_identity


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_entry(path: Path, root: Path | None, records: int | None) -> dict[str, Any]:
    try:
        shown = str(path.resolve().relative_to(root.resolve())) if root else str(path)
    except ValueError:
        shown = str(path)
    entry = {"path": shown, "sha256": file_sha256(path)}
    return entry if records is None else {**entry, "records_used": records}


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


def schemas_of(examples: list[AskedRecord]) -> dict[str, dict[str, Any]]:
    """One schema per source (InstructIE: per topic), for ``kgopt.load`` to ask with."""
    out: dict[str, dict[str, Any]] = {}
    for ex in examples:
        key = ex.record.cate if ex.record.source == "InstructIE" and ex.record.cate else ex.record.source
        out.setdefault(key, schema_json(ex.schema))
    return out


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class TrainingData:
    """What a study compiles on, as its manifest records it."""

    train: list[AskedRecord]
    augmented: list[AskedRecord]
    dev: list[AskedRecord]
    data_dir: str | Path | None
    augmented_root: Path
    source: str | None
    train_limit: int | None
    dev_limit: int | None

    def files(self, task: str, lang: str) -> dict[str, Any]:
        """Each file read, with its SHA-256; data files also with the records used from them."""
        root = Path(self.data_dir) if self.data_dir else default_data_dir()

        def entries(split: str, where, base: Path, used: list[AskedRecord]) -> list[dict[str, Any]]:
            return [data_entry(p, base, _records_from(p, used)) for p in split_files(task, lang, split, where, self.source)]

        return {
            "train": entries("train", self.data_dir, root, self.train),
            "dev": entries("dev", self.data_dir, root, self.dev),
            "augmented": entries("train", self.augmented_root, self.augmented_root, self.augmented) if self.augmented else [],
            "train_limit_per_source": self.train_limit,
        }


def _records_from(path: Path, used: list[AskedRecord]) -> int | None:
    """How many of ``used`` came from ``path``: an IEPile file holds one source (its folder's
    name), an InstructIE file all of them; None for a schema file (it holds no records)."""
    if path.name.startswith("schema"):
        return None
    if path.parent.name not in {ex.record.source for ex in used} and all(ex.record.source == "InstructIE" for ex in used):
        return len(used)  # InstructIE: one file per split
    return sum(ex.record.source == path.parent.name for ex in used)


def compiled_manifest(task: str, lang: str, connection: Any, data: TrainingData, baseline: dict[str, Any], best: Any,
                      study: dict[str, Any], llm: dict[str, int], files: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of a compiled program: ``best`` is the chosen Optuna trial, or None when the
    zero-shot baseline is written because no trial beat it on dev. ``chosen``: "trial" (it beat
    zero-shot on dev), "warm start" (the first warm start, tied with zero-shot) or "baseline"."""
    if best is None:
        chosen, dev_f1, dev_by_source, trial = "baseline", baseline["f1"], baseline["by_source"], None
    else:
        chosen = "trial" if best.value > baseline["f1"] else "warm start"
        dev_f1, dev_by_source = best.value, best.user_attrs.get("dev_f1_by_source", {})
        trial = {"number": best.number, "params": best.params, "user_attrs": {k: v for k, v in best.user_attrs.items() if k != "instruction_text"}}
    return {
        "kind": "compiled",
        "task": task,
        "lang": lang,
        "sources": sorted({ex.record.source for ex in data.dev}),
        "model": connection.model,
        "endpoint": redact_identity(connection.identity),  # shared files: never a password or ?key=
        "dev": {"f1": dev_f1, "by_source": dev_by_source, "records": len(data.dev), "limit_per_source": data.dev_limit, "source": data.source},
        "baseline_dev": baseline,
        "chosen": chosen,
        "trial": trial,
        "study": study,
        "data": files if files is not None else data.files(task, lang),
        "schemas": schemas_of(data.dev + data.train),
        "llm": llm,
        "versions": versions(),
        "created": now(),
    }
