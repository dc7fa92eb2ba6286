"""A compiled program never lies: one study per fingerprint, failures that fail, no silent overwrite."""

import json

import optuna
import pytest
from typer.testing import CliRunner

from kgopt.cli.main import app
from kgopt.compiler import compile_program
from kgopt.errors import CallsFailed, ConfigError
from kgopt.localhost import free_port
from kgopt.program import load_program
from kgopt.testing.fake_endpoint import FakeEndpoint, fake_connection
from tests.oracle import Oracle

TASK, LANG = "NER", "en"
ARGS = dict(train_limit=6, dev_limit=2, instruction_proposals=0, augmented=False, max_demos=1)


@pytest.fixture()
def oracle(shared_data):
    with Oracle(TASK, LANG, shared_data) as o:  # every NER/en source
        yield o


def _conn(url, retries=4):
    return fake_connection(url, retries=retries)


def _compile(url, shared_data, tmp_path, source, trials=1, retries=4, **kw):
    return compile_program(TASK, LANG, _conn(url, retries), source=source, trials=trials, data_dir=shared_data,
                           compiled_dir=tmp_path / "compiled", **{**ARGS, **kw})


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # probed free: nothing listens there


def _study(tmp_path, name=f"{TASK}_{LANG}"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'compiled' / 'studies.sqlite3'}")


def test_another_source_is_refused_then_new_study_runs_on_it(oracle, shared_data, tmp_path, monkeypatch):
    """Reproduction 1a: the second compile on another source used to send 0 requests and write
    the first source's demonstrations under the second's name."""
    monkeypatch.chdir(tmp_path)
    _compile(oracle.server.url, shared_data, tmp_path, "CrossNER_AI", out=tmp_path / "a.json")
    sent = len(oracle.server.requests)
    with pytest.raises(ConfigError, match=r"changed: .*source .*CrossNER_AI.*CrossNER_music.*--new-study") as err:
        _compile(oracle.server.url, shared_data, tmp_path, "CrossNER_music", out=tmp_path / "b.json")
    assert "dev data files" in str(err.value) and len(oracle.server.requests) == sent and not (tmp_path / "b.json").exists()
    res = _compile(oracle.server.url, shared_data, tmp_path, "CrossNER_music", out=tmp_path / "b.json", new_study=True)
    assert len(oracle.server.requests) > sent and res.study_name.startswith("NER_en-") and len(res.study_name) == len("NER_en-") + 8
    program, m = load_program(tmp_path / "b.json")
    assert m["sources"] == ["CrossNER_music"] and set(m["dev"]["by_source"]) == {"CrossNER_music"}
    assert set(m["baseline_dev"]["by_source"]) == {"CrossNER_music"}
    assert program.extract.demos and {d["source"] for d in program.extract.demos} == {"CrossNER_music"}
    # The same command again resumes that study: nothing differs, nothing is refused.
    again = _compile(oracle.server.url, shared_data, tmp_path, "CrossNER_music", out=tmp_path / "b.json", new_study=True)
    assert again.study_name == res.study_name


def test_another_endpoint_is_refused(oracle, shared_data, tmp_path, monkeypatch):
    """Reproduction 1b: trials scored on one model never choose the program for another."""
    monkeypatch.chdir(tmp_path)
    _compile(oracle.server.url, shared_data, tmp_path, "CrossNER_AI")
    o2 = Oracle(TASK, LANG, shared_data)
    with FakeEndpoint(respond=o2) as other:
        with pytest.raises(ConfigError, match=r"changed: endpoint \(.*->.*\)"):
            _compile(other.url, shared_data, tmp_path, "CrossNER_AI")
        assert other.requests == []


def test_other_limits_are_refused(oracle, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _compile(oracle.server.url, shared_data, tmp_path, "CrossNER_AI")
    with pytest.raises(ConfigError, match=r"dev_limit \(2 -> 3\)"):
        _compile(oracle.server.url, shared_data, tmp_path, "CrossNER_AI", dev_limit=3)


def test_a_study_without_fingerprint_is_refused(oracle, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compiled").mkdir()
    old = optuna.create_study(study_name="NER_en", storage=f"sqlite:///{tmp_path / 'compiled' / 'studies.sqlite3'}")
    old.set_user_attr("instructions", ["x"])
    with pytest.raises(ConfigError, match="records no fingerprint"):
        _compile(oracle.server.url, shared_data, tmp_path, "CrossNER_AI")


def test_dead_endpoint_exits_nonzero_keeps_the_program_and_spoils_nothing(shared_data, tmp_path, monkeypatch):
    """Reproduction 2: a dead endpoint used to replace a good program with an F1 0.00 warm start
    (exit 0), and the study then held 'finished' trials that the next, live, run reused."""
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "compiled" / "NER_en.json"
    good.parent.mkdir()
    good.write_text('{"a program": "that must not change"}\n', encoding="utf-8")
    before = good.read_bytes()
    port = free_port()  # nothing listens there until the endpoint "comes back" on it
    monkeypatch.setenv("KGOPT_API_BASE", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("KGOPT_MODEL", "fake")
    monkeypatch.setenv("KGOPT_MAX_RETRIES", "0")
    cmd = ["compile", "--task", TASK, "--lang", LANG, "--source", "CrossNER_AI", "--trials", "1", "--data-dir", str(shared_data),
           "--train-limit", "6", "--dev-limit", "2", "--max-demos", "1", "--instruction-proposals", "0", "--no-augmented"]
    res = CliRunner().invoke(app, cmd)
    assert res.exit_code == 1, res.output
    assert "zero-shot dev: 2 of 2 LLM calls failed" in res.output and "Traceback" not in res.output
    assert good.read_bytes() == before
    study = _study(tmp_path)
    assert "baseline_dev" not in study.user_attrs and not [t for t in study.trials if t.state.name == "COMPLETE"]
    # The endpoint is back on the same address: the same command runs the baseline and trials.
    o = Oracle(TASK, LANG, shared_data, "CrossNER_AI")
    with FakeEndpoint(respond=o, port=port) as server:
        res = CliRunner().invoke(app, cmd)
    assert res.exit_code == 0, res.output
    assert server.requests and json.loads(good.read_text())["manifest"]["dev"]["f1"] == 100.0
    assert [t.state.name for t in _study(tmp_path).trials if t.state.name != "WAITING"] == ["COMPLETE"]


def test_a_trial_whose_calls_fail_is_FAIL_not_counted_and_queued_again(shared_data, tmp_path, monkeypatch):
    """The endpoint dies after the baseline: the trial is FAIL with its reason (never F1 0), the
    run stops with CallsFailed and writes nothing, and its configuration runs in the next run."""
    monkeypatch.chdir(tmp_path)
    o = Oracle(TASK, LANG, shared_data, "CrossNER_AI")
    state = {"down": False}

    def respond(req):
        has_demos = any(m["role"] == "assistant" for m in req["messages"])
        if has_demos and state["down"]:
            return 503, {"error": {"message": "down"}}
        return o(req)

    with FakeEndpoint(respond=respond) as server:
        state["down"] = True
        with pytest.raises(CallsFailed, match="trial 0 dev: .* LLM calls failed"):
            _compile(server.url, shared_data, tmp_path, "CrossNER_AI", retries=0)
        assert not (tmp_path / "compiled" / "NER_en.json").exists()
        trials = _study(tmp_path).trials
        failed = [t for t in trials if t.state.name == "FAIL"]
        assert len(failed) == 1 and "LLM calls failed" in failed[0].user_attrs["failed"] and failed[0].value is None
        assert any(t.state.name == "WAITING" and t.user_attrs.get("rerun_of") == failed[0].number for t in trials)
        assert "baseline_dev" in _study(tmp_path).user_attrs  # its calls did not fail: kept
        state["down"] = False  # the other warm start was queued first, then the failed configuration
        res = _compile(server.url, shared_data, tmp_path, "CrossNER_AI", trials=2, retries=0)
    rerun = next(t for t in _study(tmp_path).trials if t.user_attrs.get("rerun_of") == failed[0].number)
    assert rerun.state.name == "COMPLETE" and rerun.params == failed[0].params
    assert res.manifest["dev"]["f1"] == 100.0 and res.trials_run == 2


def test_a_better_program_on_the_same_fingerprint_is_kept_unless_forced(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    o = Oracle(TASK, LANG, shared_data, "CrossNER_AI")
    with FakeEndpoint(respond=o) as server:
        first = _compile(server.url, shared_data, tmp_path, "CrossNER_AI", study_name="one")
        assert first.written and first.manifest["dev"]["f1"] == 100.0
        saved = first.path.read_bytes()
        o.broken = True  # another study on the same data and model that does worse
        second = _compile(server.url, shared_data, tmp_path, "CrossNER_AI", study_name="two")
        assert not second.written and "dev F1 100.00" in second.kept_reason and first.path.read_bytes() == saved
        forced = _compile(server.url, shared_data, tmp_path, "CrossNER_AI", study_name="two", force=True)
    assert forced.written and load_program(first.path)[1]["dev"]["f1"] == 0.0


def test_records_used_counts_each_file(oracle, shared_data, tmp_path, monkeypatch):
    """It repeated the total over all files on every entry (NER/en showed 200 per file)."""
    monkeypatch.chdir(tmp_path)
    res = compile_program(TASK, LANG, _conn(oracle.server.url), trials=1, data_dir=shared_data, compiled_dir=tmp_path / "compiled",
                          **{**ARGS, "train_limit": 3, "dev_limit": 1})
    data = res.manifest["data"]
    train = [e for e in data["train"] if e["path"].endswith("train.json")]
    assert len(train) >= 2 and all(e["records_used"] == 3 for e in train)
    assert all("records_used" not in e for e in data["train"] + data["dev"] if e["path"].endswith("schema.json"))
    assert sum(e["records_used"] for e in data["dev"] if "records_used" in e) == res.manifest["dev"]["records"]


def test_cli_new_study_and_force(oracle, shared_data, tmp_path, monkeypatch):
    """The CLI: a refused study is one error line (exit 2); --new-study runs; --force replaces a kept program."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KGOPT_API_BASE", oracle.server.url)
    monkeypatch.setenv("KGOPT_MODEL", "fake")
    base = ["compile", "--task", TASK, "--lang", LANG, "--trials", "1", "--data-dir", str(shared_data), "--train-limit", "6",
            "--max-demos", "1", "--instruction-proposals", "0", "--no-augmented"]
    assert CliRunner().invoke(app, [*base, "--source", "CrossNER_AI", "--dev-limit", "2"]).exit_code == 0
    res = CliRunner().invoke(app, [*base, "--source", "CrossNER_AI", "--dev-limit", "1"])
    assert res.exit_code == 2 and "changed: dev_limit (2 -> 1)" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, [*base, "--source", "CrossNER_AI", "--dev-limit", "1", "--new-study"])
    assert res.exit_code == 0 and "study NER_en-" in res.output
    oracle.broken = True  # a worse program from another study on the same data: kept out, then forced in
    monkeypatch.setenv("KGOPT_HOME", str(tmp_path / "fresh-home"))  # no cached answers of the good model
    worse = [*base, "--source", "CrossNER_AI", "--dev-limit", "1", "--study", "worse"]
    res = CliRunner().invoke(app, worse)
    assert res.exit_code == 0 and "program: not written (kept " in res.output
    res = CliRunner().invoke(app, [*worse, "--force"])
    assert res.exit_code == 0 and "program: compiled/NER_en.json" in res.output
