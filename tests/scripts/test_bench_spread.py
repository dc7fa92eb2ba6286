"""scripts/bench_spread.py against the deterministic fake endpoint: no spread, and the counts file."""

import json
from pathlib import Path

from kgopt.testing.fake_endpoint import FakeEndpoint

ROOT = Path(__file__).resolve().parents[2]


def test_a_deterministic_server_has_no_spread(load_script, monkeypatch, tmp_path, capsys):
    bench = load_script("bench_spread")
    monkeypatch.chdir(tmp_path)
    with FakeEndpoint() as ep:
        monkeypatch.setenv("KGOPT_API_BASE", ep.url)
        monkeypatch.setenv("KGOPT_MODEL", "fake")
        assert bench.main(["NER:zh:WeiboNER:4", "--program", str(ROOT / "compiled" / "NER_zh.json")]) == 0
        assert len(ep.requests) == 2 * 4  # both runs asked every record: no cache
    row = json.loads((tmp_path / "runs" / "bench-spread" / "results.jsonl").read_text(encoding="utf-8"))
    assert row["n"] == 4 and row["records_differing"] == 0 and row["f1"][0] == row["f1"][1]
    assert row["difference"]["ci95"] == [0.0, 0.0]
    counts = (tmp_path / "benchmarks" / "counts" / "spread-NER_zh_WeiboNER.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(counts) == 8 and "| NER:zh:WeiboNER:4 |" in capsys.readouterr().out
