"""Model text -> the task's canonical structure (IEPile unified labels).

Model output is untrusted input: nothing here raises on it. ``parse_answer`` returns what
it could read plus a status and the list of what it dropped and why.

Two modes:
- ``official``: bare ``json.loads``, as the IEPile evaluator does.
- ``lenient``: code fences, prose around the JSON, trailing commas, single quotes and
  truncated output are repaired (json-repair), then the same validation runs.
Validation is against the chunk's schema: labels that were not asked are dropped, a lone
string where a list belongs is wrapped, ``"NAN"`` and empty values are dropped, RE accepts
``subject/object`` and ``head/tail``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kgopt.core.shapes import Collector, shape_named
from kgopt.core.tasks import TaskSpec

OK = "ok"  # strict JSON and every item valid
REPAIRED = "repaired"  # needed lenient repair to read
PARTIAL = "partial"  # read, but some items were dropped
INVALID = "invalid"  # nothing usable (not JSON / not an object)
EMPTY = "empty"  # the model said nothing
ERROR = "error"  # no answer at all: the LLM call failed (set by the caller, never by the parser)

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.S)


@dataclass
class ParseResult:
    labels: list[dict[str, Any]]
    status: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in (OK, REPAIRED, PARTIAL)


def load_json(raw: Any, mode: str = "lenient") -> tuple[Any, str]:
    """Decode model text. Returns ``(object or None, status)``; never raises."""
    if not isinstance(raw, str):
        return None, INVALID
    if not raw.strip():
        return None, EMPTY
    try:
        # stdlib json, not ujson: the official evaluator's json.loads decides what is valid.
        return json.loads(raw), OK
    except (ValueError, RecursionError):
        if mode == "official":
            return None, INVALID
    return _repair(raw)


def _repair(raw: str) -> tuple[Any, str]:
    import json_repair  # imported lazily: only lenient parsing needs it

    text = raw.strip()
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1).strip()
    # Prose around the JSON: start at the first bracket.
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return None, INVALID
    text = text[min(starts):]
    try:
        obj = json_repair.loads(text)
    except Exception:  # json-repair is robust, but model output is adversarial input
        return None, INVALID
    if obj in ("", None) or (isinstance(obj, (dict, list)) and not obj and text[:1] not in "{["):
        return None, INVALID
    return obj, REPAIRED


def parse_answer(spec: TaskSpec, raw: Any, chunk: list[Any], mode: str = "lenient") -> ParseResult:
    """Parse one model answer for one schema chunk into unified labels. Never raises."""
    try:
        return _parse(spec, raw, chunk, mode)
    except Exception as exc:  # last line of defence: model output must never crash a run
        return ParseResult([], INVALID, [f"parser error: {type(exc).__name__}"])


def _parse(spec: TaskSpec, raw: Any, chunk: list[Any], mode: str) -> ParseResult:
    obj, status = load_json(raw, mode)
    if obj is None:
        return ParseResult([], status, [] if status == EMPTY else ["not JSON"])
    shape = shape_named(spec.shape)
    if mode == "lenient":
        obj = shape.normalise_top(obj)
    if not isinstance(obj, dict):
        return ParseResult([], INVALID, [f"answer is a {type(obj).__name__}, not an object"])
    col = Collector()
    shape.parse(obj, chunk, col)
    if col.problems and status == OK:
        status = PARTIAL
    return ParseResult(col.labels, status, col.problems)


def merge_labels(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Merge the answers of a record's chunks, dropping exact duplicates, keeping order."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for labels in parts:
        for item in labels:
            key = json.dumps(item, sort_keys=True, ensure_ascii=False)
            if key not in seen:
                seen.add(key)
                out.append(item)
    return out
