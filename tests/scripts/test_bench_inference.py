"""scripts/bench_inference.py: the server-log parser on a real llama-cpp-python log, and the script
end to end against the fake endpoint (client figures exact, server figures n/a or from a log)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import ujson

from kgopt.testing.fake_endpoint import FakeEndpoint, oneke_answer

ROOT = Path(__file__).resolve().parents[2]

# An excerpt of a real embedded-server log (Qwen2.5-Coder-0.5B on 2 CPU cores): the first request
# (no prefix in the KV cache, so no Llama.generate line), one that reused all but one token (0 ms,
# "inf tokens per second"), two ordinary ones, and a request still running (its timings not yet written).
LOG = """\
INFO:     127.0.0.1:45684 - "GET /v1/models HTTP/1.1" 401 Unauthorized
INFO:     127.0.0.1:45686 - "GET /v1/models HTTP/1.1" 200 OK
llama_perf_context_print:        load time =       1.52 ms
llama_perf_context_print: prompt eval time =    4256.50 ms /   570 tokens (    7.47 ms per token,   133.91 tokens per second)
llama_perf_context_print:        eval time =   11475.63 ms /   137 runs   (   83.76 ms per token,    11.94 tokens per second)
llama_perf_context_print:       total time =   42201.85 ms /   707 tokens
llama_perf_context_print:    graphs reused =        136
INFO:     127.0.0.1:45694 - "POST /v1/chat/completions HTTP/1.1" 200 OK
Llama.generate: 569 prefix-match hit, remaining 1 prompt tokens to eval
llama_perf_context_print:        load time =       1.52 ms
llama_perf_context_print: prompt eval time =       0.00 ms /     1 tokens (    0.00 ms per token,      inf tokens per second)
llama_perf_context_print:        eval time =    6087.29 ms /    60 runs   (  101.45 ms per token,     9.86 tokens per second)
llama_perf_context_print:       total time =    6298.20 ms /    61 tokens
llama_perf_context_print:    graphs reused =         60
INFO:     127.0.0.1:45694 - "POST /v1/chat/completions HTTP/1.1" 200 OK
Llama.generate: 5 prefix-match hit, remaining 312 prompt tokens to eval
llama_perf_context_print:        load time =       1.52 ms
llama_perf_context_print: prompt eval time =    5173.56 ms /   312 tokens (   16.58 ms per token,    60.31 tokens per second)
llama_perf_context_print:        eval time =    7564.77 ms /    78 runs   (   96.98 ms per token,    10.31 tokens per second)
llama_perf_context_print:       total time =   12985.30 ms /   390 tokens
llama_perf_context_print:    graphs reused =         77
INFO:     127.0.0.1:45694 - "POST /v1/chat/completions HTTP/1.1" 200 OK
Llama.generate: 89 prefix-match hit, remaining 209 prompt tokens to eval
llama_perf_context_print:        load time =       1.52 ms
llama_perf_context_print: prompt eval time =   11506.96 ms /   209 tokens (   55.06 ms per token,    18.16 tokens per second)
llama_perf_context_print:        eval time =   12053.61 ms /    70 runs   (  172.19 ms per token,     5.81 tokens per second)
llama_perf_context_print:       total time =   23836.49 ms /   279 tokens
llama_perf_context_print:    graphs reused =         69
INFO:     127.0.0.1:45694 - "POST /v1/chat/completions HTTP/1.1" 200 OK
Llama.generate: 89 prefix-match hit, remaining 949 prompt tokens to eval
"""

# One request's block as the server writes it; the tests' fake server appends it per request.
BLOCK = """\
Llama.generate: 60 prefix-match hit, remaining 40 prompt tokens to eval
llama_perf_context_print:        load time =       1.52 ms
llama_perf_context_print: prompt eval time =     400.00 ms /    40 tokens (   10.00 ms per token,   100.00 tokens per second)
llama_perf_context_print:        eval time =    1000.00 ms /    20 runs   (   50.00 ms per token,    20.00 tokens per second)
llama_perf_context_print:       total time =    1450.00 ms /    60 tokens
INFO:     127.0.0.1:45694 - "POST /v1/chat/completions HTTP/1.1" 200 OK
"""


@pytest.fixture()
def bench(load_script, monkeypatch, tmp_path):
    module = load_script("bench_inference")
    monkeypatch.chdir(tmp_path)  # runs/bench-inference/ goes here
    monkeypatch.setenv("KGOPT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KGOPT_MODEL", "fake")
    return module


def _rows() -> list[dict]:
    return [ujson.loads(l) for l in Path("runs/bench-inference/results.jsonl").read_text(encoding="utf-8").splitlines()]


def test_parse_server_log_sums_the_complete_blocks(bench):
    s = bench.parse_server_log(LOG)
    assert s["requests"] == 4 and s["incomplete"] == 1  # the running request adds nothing
    assert s["cached_tokens"] == 0 + 569 + 5 + 89 == 663
    assert s["prompt_tokens"] == 570 + (569 + 1) + (5 + 312) + (89 + 209) == 1755
    assert s["prompt_eval_tokens"] == 570 + 1 + 312 + 209 == 1092
    assert s["prompt_eval_ms"] == pytest.approx(4256.50 + 0.00 + 5173.56 + 11506.96) == 20937.02
    assert s["gen_tokens"] == 137 + 60 + 78 + 70 == 345
    assert s["gen_ms"] == pytest.approx(37181.30)
    assert s["total_ms"] == pytest.approx(85321.84)
    assert s["prompt_rate"] == pytest.approx(1092 / 20.93702) and round(s["prompt_rate"], 2) == 52.16
    assert s["gen_rate"] == pytest.approx(345 / 37.18130) and round(s["gen_rate"], 2) == 9.28
    assert s["cache_share"] == pytest.approx(663 / 1755) and round(s["cache_share"], 4) == 0.3778


def test_parse_server_log_of_nothing(bench):
    s = bench.parse_server_log("INFO:     Application startup complete.\n")
    assert s["requests"] == 0 and s["prompt_rate"] is None and s["gen_rate"] is None and s["cache_share"] is None
    # A text starting mid-block (its prompt eval line before the excerpt) counts nothing of it.
    tail = LOG.split("graphs reused =        136\n", 1)[0].split("\n", 4)[4]  # from the block's eval line
    assert bench.parse_server_log(tail)["requests"] == 0


def test_physical_limit(bench):
    server = {"prompt_rate": 50.0, "gen_rate": 10.0, "cache_share": 0.25}
    lim = bench.physical_limit(1000, 30, server, measured_seconds_per_record=46.0)
    assert lim["seconds_per_record_no_reuse"] == pytest.approx(1000 / 50 + 30 / 10) == 23.0
    assert lim["seconds_per_record_measured_reuse"] == pytest.approx(750 / 50 + 3) == 18.0
    assert lim["records_per_hour_no_reuse"] == pytest.approx(3600 / 23)
    assert lim["measured_over_limit"] == pytest.approx(2.0)
    assert bench.physical_limit(1000, 30, None, 46.0) is None


def test_cases(bench):
    c = bench.parse_case("ner:zh:WeiboNER:20", "test", None, 5)
    assert (c.task, c.lang, c.split, c.source, c.limit) == ("NER", "zh", "test", "WeiboNER", 20)
    c = bench.parse_case("RE:en", "dev", "NYT11", 5)
    assert (c.source, c.limit, c.split) == ("NYT11", 5, "dev")
    assert bench.parse_case("RE:en:all:all", "test", "NYT11", 5).source is None
    with pytest.raises(argparse.ArgumentTypeError, match="LIMIT must be a positive number"):
        bench.parse_case("RE:en:all:0", "test", None, 5)


def test_end_to_end_against_a_remote_endpoint(bench, capsys, shared_data, monkeypatch):
    with FakeEndpoint() as ep:
        monkeypatch.setenv("KGOPT_API_BASE", ep.url)
        argv = ["NER:zh:WeiboNER:3", "--program", "zero-shot", "--program", str(ROOT / "compiled" / "NER_zh.json"), "--data-dir", str(shared_data)]
        assert bench.main(argv) == 0
        sent = len(ep.requests)
    out = capsys.readouterr().out
    rows = _rows()
    assert [r["program"] for r in rows] == ["zero-shot", str(ROOT / "compiled" / "NER_zh.json")]
    assert sum(r["calls"] for r in rows) == sent  # no response cache: every call reached the endpoint
    for r in rows:
        assert r["records"] == 3 and r["failed_calls"] == 0 and r["cache_hits"] == 0
        assert r["calls_per_record"] == r["calls"] / 3 == r["calls_asked"] / 3 >= 1
        assert r["prompt_tokens_per_call"] == 100 and r["completion_tokens_per_call"] == 20  # what FakeEndpoint reports
        assert r["prompt_tokens_per_record"] == 100 * r["calls_per_record"]
        assert r["records_per_hour"] == pytest.approx(3 * 3600 / r["seconds"])
        assert r["server"] is None and r["limit_model"] is None and r["server_source"].startswith("n/a: not the embedded server")
    table = [l for l in out.splitlines() if l.startswith("| NER ")]
    assert len(table) == 2
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[5] == "3" and cells[7] == "100.0" and cells[8] == "20.0"
        assert cells[11:16] == ["n/a"] * 5 and cells[16] != "n/a" and cells[17:] == ["n/a", "n/a"]  # server and limit figures; measured s/record
    # the second program against the first, paired on the same 3 records
    from kgopt.core.stats import RecordCount, paired_bootstrap

    a, b = ([RecordCount(*c) for c in r["record_counts"]] for r in rows)
    assert [c.key for c in a] == [c.key for c in b] and len(a) == 3
    expected = paired_bootstrap(a, b).line()
    assert [l for l in out.splitlines() if " against zero-shot: " in l] == [
        f"NER:zh:test:WeiboNER:3: {rows[1]['program']} against zero-shot: {expected} "
        + ("(a difference)" if paired_bootstrap(a, b).significant else "(not significant at n = 3)")
    ]


def test_server_log_counts_only_this_run(bench, capsys, shared_data, monkeypatch, tmp_path):
    log = tmp_path / "server.log"
    log.write_text(LOG, encoding="utf-8")  # written before the run: not counted

    def answer(req):
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(BLOCK)
        return oneke_answer(req)

    with FakeEndpoint(answer=answer) as ep:
        monkeypatch.setenv("KGOPT_API_BASE", ep.url)
        assert bench.main(["NER:zh:WeiboNER:3", "--data-dir", str(shared_data), "--server-log", str(log)]) == 0
        sent = len(ep.requests)
    (r,) = _rows()
    s = r["server"]
    assert s["requests"] == sent == r["calls"] and s["incomplete"] == 0  # the request cut off in LOG is before the run
    assert s["prompt_rate"] == pytest.approx(100.0) and s["gen_rate"] == pytest.approx(20.0) and s["cache_share"] == pytest.approx(0.6)
    lim = r["limit_model"]
    per_record = r["calls_per_record"]
    assert lim["seconds_per_record_no_reuse"] == pytest.approx(per_record * (100 / 100 + 20 / 20))
    assert lim["seconds_per_record_measured_reuse"] == pytest.approx(per_record * (40 / 100 + 20 / 20))
    assert lim["measured_over_limit"] == pytest.approx(r["seconds_per_record"] / lim["seconds_per_record_no_reuse"])
    assert "| 100.0 | 20.0 | 60.0% |" in capsys.readouterr().out


def test_failed_calls_exit_non_zero(bench, capsys, shared_data, monkeypatch):
    with FakeEndpoint(respond=lambda req: (400, {"error": {"message": "bad request"}})) as ep:
        monkeypatch.setenv("KGOPT_API_BASE", ep.url)
        assert bench.main(["NER:zh:WeiboNER:2", "--data-dir", str(shared_data)]) == 1
    (r,) = _rows()
    assert r["failed_calls"] == r["calls_asked"] > 0 and r["calls"] == 0


def test_server_timings_from_the_answers(bench, capsys, shared_data, monkeypatch):
    """llama-server sends its own timings with each answer: they are used, with no log."""
    from kgopt.testing.fake_endpoint import chat_completion

    timings = {"cache_n": 60, "prompt_n": 40, "prompt_ms": 400.0, "predicted_n": 20, "predicted_ms": 1000.0}
    with FakeEndpoint(respond=lambda req: (200, {**chat_completion(oneke_answer(req)), "timings": timings})) as ep:
        monkeypatch.setenv("KGOPT_API_BASE", ep.url)
        assert bench.main(["NER:zh:WeiboNER:3", "--data-dir", str(shared_data)]) == 0
        sent = len(ep.requests)
    (r,) = _rows()
    s = r["server"]
    assert r["server_source"] == "the server's timings in its answers"
    assert s["requests"] == sent == r["calls"] and s["cached_tokens"] == 60 * sent and s["prompt_tokens"] == 100 * sent
    assert s["prompt_rate"] == pytest.approx(100.0) and s["gen_rate"] == pytest.approx(20.0) and s["cache_share"] == pytest.approx(0.6)
    assert "| 100.0 | 20.0 | 60.0% |" in capsys.readouterr().out


def test_report_compares_rows_of_separate_runs(bench, capsys, shared_data, monkeypatch, tmp_path):
    """--report: rows written by two runs apart (here two fake endpoints, the second answering one
    record differently), the second against the first; a row without per-record counts (written by an
    older bench_inference) is scored from its predictions, to the same counts."""
    from kgopt.core.stats import RecordCount, paired_bootstrap

    program = str(ROOT / "compiled" / "NER_zh.json")
    argv = ["NER:zh:WeiboNER:4", "--program", program, "--data-dir", str(shared_data)]
    with FakeEndpoint() as ep:
        monkeypatch.setenv("KGOPT_API_BASE", ep.url)
        assert bench.main([*argv, "--out-dir", str(tmp_path / "one")]) == 0
    with FakeEndpoint() as ep:
        monkeypatch.setenv("KGOPT_API_BASE", ep.url)
        first_text = _first_text(shared_data)
        ep.answer = lambda body: '{"人名": ["不在金标里"]}' if first_text in str(body["messages"][-1]["content"]) else oneke_answer(body)
        assert bench.main([*argv, "--out-dir", str(tmp_path / "two")]) == 0
    one, two = (tmp_path / d / "results.jsonl" for d in ("one", "two"))
    old = ujson.loads(one.read_text(encoding="utf-8"))
    counts = old.pop("record_counts")
    one.write_text(ujson.dumps(old, ensure_ascii=False) + "\n", encoding="utf-8")  # as an older run wrote it
    assert bench.row_counts(old) == [RecordCount(*c) for c in counts]
    capsys.readouterr()
    assert bench.main(["--report", str(one), "--report", str(two)]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("| NER:zh:test:WeiboNER:4 ")]
    assert len(lines) == 2
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0][5] == "1.00x" and cells[0][8] == "0 of 4" and cells[0][9] == ""
    assert cells[1][8] == "1 of 4"
    new = ujson.loads(two.read_text(encoding="utf-8"))
    expected = paired_bootstrap([RecordCount(*c) for c in counts], [RecordCount(*c) for c in new["record_counts"]])
    assert cells[1][9].startswith(expected.line())
    assert cells[1][2].startswith("http")  # not the embedded server: its endpoint
    # A later run to the same folder rewrites the predictions: those answers are no longer the row's.
    preds = Path(new["predictions"])
    preds.write_text(preds.read_text(encoding="utf-8").replace("不在金标里", "另一个"), encoding="utf-8")
    assert bench.main(["--report", str(one), "--report", str(two)]) == 0
    last = [l for l in capsys.readouterr().out.splitlines() if l.startswith("| NER:zh:test:WeiboNER:4 ")][-1]
    assert [c.strip() for c in last.strip("|").split("|")][8] == "n/a"


def _first_text(shared_data) -> str:
    from kgopt.data.readers import load_examples

    return load_examples("NER", "zh", "test", data_dir=shared_data, source="WeiboNER", limit=1)[0].record.text


def test_report_refuses_a_missing_file_or_a_line_that_is_no_row_naming_it(bench, capsys, tmp_path):
    assert bench.main(["--report", str(tmp_path / "nowhere.jsonl")]) == 2
    assert "nowhere.jsonl: file not found" in capsys.readouterr().err
    bad = tmp_path / "results.jsonl"
    bad.write_text('{"case": "NER:zh:test:WeiboNER:4"}\n', encoding="utf-8")
    assert bench.main(["--report", str(bad)]) == 2
    assert f"{bad}:1: not a row of bench_inference.py's results.jsonl" in capsys.readouterr().err
    bad.write_text("{not json\n", encoding="utf-8")
    assert bench.main(["--report", str(bad)]) == 2
    assert f"{bad}:1:" in capsys.readouterr().err
