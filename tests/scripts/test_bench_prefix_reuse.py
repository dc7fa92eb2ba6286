"""scripts/bench_prefix_reuse.py: the reuse ceilings on token lists, the canonical order, and a run
end to end with the embedded model's real tokenizer (no model call)."""

from pathlib import Path

import pytest
import ujson

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def bench(load_script, monkeypatch, tmp_path):
    module = load_script("bench_prefix_reuse")
    monkeypatch.chdir(tmp_path)
    return module


def test_reuse_from_the_previous_prompt_and_from_the_best_earlier_one(bench):
    prompts = [[1, 2, 3, 4], [1, 2, 9], [1, 2, 3, 4, 5], [7]]
    # previous: [1,2,9] shares 2 with the first; [1,2,3,4,5] 2 with [1,2,9]; [7] none.
    # best earlier: the third shares 4 with the first, which is not the one just before.
    assert bench.reuse(prompts) == {"tokens": 4 + 3 + 5 + 1, "previous": 2 + 2 + 0, "best": 2 + 4 + 0}
    assert bench.reuse([[5, 6]]) == {"tokens": 2, "previous": 0, "best": 0}
    assert bench.common_prefix([1, 2], [1, 2, 3]) == 2 and bench.common_prefix([], [1]) == 0


def test_each_order_is_the_program_with_only_demo_order_changed(bench, tmp_path):
    src = ROOT / "compiled" / "NER_zh.json"
    original = ujson.loads(src.read_text(encoding="utf-8"))
    for order in ("selected", "sorted"):
        variant = ujson.loads(bench.with_demo_order(src, order, tmp_path).read_text(encoding="utf-8"))
        assert variant["config"].pop("demo_order") == order
        assert variant == original
    assert bench.with_demo_order(None, "sorted", tmp_path) is None  # zero-shot: no demonstrations to order


@pytest.mark.llm  # the embedded model's tokenizer and chat template (vocabulary only: no weights run)
def test_end_to_end_on_the_real_tokenizer(bench, shared_data, capsys, tmp_path):
    argv = ["NER:zh:WeiboNER:4", "--program", str(ROOT / "compiled" / "NER_zh.json"), "--data-dir", str(shared_data)]
    assert bench.main(argv) == 0
    rows = [ujson.loads(line) for line in (tmp_path / "runs" / "bench-prefix-reuse" / "results.jsonl").read_text().splitlines()]
    assert [r["order"] for r in rows] == ["selected", "sorted"]
    for r in rows:
        assert r["records"] == 4 and r["calls"] == 4
        assert 0 < r["previous"] <= r["best"] < r["tokens"]  # the shared system turn at least; never the whole prompts
    assert rows[0]["tokens"] == rows[1]["tokens"]  # reordering moves tokens, it adds none
    # The chat template's rendering is what a server counts: 4 prompts of a few hundred tokens each.
    assert 4 * 300 < rows[0]["tokens"] < 4 * 900
    assert sum(line.startswith("| NER | zh | WeiboNER |") for line in capsys.readouterr().out.splitlines()) == 2
