"""scripts/bench_augment.py against the fake endpoint: the yield it reports is augment's own count."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from kgopt.testing.fake_endpoint import FakeEndpoint, chat_response

ROOT = Path(__file__).resolve().parents[2]


def test_reports_the_yield_summed_over_seeds(monkeypatch, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_augment", ROOT / "scripts" / "bench_augment.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)
    spec.loader.exec_module(bench)
    monkeypatch.chdir(tmp_path)
    # One good sample and one whose span is not in its text, whatever is asked.
    reply = {"samples": [
        {"text": "Ada Lovelace wrote about the Analytical Engine .", "entity": [{"entity": "Ada Lovelace", "entity_type": "researcher"}]},
        {"text": "Alan Turing studied at Cambridge .", "entity": [{"entity": "Oxford", "entity_type": "university"}]},
    ]}  # fmt: skip
    with FakeEndpoint(respond=lambda req: (200, chat_response(json.dumps(reply)))) as server:
        monkeypatch.setenv("KGOPT_API_BASE", server.url)
        monkeypatch.setenv("KGOPT_MODEL", "fake")
        assert bench.main(["--tasks", "NER:en", "--per-label", "2", "--max-labels", "2", "--seeds", "2", "--json"]) == 0
        calls = len(server.requests)
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["NER/en"]
    assert (s["asked"], s["received"], s["calls"], s["seeds"]) == (8, 8, 4, 2) and calls == 4
    assert s["rejected"]["span_not_in_text"] == 4 and s["accepted"] + sum(s["rejected"].values()) == s["received"]
    assert s["accepted_per_call"] == round(s["accepted"] / 4, 2)
    rows = [json.loads(line) for line in (tmp_path / "runs" / "bench-augment" / "runs.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in rows] == [0, 1] and all(r["source"] == "CrossNER_AI" for r in rows)
