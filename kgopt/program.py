"""One generic DSPy program for every IE task, parameterised by a ``TaskSpec``.

``IEProgram(task, lang)`` is the zero-shot OneKE baseline: the official IEPile instruction,
no demonstrations, the task's default schema split size. Optimisers (the compiler) change
its predictor's instructions and demos and its ``split_size``; everything is saved as JSON
(``save``/``load_program``), never pickled.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import dspy

from kgopt import __version__
from kgopt.adapters.oneke import OneKEAdapter
from kgopt.core.parsing import ERROR, merge_labels, parse_answer
from kgopt.core.schema import Record, Schema
from kgopt.core.tasks import check_lang, get_task
from kgopt.data.jsonio import dumps
from kgopt.errors import ArtifactError

ARTIFACT_FORMAT = 1


class IESignature(dspy.Signature):
    """Extract information from the input that matches the schema; answer in JSON."""

    text: str = dspy.InputField(desc="the input text")
    chunk: list = dspy.InputField(desc="the schema chunk to extract")
    answer: str = dspy.OutputField(desc="a JSON object keyed by the schema labels")


class IEProgram(dspy.Module):
    def __init__(self, task: str, lang: str, split_size: int | None = None, instruction: str | None = None):
        super().__init__()
        self.spec = get_task(task)
        self.lang = check_lang(lang)
        self.split_size = split_size or self.spec.split_size
        self.extract = dspy.Predict(IESignature.with_instructions(instruction or self.spec.template(lang)))

    @property
    def task(self) -> str:
        return self.spec.name

    @property
    def instruction(self) -> str:
        return self.extract.signature.instructions

    def chunks(self, schema: Schema, record: Record | None = None) -> list[list[Any]]:
        return self.spec.chunks(schema, record, self.split_size)

    def forward(self, text: str, schema: Schema, record: Record | None = None, **_: Any) -> dspy.Prediction:
        """Ask every schema chunk, parse each answer, merge. An LLM failure is recorded, not raised."""
        parts, calls = [], []
        with dspy.context(adapter=OneKEAdapter()):
            for chunk in self.chunks(schema, record):
                started = time.monotonic()
                try:
                    raw = self.extract(text=text, chunk=chunk).answer or ""
                    error = None
                except Exception as exc:  # endpoint down, retries exhausted, bad response
                    raw, error = "", f"{type(exc).__name__}: {str(exc)[:300]}"
                parsed = parse_answer(self.spec, raw, chunk)
                parts.append(parsed.labels)
                calls.append(
                    {
                        "schema": chunk,
                        "output": raw,
                        "status": ERROR if error else parsed.status,
                        "problems": parsed.problems,
                        "error": error,
                        "seconds": round(time.monotonic() - started, 3),
                    }
                )
        return dspy.Prediction(result=merge_labels(parts), calls=calls)

    # --- persistence: plain JSON ------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {"task": self.task, "lang": self.lang, "split_size": self.split_size}

    def to_artifact(self, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "format": ARTIFACT_FORMAT,
            "kgopt_version": __version__,
            "dspy_version": dspy.__version__,
            "config": self.config(),
            "manifest": manifest or {},
            "state": self._portable_state(),
        }

    def _portable_state(self) -> dict[str, Any]:
        # A program is independent of the endpoint it was compiled on: drop the LM.
        state = self.dump_state()
        for sub in state.values():
            if isinstance(sub, dict) and "lm" in sub:
                sub["lm"] = None
        return state

    def save_artifact(self, path: str | os.PathLike, manifest: dict[str, Any] | None = None) -> Path:
        """Write the program as JSON, atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(dumps(self.to_artifact(manifest), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path


def load_program(path: str | os.PathLike, task: str | None = None, lang: str | None = None) -> tuple[IEProgram, dict[str, Any]]:
    """Load a saved program; checks format, versions, and (if given) task and language."""
    import ujson

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: program file not found")
    try:
        art = ujson.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ArtifactError(f"{path}: not a JSON program file ({exc})") from None
    if not isinstance(art, dict) or "config" not in art or "state" not in art:
        raise ArtifactError(f"{path}: not a kgopt program (missing 'config' or 'state')")
    if art.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: program format {art.get('format')!r}, this kgopt reads format {ARTIFACT_FORMAT}")
    made_with = str(art.get("dspy_version", ""))
    if made_with.split(".")[:2] != dspy.__version__.split(".")[:2]:
        raise ArtifactError(f"{path}: made with DSPy {made_with}, this is DSPy {dspy.__version__}; recompile it")
    cfg = art["config"]
    if task and cfg.get("task") != task.upper():
        raise ArtifactError(f"{path}: a {cfg.get('task')} program, not {task.upper()}")
    if lang and cfg.get("lang") != lang:
        raise ArtifactError(f"{path}: a {cfg.get('lang')} program, not {lang}")
    try:
        program = IEProgram(cfg["task"], cfg["lang"], int(cfg.get("split_size") or 0) or None)
        program.load_state(art["state"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: malformed program state ({type(exc).__name__}: {exc})") from None
    return program, art.get("manifest", {})
