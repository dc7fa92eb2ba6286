"""scripts/bench_kg.py against the fake endpoint: per-document counts and the paired interval line."""

import json
import sys
from pathlib import Path

from kgopt.testing.fake_endpoint import FakeEndpoint

ROOT = Path(__file__).resolve().parents[2]


def test_bench_kg_prints_a_paired_interval_per_language(load_script, monkeypatch, tmp_path, capsys):
    bench = load_script("bench_kg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "OUT", tmp_path / "runs" / "bench-kg")
    with FakeEndpoint() as ep:
        monkeypatch.setenv("KGOPT_API_BASE", ep.url)
        monkeypatch.setenv("KGOPT_MODEL", "fake")
        monkeypatch.setattr(sys, "argv", ["bench_kg.py", "--limit", "3", "--langs", "en"])
        bench.main()
    out = capsys.readouterr().out
    rows = [json.loads(l) for l in (tmp_path / "runs" / "bench-kg" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["program"] for r in rows] == ["zero-shot", "compiled"]
    for r in rows:
        assert len(r["record_counts"]) == 3 and sum(c[3] for c in r["record_counts"]) == r["gold_triples"]
    assert "- en: ΔF1 " in out and ", 3 records" in out
