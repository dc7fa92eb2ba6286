"""No command reports success when its calls failed; errors that are not the endpoint's are raised."""

import json

import pytest
from typer.testing import CliRunner

from kgopt.cli.main import app
from kgopt.clients.config import EndpointConfig
from kgopt.clients.lm import connect
from kgopt.errors import CallsFailed
from kgopt.evaluation import evaluate
from kgopt.localhost import free_port
from kgopt.program import IEProgram
from kgopt.testing.fake_endpoint import FakeEndpoint


@pytest.fixture()
def dead(monkeypatch):
    monkeypatch.setenv("KGOPT_API_BASE", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("KGOPT_MODEL", "fake")
    monkeypatch.setenv("KGOPT_MAX_RETRIES", "0")


def test_evaluate_exits_1_when_calls_failed(dead, shared_data, tmp_path):
    args = ["evaluate", "--task", "NER", "--lang", "en", "--source", "CrossNER_AI", "--limit", "2", "--data-dir", str(shared_data),
            "--out", str(tmp_path / "e"), "--no-cache"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "of" in res.output and "LLM calls failed (more than --max-failures 0)" in res.output and "Traceback" not in res.output
    scores = json.loads((tmp_path / "e" / "scores.json").read_text(encoding="utf-8"))  # still written, for the record
    assert scores["llm"]["failed_calls"] == scores["llm"]["calls_asked"] > 0
    assert CliRunner().invoke(app, [*args, "--max-failures", "100"]).exit_code == 0


def test_augment_exits_1_when_calls_failed(dead, shared_data, tmp_path):
    res = CliRunner().invoke(app, ["augment", "--task", "NER", "--lang", "en", "--source", "CrossNER_AI", "--max-labels", "1",
                                   "--train-limit", "3", "--data-dir", str(shared_data), "--out", str(tmp_path / "aug")])
    assert res.exit_code == 1, res.output
    assert "augment NER/en (the samples accepted were written): 1 of 1 LLM calls failed (more than --max-failures 0)" in res.output


def test_regress_exits_1_when_calls_failed(dead, shared_data, tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    program = Path(__file__).resolve().parents[1] / "compiled" / "NER_en.json"
    res = CliRunner().invoke(app, ["regress", str(program), "--data-dir", str(shared_data), "--no-cache"])
    assert res.exit_code == 1 and "error: regress (the verdicts above are not a measurement): 44 of 44 LLM calls failed" in res.output


def test_a_bug_is_raised_not_counted_as_a_failed_call(shared_data, tmp_path):
    """A TypeError inside a call (e.g. from a bad setting) used to be reported as an LLM failure."""
    with FakeEndpoint() as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        program = IEProgram("NER", "en")
        program.call_config = lambda chunk: 1 / 0  # a bug in the program, not the endpoint
        with pytest.raises(ZeroDivisionError):
            evaluate("NER", "en", conn, source="CrossNER_AI", limit=2, data_dir=shared_data, program=program, out_dir=tmp_path)
        assert server.requests == []


def test_evaluation_check_failures(shared_data, tmp_path):
    with FakeEndpoint(respond=lambda req: (500, {"error": {"message": "boom"}})) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake", max_retries=0), cache=False)
        ev = evaluate("NER", "en", conn, source="CrossNER_AI", limit=1, data_dir=shared_data, out_dir=tmp_path)
    assert ev.failed_calls == ev.calls > 0
    ev.check_failures(ev.calls)
    ev.check_failures(None)
    with pytest.raises(CallsFailed, match=f"{ev.calls} of {ev.calls} LLM calls failed"):
        ev.check_failures(0)


def test_a_rerun_keeps_the_old_partial_file_until_it_has_its_own(shared_data, tmp_path):
    partial = tmp_path / "predictions.partial.jsonl"
    partial.write_text('{"from": "the previous run"}\n', encoding="utf-8")
    with FakeEndpoint() as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        program = IEProgram("NER", "en")
        program.forward = lambda **kw: (_ for _ in ()).throw(KeyboardInterrupt())  # interrupted before any record
        with pytest.raises(KeyboardInterrupt):
            evaluate("NER", "en", conn, source="CrossNER_AI", limit=2, data_dir=shared_data, program=program, out_dir=tmp_path)
        assert partial.read_text(encoding="utf-8") == '{"from": "the previous run"}\n'
        evaluate("NER", "en", conn, source="CrossNER_AI", limit=2, data_dir=shared_data, out_dir=tmp_path)
    assert not partial.exists() and not (tmp_path / "predictions.partial.jsonl.new").exists()
    assert (tmp_path / "predictions.jsonl").is_file()


def test_scores_json_is_written_atomically(shared_data, tmp_path, monkeypatch):
    """A crash while writing scores.json leaves the previous one whole."""
    import kgopt.evaluation as ev_mod

    (tmp_path / "scores.json").write_text('{"old": true}\n', encoding="utf-8")
    monkeypatch.setattr(ev_mod, "dumps", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with FakeEndpoint() as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        with pytest.raises(OSError, match="disk full"):
            evaluate("NER", "en", conn, source="CrossNER_AI", limit=1, data_dir=shared_data, out_dir=tmp_path)
    assert (tmp_path / "scores.json").read_text(encoding="utf-8") == '{"old": true}\n'
