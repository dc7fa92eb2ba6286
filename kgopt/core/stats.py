"""Paired comparisons of two programs on the same records: the F1 difference and its interval.

Micro-F1 is not a mean over records, so the interval is a paired bootstrap over records: draw
the records with replacement (the same draw for both programs), recompute each program's
micro-F1 from the drawn records' counts, and take percentiles of the difference. F1 here is the
exact ``2·TP / (predicted + gold)``; the official figures round P and R first, which can differ
in the second decimal. Pure: counts in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["RecordCount", "PairedDifference", "micro_f1", "paired_bootstrap", "RESAMPLES", "SEED"]

RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class RecordCount:
    """One record's headline counts: matched, predicted and gold items (EE/EEA: arguments)."""

    key: str
    tp: int
    pred: int
    gold: int


@dataclass(frozen=True)
class PairedDifference:
    """F1(b) - F1(a) on the same ``n`` records, with its 95% percentile interval."""

    delta: float
    low: float
    high: float
    n: int
    resamples: int
    seed: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0

    def line(self) -> str:
        return f"ΔF1 {self.delta:+.2f} [95% CI {self.low:+.2f}, {self.high:+.2f}], {self.n} records"

    def verdict(self) -> str:
        """The README's rule in words: "" for a difference, else "not significant at n = N"."""
        return "" if self.significant else f"not significant at n = {self.n}"

    def to_json(self) -> dict[str, float | int | bool]:
        return {"delta_f1": self.delta, "ci95": [self.low, self.high], "records": self.n, "resamples": self.resamples,
                "seed": self.seed, "significant": self.significant}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PairedDifference:
        """The difference ``to_json`` wrote (``significant`` follows from the interval)."""
        low, high = d["ci95"]
        return cls(d["delta_f1"], low, high, d["records"], d["resamples"], d["seed"])


def micro_f1(tp, pred, gold):
    """Micro-F1 in points from summed counts (works on arrays); 0 where nothing was predicted or gold."""
    tp, denom = np.asarray(tp, dtype=float), np.asarray(pred, dtype=float) + np.asarray(gold, dtype=float)
    return np.divide(200.0 * tp, denom, out=np.zeros_like(denom), where=denom > 0)


def _matrix(counts: Sequence[RecordCount]) -> np.ndarray:
    return np.array([[c.tp, c.pred, c.gold] for c in counts], dtype=float).reshape(-1, 3)


def paired_bootstrap(a: Iterable[RecordCount], b: Iterable[RecordCount], resamples: int = RESAMPLES, seed: int = SEED) -> PairedDifference:
    """The paired bootstrap of F1(b) - F1(a); records are matched by ``key`` (both must hold the same keys)."""
    a_by, b_by = {c.key: c for c in a}, {c.key: c for c in b}
    if set(a_by) != set(b_by):
        missing = sorted(set(a_by) ^ set(b_by))[:3]
        raise ValueError(f"the two programs were scored on different records (e.g. {', '.join(missing)})")
    if not a_by:
        raise ValueError("no records to compare")
    keys = sorted(a_by)
    ma, mb = _matrix([a_by[k] for k in keys]), _matrix([b_by[k] for k in keys])
    n = len(keys)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))  # one draw of records, shared by both programs
    sa, sb = ma[idx].sum(axis=1), mb[idx].sum(axis=1)
    diffs = micro_f1(sb[:, 0], sb[:, 1], sb[:, 2]) - micro_f1(sa[:, 0], sa[:, 1], sa[:, 2])
    delta = float(micro_f1(*mb.sum(axis=0)) - micro_f1(*ma.sum(axis=0)))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return PairedDifference(round(delta, 2), round(float(low), 2), round(float(high), 2), n, resamples, seed)
