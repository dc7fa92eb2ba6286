"""A study's fingerprint: everything its trials' scores depend on, hashed.

A study records it when it is created. Opening a study with another fingerprint is refused,
naming what differs (``study.py``): trials scored on other data, another model or another
search space must never choose this run's program. Nothing secret goes in: the endpoint is
redacted before it is recorded or hashed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import dspy
import ujson

from kgopt import __version__
from kgopt.compiler import instructzero
from kgopt.compiler.instructions import PROMPT_VERSION
from kgopt.compiler.space import SEARCH_SPACE_VERSION
from kgopt.redaction import redact_identity

__all__ = ["Fingerprint", "fingerprint_of", "differences"]


@dataclass(frozen=True)
class Fingerprint:
    parts: dict[str, Any]  # what the scores depend on, readable (recorded on the study)

    @property
    def digest(self) -> str:
        blob = ujson.dumps(self.parts, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    @property
    def short(self) -> str:
        return self.digest[:8]


def fingerprint_of(options: Any, files: dict[str, Any], sources: list[str], connection: Any) -> Fingerprint:
    """The fingerprint of a compile: ``options`` (CompileOptions), the data files it read (with
    their SHA-256, as the manifest records them), the dev sources and the connection."""
    o = options
    data = {split: sorted(f"{e['path']}@{e['sha256']}" for e in entries) for split, entries in files.items() if isinstance(entries, list)}
    # What a trial's value is: a pareto study's trials are (F1, tokens), a single one's F1 alone, so
    # neither resumes as the other. Recorded only when not the default "f1", so that studies made
    # before objectives existed keep their fingerprint. Successive halving is not a part: a
    # complete trial scores all of dev either way, and only complete trials choose the program.
    objective = getattr(o, "objective", "f1")
    # The same rule for what changes the search but not its defaults: the sampler (CMA-ES asks
    # every trial the demonstration weights) and InstructZero's instruction candidates.
    extra = {"objective": objective} if objective != "f1" else {}
    if getattr(o, "sampler", "tpe") != "tpe":
        extra["sampler"] = o.sampler
    if not getattr(o, "continuous", True):  # a categorical temperature: Optuna refuses to mix it with the float one
        extra["continuous"] = False
    if getattr(o, "instructzero_trials", 0):
        extra["instructzero"] = {"trials": o.instructzero_trials, "d": instructzero.DEFAULT_D, "n_soft": instructzero.DEFAULT_N_SOFT,
                                 "prompt": instructzero.PROMPT_VERSION, "scored_on": "first rung"}
    return Fingerprint({**extra,
        "task": o.task,
        "lang": o.lang,
        "source": o.source,
        "sources": sources,
        "train_limit": o.train_limit,
        "dev_limit": o.dev_limit,
        "data": data,
        "model": connection.model,
        "endpoint": redact_identity(connection.identity),
        "search_space": SEARCH_SPACE_VERSION,
        "optimizers": list(o.optimizers),
        "max_demos": o.max_demos,
        "instruction_proposals": o.instruction_proposals,
        "instruction_prompt": PROMPT_VERSION,
        "seed": o.seed,
        "kgopt": __version__,
        "dspy": dspy.__version__,
    })


def differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What changed between a study's recorded fingerprint parts and this run's, one phrase each."""
    out = []
    for key in sorted(set(recorded) | set(now)):
        a, b = recorded.get(key), now.get(key)
        if a == b:
            continue
        if key == "data" and isinstance(a, dict) and isinstance(b, dict):
            for split in sorted(set(a) | set(b)):
                if a.get(split) != b.get(split):
                    out.append(f"{split} data files ({_files(a.get(split))} -> {_files(b.get(split))})")
        else:
            out.append(f"{key} ({_short(a)} -> {_short(b)})")
    return out


def _files(entries: list[str] | None) -> str:
    if not entries:
        return "none"
    return ", ".join(e.split("@")[0] + "@" + e.split("@")[-1][:8] for e in entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")


def _short(value: Any) -> str:
    text = ujson.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
