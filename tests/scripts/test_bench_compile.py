"""scripts/bench_compile.py against the fake endpoint: a measurement in parts, joined, gives the
row and counts of the same records measured at once; --join refuses parts that do not fit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import ujson

from kgopt.core.stats import RecordCount, paired_bootstrap
from kgopt.data.readers import load_examples

ROOT = Path(__file__).resolve().parents[2]
CASE = "NER:zh:2:{}:WeiboNER"
NAME = "NER_zh_WeiboNER"


@pytest.fixture()
def bench(load_script, monkeypatch, tmp_path, fake_llm):
    module = load_script("bench_compile")
    (tmp_path / "compiled").symlink_to(ROOT / "compiled")  # --no-compile takes compiled/NER_zh.json
    monkeypatch.chdir(tmp_path)  # benchmarks/counts/ and runs/ go here
    monkeypatch.setenv("KGOPT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KGOPT_API_BASE", fake_llm.url)
    monkeypatch.setenv("KGOPT_MODEL", "fake")
    return module


def _lines(path: Path) -> list[dict]:
    return [ujson.loads(l) for l in path.read_text(encoding="utf-8").splitlines()]


def _results() -> list[dict]:
    return _lines(Path("runs/bench-compile/results.jsonl"))


def test_test_spec(bench):
    assert bench.parse_test("all") == (0, None, "")
    assert bench.parse_test("40") == (0, 40, "")
    assert bench.parse_test("20-40") == (20, 20, "_r20-40")
    for bad in ("0", "40-20", "5-5", "-3", "a-b", "x"):
        with pytest.raises(SystemExit, match="TEST must be"):
            bench.parse_test(bad)


def test_parts_joined_are_the_records_measured_at_once(bench, capsys):
    assert bench.main([CASE.format(4), "--no-compile"]) == 0
    whole_counts = sorted(_lines(Path("benchmarks/counts") / f"{NAME}.jsonl"), key=lambda d: (d["run"], d["record"]))
    whole = _results()[-1]
    (Path("benchmarks/counts") / f"{NAME}.jsonl").unlink()

    assert bench.main([CASE.format("0-2"), "--no-compile"]) == 0
    assert bench.main([CASE.format("2-4"), "--no-compile"]) == 0
    parts = sorted(p.name for p in Path("benchmarks/counts/parts").iterdir())
    assert parts == [f"{NAME}_r0-2.json", f"{NAME}_r0-2.jsonl", f"{NAME}_r2-4.json", f"{NAME}_r2-4.jsonl"]
    first_ids = {ex.record.id for ex in load_examples("NER", "zh", "test", source="WeiboNER", limit=2)}
    assert {d["record"].split("/", 1)[1] for d in _lines(Path(f"benchmarks/counts/parts/{NAME}_r2-4.jsonl"))}.isdisjoint(first_ids)

    capsys.readouterr()
    assert bench.main(["--join", NAME]) == 0
    joined = _results()[-1]
    out = capsys.readouterr().out
    assert sorted(_lines(Path("benchmarks/counts") / f"{NAME}.jsonl"), key=lambda d: (d["run"], d["record"])) == whole_counts
    for k in ("n", "zero_shot_f1", "strongest", "compiled_test_f1", "difference", "program_sha256"):
        assert joined[k] == whole[k], k
    assert joined["parts"] == [f"{NAME}_r0-2.json", f"{NAME}_r2-4.json"] and joined["n"] == 4
    seconds = sum(ujson.loads(Path(f"benchmarks/counts/parts/{NAME}_r{r}.json").read_text())["program_seconds"] for r in ("0-2", "2-4"))
    assert seconds > 0 and joined["records_per_hour"] == round(4 / seconds * 3600, 1)
    # The interval is recomputed over all records, not taken from a part.
    runs = bench.read_counts(Path("benchmarks/counts") / f"{NAME}.jsonl")
    d = paired_bootstrap(runs[bench.RUNS[joined["strongest"]]], runs["compiled"])
    assert joined["difference"] == d.to_json()
    assert [l for l in out.splitlines() if l.startswith("| NER | zh | WeiboNER | 4 |")]


def test_join_refuses_a_gap_an_overlap_and_another_program(bench):
    assert bench.main([CASE.format("0-2"), "--no-compile"]) == 0
    parts = Path("benchmarks/counts/parts")
    meta = ujson.loads((parts / f"{NAME}_r0-2.json").read_text())

    def fake_part(a: int, b: int, **change) -> Path:
        shutil.copy(parts / f"{NAME}_r0-2.jsonl", parts / f"{NAME}_r{a}-{b}.jsonl")
        path = parts / f"{NAME}_r{a}-{b}.json"
        path.write_text(ujson.dumps({**meta, "skip": a, "limit": b - a, **change}))
        return path

    gap = fake_part(3, 5)
    with pytest.raises(SystemExit, match=rf"{gap.name}: starts at record 4 of each source, expected 3"):
        bench.main(["--join", NAME])
    gap.unlink()
    other = fake_part(2, 4, program_sha256="0" * 64)
    with pytest.raises(SystemExit, match=rf"{other.name}: program_sha256 is"):
        bench.main(["--join", NAME])
    other.unlink()
    same = fake_part(2, 4)  # the right place, but the first part's records again
    with pytest.raises(SystemExit, match=rf"{same.name}: records also in an earlier part"):
        bench.main(["--join", NAME])
    with pytest.raises(SystemExit, match="no parts of RE_zh"):
        bench.main(["--join", "RE_zh"])


def test_read_counts_names_the_bad_line(bench, tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"run": "compiled", "record": "a/1", "tp": 1, "pred": 1, "gold": 1}\n{"run": "compiled"}\n')
    with pytest.raises(SystemExit, match=r"c.jsonl:2: not a counts line"):
        bench.read_counts(path)
    path.write_text('{"run": "compiled", "record": "a/1", "tp": 1, "pred": 2, "gold": 3}\n')
    assert bench.read_counts(path) == {"compiled": [RecordCount("a/1", 1, 2, 3)]}


def test_a_case_whose_calls_failed_writes_no_counts_and_exits_1(load_script, monkeypatch, tmp_path, capsys):
    from kgopt.testing.fake_endpoint import FakeEndpoint

    bench = load_script("bench_compile")
    (tmp_path / "compiled").symlink_to(ROOT / "compiled")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KGOPT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KGOPT_MODEL", "fake")
    monkeypatch.setenv("KGOPT_MAX_RETRIES", "0")
    with FakeEndpoint(respond=lambda req: (500, {"error": "down"})) as dead:
        monkeypatch.setenv("KGOPT_API_BASE", dead.url)
        assert bench.main([CASE.format("0-2"), "--no-compile"]) == 1
    assert "failed: CallsFailed" in capsys.readouterr().out
    assert not Path("benchmarks/counts").exists()  # neither a part nor a whole row to commit
