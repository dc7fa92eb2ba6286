"""scripts/bench_kg.py against the fake endpoint: the three zero-shot baselines on the same
documents, the strongest of them (ties to the first), the paired difference against it, and
the per-document counts file."""

import json
import sys
from pathlib import Path

import pytest

from kgopt.core.scoring import PredictionGroup
from kgopt.core.shapes import shape_named
from kgopt.core.stats import RecordCount, micro_f1, paired_bootstrap
from kgopt.data.readers import read_instructie
from kgopt.testing.fake_endpoint import FakeEndpoint

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 4
RECORDS = list(read_instructie(ROOT / "dataset" / "InstructIE" / "test_en.json"))[:LIMIT]
SHAPE = shape_named("entity_attributes")  # KG's default answer format (OneKE's)


def _gold(record, chunk) -> str:
    return json.dumps(SHAPE.gold_answer(record, chunk), ensure_ascii=False)


def _answer(record, chunk, how: str) -> str:
    """``gold``: the record's gold answer; ``fenced``: the same in a code fence (strict parse reads
    nothing, lenient all of it); ``none``: nothing."""
    return {"gold": lambda: _gold(record, chunk), "fenced": lambda: f"```json\n{_gold(record, chunk)}\n```", "none": lambda: "{}"}[how]()


def _way(request: dict) -> str:
    if "response_format" in request:
        return "constrained"
    return "compiled" if any(m["role"] == "assistant" for m in request["messages"]) else "plain"  # only the compiled program has demos


def _asked(request: dict) -> dict:
    return json.loads(request["messages"][-1]["content"])


def _record_of(text: str):
    return next(r for r in RECORDS if text in r.text)


def _run_bench(bench, monkeypatch, tmp_path, answers):
    """main() on the first LIMIT English test records; ``answers[way]`` answers each request of that way."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "OUT", tmp_path / "runs" / "bench-kg")
    monkeypatch.setattr(bench, "COUNTS", tmp_path / "benchmarks" / "counts")

    def answer(request):
        ins = _asked(request)
        return answers[_way(request)](_record_of(ins["input"]), ins["schema"])

    with FakeEndpoint(answer=answer) as ep:
        monkeypatch.setenv("KGOPT_API_BASE", ep.url)
        monkeypatch.setenv("KGOPT_MODEL", "fake")
        monkeypatch.setattr(sys, "argv", ["bench_kg.py", "--limit", str(LIMIT), "--langs", "en"])
        bench.main()
    return ep.requests


def _counts(path: Path) -> dict[str, list[RecordCount]]:
    runs: dict[str, list[RecordCount]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        c = json.loads(line)
        assert set(c) == {"run", "record", "tp", "pred", "gold"}
        runs.setdefault(c["run"], []).append(RecordCount(c["record"], c["tp"], c["pred"], c["gold"]))
    return runs


def _f1(counts: list[RecordCount]) -> float:
    return round(float(micro_f1(sum(c.tp for c in counts), sum(c.pred for c in counts), sum(c.gold for c in counts))), 2)


def test_bench_kg_compares_the_compiled_program_with_the_strongest_of_three_zero_shot_baselines(load_script, monkeypatch, tmp_path, capsys):
    bench = load_script("bench_kg")
    last = RECORDS[-1].text
    answers = {
        "plain": lambda r, chunk: _answer(r, chunk, "fenced"),  # strict 0, lenient 100
        "constrained": lambda r, chunk: _answer(r, chunk, "none"),
        "compiled": lambda r, chunk: _answer(r, chunk, "none" if r.text == last else "gold"),  # all but the last document
    }
    requests = _run_bench(bench, monkeypatch, tmp_path, answers)
    out = capsys.readouterr().out

    # The three baselines and the compiled program asked about the very same documents.
    asked = {w: sorted(_asked(q)["input"] for q in requests if _way(q) == w) for w in ("plain", "constrained", "compiled")}
    assert asked["plain"] == asked["constrained"] == asked["compiled"] == sorted(r.text for r in RECORDS)
    assert all(q["response_format"]["type"] == "json_schema" for q in requests if _way(q) == "constrained")

    rows = [json.loads(l) for l in (tmp_path / "runs" / "bench-kg" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["program"] for r in rows] == ["zero-shot", "zero-shot-constrained", "compiled"]
    assert json.loads(Path(rows[1]["program_file"]).read_text(encoding="utf-8"))["config"]["output"] == "json"
    assert all(r["docs"] == LIMIT for r in rows)
    row = rows[-1]

    # The counts file holds every run on the same documents, and recomputes every F1 and the interval.
    counts = _counts(tmp_path / "benchmarks" / "counts" / "kg-en.jsonl")
    assert list(counts) == ["zero-shot strict", "zero-shot lenient", "zero-shot constrained", "compiled"]
    keys = {tuple(sorted(c.key for c in cs)) for cs in counts.values()}
    assert keys == {tuple(sorted(f"InstructIE/{r.id}" for r in RECORDS))}
    gold = sum(len(r.labels) for r in RECORDS)
    assert all(sum(c.gold for c in cs) == gold == rows[0]["gold_triples"] for cs in counts.values())
    f1s = {way: _f1(counts[f"zero-shot {way}"]) for way in ("strict", "lenient", "constrained")}
    assert row["zero_shot_f1"] == f1s and row["compiled_f1"] == _f1(counts["compiled"])
    assert f1s == {"strict": 0.0, "lenient": 100.0, "constrained": 0.0}
    assert 0 < row["compiled_f1"] < 100

    # The difference is against the strongest baseline, lenient here.
    assert row["strongest"] == "lenient"
    d = paired_bootstrap(counts["zero-shot lenient"], counts["compiled"])
    assert row["difference"] == d.to_json() and row["n"] == LIMIT and d.delta < 0
    assert d.delta == round(row["compiled_f1"] - f1s["lenient"], 2)
    verdict = "" if d.significant else f" (not significant at n = {LIMIT})"
    assert f"| en | {LIMIT} | 0.00 | 100.00 | 0.00 | {row['compiled_f1']:.2f} | lenient | {d.line()} vs zero-shot lenient{verdict} |" in out


def _groups(answer):
    """Scorer groups for RECORDS, one call per record with its topic's chunk, answered by ``answer``."""
    chunks = {r.id: [{"entity_type": r.cate, "attributes": sorted({l["relation"] for l in r.labels})}] for r in RECORDS}
    return {f"InstructIE\x1f{r.id}": PredictionGroup(source="InstructIE", gold=r.labels, outputs=[answer(r, chunks[r.id])], chunks=[chunks[r.id]])
            for r in RECORDS}


@pytest.mark.parametrize(
    "plain, constrained, strongest",
    [
        ("gold", "gold", "strict"),  # all three tie: the first
        ("fenced", "gold", "lenient"),  # lenient and constrained tie above strict: the first of them
        ("none", "gold", "constrained"),
        ("gold", "none", "strict"),  # strict and lenient tie
    ],
)
def test_the_strongest_baseline_is_the_highest_f1_and_a_tie_goes_to_the_first(load_script, monkeypatch, tmp_path, plain, constrained, strongest):
    bench = load_script("bench_kg")
    monkeypatch.setattr(bench, "COUNTS", tmp_path)
    half = {r.id for r in RECORDS[: LIMIT // 2]}
    groups = {
        "zero-shot": _groups(lambda r, c: _answer(r, c, plain)),
        "zero-shot-constrained": _groups(lambda r, c: _answer(r, c, constrained)),
        "compiled": _groups(lambda r, c: _answer(r, c, "gold" if r.id in half else "none")),
    }
    summary, d = bench.compare("en", groups)
    assert summary["strongest"] == strongest
    counts = _counts(tmp_path / "kg-en.jsonl")
    assert d == paired_bootstrap(counts[f"zero-shot {strongest}"], counts["compiled"])
    assert summary["zero_shot_f1"][strongest] == 100.0 and d.delta == round(summary["compiled_f1"] - 100.0, 2)


def test_strongest_orders_by_f1_then_strict_lenient_constrained(load_script):
    bench = load_script("bench_kg")
    assert bench.strongest_way({"strict": 1.0, "lenient": 1.0, "constrained": 1.0}) == "strict"
    assert bench.strongest_way({"strict": 0.0, "lenient": 2.0, "constrained": 2.0}) == "lenient"
    assert bench.strongest_way({"strict": 2.0, "lenient": 0.0, "constrained": 2.0}) == "strict"
    assert bench.strongest_way({"strict": 1.0, "lenient": 1.99, "constrained": 2.0}) == "constrained"
