"""The compiler end to end on a deterministic endpoint: study, resume, budget, manifest, load, regress."""

import hashlib
import json

import optuna
import pytest

import kgopt
from kgopt.compiler import compile_program
from kgopt.compiler.optimizers import get_optimizer
from kgopt.compiler.space import TrialConfig, split_choices, starting_points
from kgopt.core.tasks import get_task
from kgopt.program import load_program
from kgopt.regress import regress
from kgopt.testing.fake_endpoint import FakeEndpoint, fake_connection
from tests.oracle import Oracle

TASK, LANG, SOURCE = "NER", "en", "CrossNER_AI"


@pytest.fixture()
def oracle(shared_data):
    with Oracle(TASK, LANG, shared_data, SOURCE) as o:
        yield o


def _conn(server, max_calls=None):
    return fake_connection(server.url, max_calls=max_calls)


def _compile(oracle, shared_data, tmp_path, trials, **kw):
    return compile_program(
        TASK, LANG, _conn(oracle.server), source=SOURCE, trials=trials, data_dir=shared_data, compiled_dir=tmp_path / "compiled",
        train_limit=12, dev_limit=3, instruction_proposals=1, augmented=False, **kw,
    )


def _study(tmp_path):
    return optuna.load_study(study_name=f"{TASK}_{LANG}", storage=f"sqlite:///{tmp_path / 'compiled' / 'studies.sqlite3'}")


def test_compile_beats_baseline_and_records_manifest(oracle, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = _compile(oracle, shared_data, tmp_path, trials=3)
    m = res.manifest
    assert res.path == tmp_path / "compiled" / "NER_en.json" and res.path.is_file()
    # Zero-shot the oracle only echoes: F1 0. With demonstrations it answers the gold.
    assert m["baseline_dev"]["f1"] == 0.0
    assert m["chosen"] == "trial" and m["dev"]["f1"] == 100.0
    assert m["trial"]["params"]["num_demos"] >= 1
    assert m["dev"]["by_source"] == {SOURCE: 100.0} and m["dev"]["records"] == 3
    # The data hashes are the files' real hashes; the test split is never listed.
    for entry in m["data"]["train"] + m["data"]["dev"]:
        assert hashlib.sha256((shared_data / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    assert not any("test.json" in e["path"] for e in m["data"]["train"] + m["data"]["dev"])
    assert m["versions"]["dspy"] == "3.4.1" and m["endpoint"].endswith("|fake")
    assert m["llm"]["calls"] == len(oracle.server.requests) > 0
    study = _study(tmp_path)
    assert len(study.trials) == 3
    t = study.trials[m["trial"]["number"]]
    assert t.user_attrs["dev_f1_by_source"] == {SOURCE: 100.0}
    assert t.user_attrs["llm_calls"] > 0 and "instruction_text" in t.user_attrs
    # The saved program answers through kgopt.load, with the manifest's schema.
    ie = kgopt.load(res.path, connection=_conn(oracle.server))
    rec = next(r for r in oracle.records.values() if r.labels and r.source == SOURCE)
    got = ie(rec.text)
    assert sorted((e["entity"], e["entity_type"]) for e in got) == sorted((e["entity"], e["entity_type"]) for e in rec.labels)
    # Regression check: passes as saved, fails once the "model" regresses.
    [ok] = regress([res.path], _conn(oracle.server), data_dir=shared_data)
    assert ok.passed and ok.got == 100.0
    oracle.broken = True
    [bad] = regress([res.path], _conn(oracle.server), data_dir=shared_data)
    assert not bad.passed and bad.got == 0.0


def test_rerun_resumes_the_study(oracle, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _compile(oracle, shared_data, tmp_path, trials=2)
    first = len(oracle.server.requests)
    numbers = [t.number for t in _study(tmp_path).trials if t.state.name == "COMPLETE"]
    res = _compile(oracle, shared_data, tmp_path, trials=3)
    done = [t.number for t in _study(tmp_path).trials if t.state.name == "COMPLETE"]
    assert len(numbers) == 2 and done[:2] == numbers and len(done) == 3
    assert res.trials_run == 3
    # The baseline and the instruction proposals were not asked again: every new request was the new trial's.
    assert len(oracle.server.requests) - first == _study(tmp_path).trials[done[2]].user_attrs["llm_calls"] > 0
    # Asking for no more trials than there are only rewrites the program.
    before = len(oracle.server.requests)
    _compile(oracle, shared_data, tmp_path, trials=3)
    assert len(oracle.server.requests) == before


def test_max_calls_is_a_hard_cap(oracle, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = _compile(oracle, shared_data, tmp_path, trials=5, max_calls=12)
    assert len(oracle.server.requests) == 12
    assert res.path.is_file()  # the best so far (here: the baseline or an early trial) is written
    stopped = [t for t in _study(tmp_path).trials if t.user_attrs.get("stopped")]
    assert stopped and "budget" in stopped[0].user_attrs["stopped"]


def test_trial_config_round_trips_through_params():
    cfg = TrialConfig(optimizer="bootstrap", instruction=1, num_demos=2, demo_choice="coverage", output="json", max_items=2, max_len=16, options={"bootstrapped": 2})
    assert TrialConfig.from_params(cfg.params()) == cfg
    plain = TrialConfig(output="plain", max_items=3)
    assert "max_items" not in plain.params()


def test_warm_starts_are_similar_demos_at_the_default_split_plain_then_uncapped_json():
    opts = ("labeled", "bootstrap")
    for task in ("NER", "RE", "EE", "EET", "EEA", "KG"):
        spec = get_task(task)
        plain, constrained, *others = starting_points(spec, opts, max_demos=4)
        for cfg in (plain, constrained):
            assert (cfg.optimizer, cfg.num_demos, cfg.demo_choice, cfg.temperature) == ("labeled", 3, "similar", 0.0)
            assert cfg.split_size == spec.split_size and cfg.split_size in split_choices(spec)
            assert (cfg.max_items, cfg.max_len) == (0, 0)  # no caps: they cut long names on a competent model
        assert (plain.output, constrained.output) == ("plain", "json")
        assert "max_len" not in plain.params() and constrained.params()["max_len"] == 0
        assert [c.answer_format for c in others] == (["typed_triples"] if task == "KG" else [])  # KG tries both formats
    assert [c.num_demos for c in starting_points(get_task("NER"), opts, max_demos=1)] == [1, 1]
    assert starting_points(get_task("NER"), ("mipro",), max_demos=2)[0].optimizer == "mipro"
    # Another optimiser's warm start carries its default settings: one configuration, not a sample.
    for name in ("bootstrap", "mipro", "gepa"):
        (first, *_) = starting_points(get_task("NER"), (name,), max_demos=4)
        assert first.options == get_optimizer(name).defaults(3) and TrialConfig.from_params(first.params()) == first


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(kgopt.ArtifactError, match="no compiled program RE_zh.json"):
        kgopt.load("RE", "zh", compiled_dir=tmp_path)
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(kgopt.ArtifactError, match="not a kgopt program"):
        kgopt.load(bad)


@pytest.mark.parametrize("moment", ["Trial 0 finished", "trial 1 dev"])
def test_cli_compile_interrupted_then_resumed(moment, shared_data, tmp_path):
    """Ctrl-C between trials or inside one exits 130 keeping finished trials and leaving none
    RUNNING (a resumed run would wait out the heartbeat grace); the same command resumes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    o = Oracle(TASK, LANG, shared_data, SOURCE)

    def slow(req):
        time.sleep(0.5)
        return o(req)

    cmd = [sys.executable, "-m", "kgopt", "compile", "--task", TASK, "--lang", LANG, "--source", SOURCE, "--trials", "4",
           "--data-dir", str(shared_data), "--train-limit", "12", "--dev-limit", "3", "--instruction-proposals", "0", "--no-augmented"]
    with FakeEndpoint(respond=slow) as server:
        env = {**os.environ, "KGOPT_API_BASE": server.url, "KGOPT_MODEL": "fake"}
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Interrupt when the first trial has finished (Optuna logs it on stderr), or while
        # the second is scoring dev (its progress bar).
        err_lines = []
        for line in proc.stderr:
            err_lines.append(line)
            if moment in line:
                break
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=60)
        err = "".join(err_lines) + rest
        assert proc.returncode == 130, err[-2000:]
        assert "run the same command to resume" in err
        finished_before = [t.number for t in _study(tmp_path).trials if t.state.name == "COMPLETE"]
        assert 1 <= len(finished_before) < 4
        before = _study(tmp_path).trials
        assert "RUNNING" not in [t.state.name for t in before], [(t.number, t.state.name) for t in before]
        stopped = [t for t in before if t.user_attrs.get("stopped") == "interrupted"]
        if moment == "trial 1 dev":  # the interrupted trial failed; its configuration waits for the resume
            assert [t.state.name for t in stopped] == ["FAIL"]
            assert any(t.state.name == "WAITING" and t.user_attrs.get("rerun_of") == stopped[0].number for t in before)
        assert not (tmp_path / "compiled" / "NER_en.json").exists()
        res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
    trials = _study(tmp_path).trials
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 4
    assert all(t.number in [x.number for x in trials] for t in trials if t.number in finished_before)
    if moment == "trial 1 dev":
        rerun = next(t for t in trials if t.user_attrs.get("rerun_of") == stopped[0].number)
        assert rerun.state.name in ("COMPLETE", "PRUNED") and rerun.params == stopped[0].params
    program, manifest = load_program(tmp_path / "compiled" / "NER_en.json", TASK, LANG)
    assert manifest["dev"]["f1"] == 100.0 and "dev F1 100.00" in res.stdout


@pytest.mark.parametrize("name", ["mipro", "gepa"])
def test_mipro_and_gepa_compile(name, oracle, shared_data, tmp_path, monkeypatch):
    """DSPy's MIPROv2 and GEPA run inside trials (the oracle also answers DSPy's own prompts)."""
    monkeypatch.chdir(tmp_path)
    res = _compile(oracle, shared_data, tmp_path, trials=1, optimizer=name)
    trials = [t for t in _study(tmp_path).trials if t.state.name != "WAITING"]  # the 2nd warm start waits
    assert [t.state.name for t in trials] == ["COMPLETE"] and trials[0].params["optimizer"] == name
    searched = {"mipro": {"mipro_candidates", "mipro_trials"}, "gepa": {"gepa_metric_calls"}}[name]
    assert {p for p in trials[0].params if p.startswith(name + "_")} == searched
    assert res.manifest["chosen"] == "trial" and res.manifest["dev"]["f1"] == 100.0
    program, _ = load_program(res.path)
    assert program.extract.demos
    if name == "mipro":  # MIPRO's proposer wrote the instruction the program now carries
        assert program.instruction.startswith("Extract every span of the input")


def test_a_tie_with_zero_shot_writes_the_first_warm_start(oracle, shared_data, tmp_path, monkeypatch):
    """No trial beats zero-shot on dev (every answer is wrong, all score 0): the tied few-shot warm
    start is written, not the zero-shot program (few-shot won on held-out data where measured)."""
    monkeypatch.chdir(tmp_path)
    oracle.broken = True
    res = _compile(oracle, shared_data, tmp_path, trials=3)
    m = res.manifest
    assert m["chosen"] == "warm start" and m["dev"]["f1"] == m["baseline_dev"]["f1"] == 0.0
    assert TrialConfig.from_params(m["trial"]["params"]) == starting_points(get_task(TASK), ("labeled", "bootstrap"), 4)[0]
    program, _ = load_program(res.path)
    assert (program.settings.num_demos, program.settings.demo_selection) == (3, "similar") and len(program.extract.demos) >= 3


def test_a_failing_optimizer_is_recorded_on_its_trial(shared_data, tmp_path, monkeypatch):
    """A model that cannot follow MIPRO's prompts: the trial fails with its reason; the baseline is written."""
    monkeypatch.chdir(tmp_path)
    o = Oracle(TASK, LANG, shared_data, SOURCE)
    o.structured = lambda msgs: "I cannot help with that."
    with FakeEndpoint(respond=o) as server:
        o.server = server
        res = _compile(o, shared_data, tmp_path, trials=1, optimizer="mipro")
    t = _study(tmp_path).trials[0]
    assert t.state.name == "FAIL" and "AdapterParseError" in t.user_attrs["error"]
    assert res.manifest["chosen"] == "baseline" and res.path.is_file()


def test_evaluate_a_compiled_program_on_data_outside_the_repo(oracle, shared_data, tmp_path, monkeypatch):
    """`kgopt evaluate --program` on the test split of a data folder elsewhere, in the same layout."""
    import shutil

    from typer.testing import CliRunner

    from kgopt.cli.main import app

    monkeypatch.chdir(tmp_path)
    res = _compile(oracle, shared_data, tmp_path, trials=1)
    ext = tmp_path / "elsewhere" / "iepile" / "IE-en" / "NER" / SOURCE
    ext.mkdir(parents=True)
    src = shared_data / "iepile" / "IE-en" / "NER" / SOURCE
    shutil.copy(src / "schema.json", ext / "schema.json")
    (ext / "test.json").write_text("".join((src / "test.json").read_text(encoding="utf-8").splitlines(True)[:4]), encoding="utf-8")
    monkeypatch.setenv("KGOPT_API_BASE", oracle.server.url)
    monkeypatch.setenv("KGOPT_MODEL", "fake")
    out = CliRunner().invoke(app, ["evaluate", "--task", "NER", "--lang", "en", "--program", str(res.path), "--data-dir", str(tmp_path / "elsewhere"),
                                   "--split", "test", "--json", "--no-cache", "--out", str(tmp_path / "ev")])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["instances"] == 4 and data["total"]["F1"] == 100.0


def test_cli_regress_exit_codes(oracle, shared_data, tmp_path, monkeypatch):
    """`kgopt regress`: 0 when a program holds its F1, 1 when it fell, 2 for a missing file."""
    from typer.testing import CliRunner

    from kgopt.cli.main import app

    monkeypatch.chdir(tmp_path)
    res = _compile(oracle, shared_data, tmp_path, trials=1)
    monkeypatch.setenv("KGOPT_API_BASE", oracle.server.url)
    monkeypatch.setenv("KGOPT_MODEL", "fake")
    args = ["regress", str(res.path), "--data-dir", str(shared_data), "--no-cache"]
    ok = CliRunner().invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert "1 passed, 0 failed" in ok.stdout
    oracle.broken = True
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code == 1 and "FAIL" in bad.stdout
    missing = CliRunner().invoke(app, ["regress", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "no such program file" in missing.output


def test_a_study_keeps_the_split_sizes_it_was_created_with():
    import optuna

    from kgopt.compiler.space import split_choices
    from kgopt.compiler.study import _study_splits
    from kgopt.core.tasks import get_task

    spec = get_task("EE")
    old = optuna.create_study()
    old.optimize(lambda t: t.suggest_categorical("split_size", [2, 4, 8, 16]), n_trials=1)
    assert _study_splits(old, spec) == (2, 4, 8, 16)  # Optuna would refuse other choices in this study
    assert old.user_attrs["split_choices"] == [2, 4, 8, 16]
    new = optuna.create_study()
    assert _study_splits(new, spec) == split_choices(spec) == (1, 2, 4, 8, 16)


def test_the_first_warm_start_is_the_obvious_few_shot_program(oracle, shared_data, tmp_path, monkeypatch):
    """Labeled and bootstrap trials keep every training chunk (only mipro/gepa hold a quarter out
    to select on): the first warm start is LabeledFewShot on all of train, the few-shot baseline."""
    from kgopt.compiler.optimizers import run_optimizer
    from kgopt.compiler.trainset import chunk_examples
    from kgopt.data.readers import load_examples
    from kgopt.program import IEProgram

    monkeypatch.chdir(tmp_path)
    res = _compile(oracle, shared_data, tmp_path, trials=1, seed=5)
    assert res.manifest["trial"]["number"] == 0
    written, _ = load_program(res.path)
    spec = get_task(TASK)
    train = load_examples(TASK, LANG, "train", data_dir=shared_data, source=SOURCE, limit=12)
    chunks = chunk_examples(spec, train, spec.split_size)
    few_shot = run_optimizer("labeled", IEProgram(TASK, LANG), chunks, [], None, 3, "similar", seed=5)
    shown = lambda p: [json.dumps(dict(d.items()), sort_keys=True, ensure_ascii=False, default=str) for d in p.extract.demos]  # noqa: E731
    assert len(chunks) > 4 and shown(written) == shown(few_shot)
    assert len(written.extract.demos) == min(len(chunks), 24)  # none held out
