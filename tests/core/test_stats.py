"""The paired bootstrap interval of an F1 difference (kgopt.core.stats)."""

import itertools

import numpy as np
import pytest
import ujson

from kgopt.core.stats import PairedDifference, RecordCount, micro_f1, paired_bootstrap


def _counts(rows):
    return [RecordCount(f"r{i}", *row) for i, row in enumerate(rows)]


# Six records, so that the exact bootstrap distribution (6^6 draws) has no step at its 2.5% point.
A = _counts([(0, 3, 4), (1, 2, 2), (0, 1, 1), (2, 3, 3), (1, 1, 2), (0, 2, 1)])
B = _counts([(2, 3, 4), (1, 2, 2), (1, 1, 1), (1, 3, 3), (0, 2, 2), (1, 1, 1)])


def _exact_interval(a, b):
    """Every one of the n^n equally likely paired resamples, enumerated: the bootstrap distribution exactly."""
    n = len(a)
    ma = np.array([[c.tp, c.pred, c.gold] for c in a], float)
    mb = np.array([[c.tp, c.pred, c.gold] for c in b], float)
    diffs = []
    for draw in itertools.product(range(n), repeat=n):
        sa, sb = ma[list(draw)].sum(0), mb[list(draw)].sum(0)
        diffs.append(micro_f1(*sb) - micro_f1(*sa))
    return np.percentile(diffs, [2.5, 97.5])


def test_matches_exact_enumeration_on_a_small_case():
    got = paired_bootstrap(A, B, resamples=40_000, seed=1)
    low, high = _exact_interval(A, B)
    assert got.n == 6 and got.delta == pytest.approx(200 * 6 / 25 - 200 * 4 / 25, abs=0.01)
    assert got.low == pytest.approx(low, abs=1.0) and got.high == pytest.approx(high, abs=1.0)
    assert got.low < got.delta < got.high


def test_identical_programs_give_zero_zero():
    d = paired_bootstrap(A, A)
    assert (d.delta, d.low, d.high) == (0.0, 0.0, 0.0) and not d.significant


def test_a_null_difference_contains_zero():
    a = _counts([(1, 1, 1), (0, 1, 1)] * 10)
    b = _counts([(0, 1, 1), (1, 1, 1)] * 10)
    d = paired_bootstrap(a, b)
    assert d.delta == 0.0 and d.low < 0 < d.high and not d.significant
    assert d.verdict() == "not significant at n = 20"


def test_a_clear_gain_excludes_zero_and_reads_well():
    a = _counts([(0, 1, 2)] * 30)
    b = _counts([(2, 2, 2)] * 25 + [(0, 1, 2)] * 5)
    d = paired_bootstrap(a, b)
    assert d.significant and d.low > 0 and d.verdict() == ""
    assert d.line() == f"ΔF1 {d.delta:+.2f} [95% CI {d.low:+.2f}, {d.high:+.2f}], 30 records"
    assert paired_bootstrap(a, b) == d  # a fixed seed: the same interval every time
    assert PairedDifference.from_json(ujson.loads(ujson.dumps(d.to_json()))) == d  # as reports store it


def test_records_must_match():
    with pytest.raises(ValueError, match="different records"):
        paired_bootstrap(A, A[:-1])
