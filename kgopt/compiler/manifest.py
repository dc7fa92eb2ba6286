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
from kgopt.core.tasks import get_task
from kgopt.data.layouts import DataLayout, layout_of
from kgopt.data.readers import AskedRecord
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
    """A schema as the manifest records it (``Schema.coerce`` reads it back, descriptions included)."""
    return schema.to_json()


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
    data_dir: str | Path | DataLayout | None  # a data root, a user's folder, or a layout (UserData)
    augmented_root: Path
    source: str | None
    train_limit: int | None
    dev_limit: int | None

    def files(self, task: str, lang: str) -> dict[str, Any]:
        """Each file read, with its SHA-256; data files also with the records used from them. Paths
        are shown relative to the layout's root (a data root; for a user's data, the folder above it)."""
        spec = get_task(task)

        def entries(split: str, layout: DataLayout, used: list[AskedRecord]) -> list[dict[str, Any]]:
            root = layout.manifest_root
            return [data_entry(p, root, layout.records_in(p, used)) for p in layout.split_files(spec, lang, split, self.source)]

        data = layout_of(spec, self.data_dir)
        return {
            "train": entries("train", data, self.train),
            "dev": entries("dev", data, self.dev),
            "augmented": entries("train", layout_of(spec, self.augmented_root), self.augmented) if self.augmented else [],
            "train_limit_per_source": self.train_limit,
        }


def compiled_manifest(task: str, lang: str, connection: Any, data: TrainingData, baseline: dict[str, Any], best: Any,
                      study: dict[str, Any], llm: dict[str, int], files: dict[str, Any] | None = None,
                      chosen: str | None = None) -> dict[str, Any]:
    """The manifest of a compiled program: ``best`` is the chosen Optuna trial (complete; in a
    pareto study its first value is the dev F1), or None when the zero-shot baseline is written
    because no trial beat it on dev. ``chosen``: "trial" (it beat zero-shot on dev, or is the
    best within ``--max-tokens-per-record``), "warm start" (the first warm start, tied with
    zero-shot) or "baseline"; None: told from the F1s."""
    if best is None:
        chosen, dev_f1, dev_by_source, trial = "baseline", baseline["f1"], baseline["by_source"], None
    else:
        dev_f1, dev_by_source = best.values[0], best.user_attrs.get("dev_f1_by_source", {})
        chosen = chosen or ("trial" if dev_f1 > baseline["f1"] else "warm start")
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
