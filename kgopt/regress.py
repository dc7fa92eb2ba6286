"""Regression checks on saved programs: re-score on the manifest's dev data, compare F1.

A compiled program records the dev F1 it reached and exactly which dev records produced it
(sources, records per source). ``regress`` re-runs that evaluation with the configured model
and fails a program whose F1 fell more than ``tolerance`` points below the recorded figure.
Usable from the CLI (``kgopt regress``) and from pytest.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from kgopt.errors import ArtifactError, ConfigError
from kgopt.redaction import redact_identity


@dataclass
class RegressionResult:
    path: Path
    task: str
    lang: str
    expected: float
    got: float
    tolerance: float
    same_endpoint: bool
    scores: dict[str, Any]

    @property
    def passed(self) -> bool:
        return self.got >= self.expected - self.tolerance

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        note = "" if self.same_endpoint else "  (other endpoint than it was compiled on)"
        return f"{verdict:<4} {self.path}  {self.task}/{self.lang}  dev F1 {self.got:.2f} (recorded {self.expected:.2f}, tolerance {self.tolerance}){note}"


def compiled_programs(paths: list[str | os.PathLike] | None = None, compiled_dir: str | os.PathLike = "compiled") -> list[Path]:
    """The given files (folders are searched for *.json), or every program in ``compiled_dir``."""
    found: list[Path] = []
    for p in [Path(x) for x in paths] if paths else [Path(compiled_dir)]:
        if p.is_dir():
            found += sorted(q for q in p.glob("*.json"))
        elif p.is_file():
            found.append(p)
        else:
            raise ArtifactError(f"{p}: no such program file or folder")
    return found


def regress_one(path: Path, connection, *, tolerance: float = 2.0, data_dir=None, threads: int = 1) -> RegressionResult:
    from kgopt.evaluation import evaluate
    from kgopt.program import load_program

    program, manifest = load_program(path)
    dev = manifest.get("dev") or {}
    if "f1" not in dev:
        raise ArtifactError(f"{path}: the manifest records no dev F1 (not a compiled program?)")
    if data_dir is None and "user" in (manifest.get("schemas") or {}):
        # Compiled on your own data: the default data root holds other records of the same task.
        dev_files = ", ".join(e.get("path", "?") for e in (manifest.get("data") or {}).get("dev", []))
        raise ConfigError(f"{path} was compiled on your own data ({dev_files}): pass --data-dir FOLDER (or the files' folder) to re-score it")
    out = Path("runs") / "regress" / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    ev = evaluate(
        program.task, program.lang, connection, split="dev", source=dev.get("source"), limit=dev.get("limit_per_source"),
        data_dir=data_dir, program=program, threads=threads, out_dir=out,
    )
    recorded = redact_identity(str(manifest.get("endpoint", "")))  # a manifest of an older kgopt may hold a password
    same = recorded == redact_identity(connection.identity)
    if not same:
        logger.warning("{} was compiled on {}, re-scored on {}: figures may differ for that reason", path, recorded, redact_identity(connection.identity))
    return RegressionResult(path, program.task, program.lang, float(dev["f1"]), ev.report.total.headline_f1(), tolerance, same, ev.to_json())


def regress(paths=None, connection=None, *, tolerance: float = 2.0, data_dir=None, threads: int = 1, compiled_dir="compiled") -> list[RegressionResult]:
    files = compiled_programs(paths, compiled_dir)
    if not files:
        raise ArtifactError(f"no compiled programs found in {compiled_dir}")
    from kgopt.clients.lm import as_connection

    connection = as_connection(connection)
    return [regress_one(p, connection, tolerance=tolerance, data_dir=data_dir, threads=threads) for p in files]
