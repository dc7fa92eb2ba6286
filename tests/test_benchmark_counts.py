"""BENCHMARKS.md's main table follows from its committed per-record counts.

Every row of "Compiled programs against the strongest zero-shot baseline" is recomputed from
benchmarks/counts/: n, the three zero-shot F1s and the compiled F1 (official rounding), which
zero-shot way is the strongest, and ΔF1 with its paired 95% interval. A row edited by hand, or
counts replaced without the row, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import sys

import pytest

from kgopt.core.stats import RecordCount, paired_bootstrap
from kgopt.evaluation import ZERO_SHOT_WAYS, strongest_way

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_compile  # noqa: E402  (the one reader of benchmarks/counts/ and the official F1 of counts)

COUNTS = ROOT / "benchmarks" / "counts"
SECTION = "## Compiled programs against the strongest zero-shot baseline"
DELTA = re.compile(r"^([+-]\d+\.\d\d) \[([+-]\d+\.\d\d), ([+-]\d+\.\d\d)\] vs (strict|lenient|constrained)( \(not significant at n = (\d+)\))?$")


def table_rows() -> list[dict[str, str]]:
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", 1)]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[1:] if not ln.startswith("|---")]


def counts_of(row: dict[str, str]) -> dict[str, list[RecordCount]]:
    """The row's counts file: TASK_lang_SOURCE.jsonl, or TASK_lang.jsonl for a row over all sources."""
    name = f"{row['task']}_{row['lang']}"
    path = COUNTS / f"{name}_{row['source']}.jsonl"
    return bench_compile.read_counts(path if path.is_file() else COUNTS / f"{name}.jsonl")


ROWS = table_rows()


def test_the_table_has_a_row_for_every_committed_program():
    assert sorted((r["task"], r["lang"]) for r in ROWS) == sorted((p.stem.split("_")[0], p.stem.split("_")[1]) for p in (ROOT / "compiled").glob("*_*.json"))


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['task']}_{r['lang']}")
def test_a_row_is_what_its_counts_give(row):
    runs = counts_of(row)
    compiled = runs["compiled"]
    zero = {way: runs[f"zero-shot {way}"] for way in ZERO_SHOT_WAYS}
    assert int(row["n"]) == len(compiled) == len({c.key for c in compiled}) and all(len(z) == len(compiled) for z in zero.values())
    f1s = {way: bench_compile.official_f1(z) for way, z in zero.items()}
    for way in ZERO_SHOT_WAYS:
        assert float(row[f"zero-shot {way}"]) == pytest.approx(f1s[way], abs=0.005), way
    assert float(row["compiled"]) == pytest.approx(bench_compile.official_f1(compiled), abs=0.005)
    m = DELTA.match(row["ΔF1 vs strongest [95% CI]"])
    assert m, row["ΔF1 vs strongest [95% CI]"]
    named = m.group(4)
    assert named == strongest_way(f1s)
    d = paired_bootstrap(zero[named], compiled)
    assert (float(m.group(1)), float(m.group(2)), float(m.group(3))) == (d.delta, d.low, d.high)
    # "not significant at n = ..." exactly where the interval holds 0, with the row's n
    assert (m.group(5) is None) == d.significant and (m.group(6) is None or int(m.group(6)) == d.n)
