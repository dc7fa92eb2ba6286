"""Study storage: one study shared by several `kgopt compile` workers on a real PostgreSQL.

The server comes from `scripts/postgres.sh` (CI starts it and exports KGOPT_TEST_POSTGRES_URL);
locally, a session without one starts its own if Debian's PostgreSQL is installed, and skips
otherwise (under CI a missing server is a failure). The workers are real processes talking to
the deterministic oracle endpoint of the tests.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import optuna
import pytest

from kgopt.compiler.space import TrialConfig, starting_points
from kgopt.compiler.storage import open_storage, redact_url, scrub
from kgopt.core.tasks import get_task
from kgopt.errors import ConfigError
from kgopt.localhost import free_port
from kgopt.program import load_program
from kgopt.testing.fake_endpoint import FakeEndpoint
from tests.oracle import Oracle

ROOT = Path(__file__).resolve().parents[2]
TASK, LANG, SOURCE = "NER", "en", "CrossNER_AI"


def test_redaction_and_scrubbing():
    url = "postgresql://kgopt:s3cret@db.example:5432/kgopt"
    assert redact_url(url) == "postgresql://kgopt:***@db.example:5432/kgopt"
    assert scrub(f"could not connect to {url}: password s3cret rejected", url) == (
        "could not connect to postgresql://kgopt:***@db.example:5432/kgopt: password *** rejected")
    assert redact_url("sqlite:///compiled/studies.sqlite3") == "sqlite:///compiled/studies.sqlite3"


@pytest.fixture(scope="session")
def postgres_url():
    url = os.environ.get("KGOPT_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    try:
        out = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "start"], capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as exc:
        out = None
        reason = str(exc)
    if out is None or out.returncode != 0:
        reason = out.stderr.strip() if out is not None else reason
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL for the shared-study tests: {reason}")
        pytest.skip(f"no PostgreSQL server (scripts/postgres.sh start: {reason})")
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.stdout.split("\n") if line.startswith("export "))
    yield env["KGOPT_TEST_POSTGRES_URL"]
    subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "stop", env["KGOPT_TEST_POSTGRES_DIR"]], timeout=120)


@pytest.fixture()
def slow_oracle(shared_data):
    """The gold-answering oracle, 50 ms per call, so that two workers really overlap."""
    o = Oracle(TASK, LANG, shared_data, SOURCE)

    def answer(req):
        time.sleep(0.05)
        return o(req)

    with FakeEndpoint(respond=answer) as server:
        o.server = server
        yield o


def _compile_cmd(url, study, trials, shared_data):
    return [sys.executable, "-m", "kgopt", "compile", "--task", TASK, "--lang", LANG, "--source", SOURCE, "--trials", str(trials),
            "--storage", url, "--study", study, "--data-dir", str(shared_data), "--train-limit", "12", "--dev-limit", "3",
            "--instruction-proposals", "0", "--no-augmented"]


def _env(server, tmp_path, **extra):
    env = {**os.environ, "KGOPT_API_BASE": server.url, "KGOPT_MODEL": "fake", "KGOPT_HOME": str(tmp_path / "home"), **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _finished(study):
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


def _ran(study):
    """Trials that really ran a configuration (not pruned as a duplicate of an earlier one)."""
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED") and "duplicate_of" not in t.user_attrs]


def test_two_workers_share_one_study(postgres_url, slow_oracle, shared_data, tmp_path):
    study_name, trials = f"two-workers-{uuid.uuid4().hex[:8]}", 8
    cmd = _compile_cmd(postgres_url, study_name, trials, shared_data)
    env = _env(slow_oracle.server, tmp_path)
    workers = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [w.communicate(timeout=600) for w in workers]
    for w, (_out, err) in zip(workers, outs):
        assert w.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name=study_name, storage=postgres_url)
    assert len(_finished(study)) == trials  # together, exactly --trials
    by_worker = Counter(t.user_attrs.get("worker") for t in _finished(study) if "worker" in t.user_attrs)
    assert len(by_worker) == 2, by_worker  # both really worked on it
    configs = [json.dumps(t.params, sort_keys=True) for t in _ran(study)]
    assert len(configs) == len(set(configs))  # no configuration ran twice
    for start in starting_points(get_task(TASK), ("labeled", "bootstrap"), 4):  # each warm start taken by one worker
        assert sum(TrialConfig.from_params(t.params) == start for t in _ran(study)) == 1
    # Both wrote the same best program (the best complete trial), to the same file.
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: (t.value, -t.number))
    program, manifest = load_program(tmp_path / "compiled" / "NER_en.json")
    assert manifest["trial"]["number"] == best.number and manifest["study"]["trials_finished"] == trials
    assert len({out.split("dev F1")[1].split("\n")[0] for out, _ in outs}) == 1


def test_a_killed_worker_loses_only_its_trial(postgres_url, shared_data, tmp_path):
    """kill -9 mid-trial: the heartbeat fails its trial, which runs again once; the re-run completes the study."""
    study_name, trials = f"killed-{uuid.uuid4().hex[:8]}", 4
    o = Oracle(TASK, LANG, shared_data, SOURCE)
    state = {"slow": True}

    def answer(req):
        if state["slow"]:
            time.sleep(0.5)
        return o(req)

    cmd = _compile_cmd(postgres_url, study_name, trials, shared_data)
    with FakeEndpoint(respond=answer) as server:
        env = _env(server, tmp_path, KGOPT_STUDY_HEARTBEAT="1")
        victim = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        storage = open_storage(postgres_url)
        deadline = time.time() + 120
        running = []
        while time.time() < deadline and not running:  # wait until it is inside a trial, then kill it
            time.sleep(0.2)
            try:
                study = optuna.load_study(study_name=study_name, storage=storage)
            except KeyError:
                continue
            running = [t for t in study.trials if t.state.name == "RUNNING" and t.params]
        assert running, "the worker never started a trial"
        time.sleep(1.0)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        killed = running[0]
        state["slow"] = False
        time.sleep(4)  # past the grace period (3 missed heartbeats of 1 s)
        res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    study = optuna.load_study(study_name=study_name, storage=postgres_url)
    trial = study.trials[killed.number]
    assert trial.state.name == "FAIL"  # failed by the heartbeat...
    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    retries = [t for t in study.trials if retried(t) == killed.number]
    assert len(retries) == 1 and retries[0].params == trial.params and retries[0].state.name in ("COMPLETE", "PRUNED")  # ...and run once more
    assert len(_finished(study)) == trials
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: (t.value, -t.number))
    _, manifest = load_program(tmp_path / "compiled" / "NER_en.json")
    assert manifest["trial"]["number"] == best.number


def test_the_password_is_never_shown(postgres_url, slow_oracle, shared_data, tmp_path):
    password = urlsplit(postgres_url).password
    assert password
    study_name = f"secret-{uuid.uuid4().hex[:8]}"
    env = _env(slow_oracle.server, tmp_path)
    res = subprocess.run(_compile_cmd(postgres_url, study_name, 1, shared_data) + ["--verbose"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert password not in res.stdout + res.stderr and "kgopt:***@" in res.stdout + res.stderr
    assert password not in (tmp_path / "compiled" / "NER_en.json").read_text(encoding="utf-8")
    # A wrong password: the error names the storage, without the password that was tried.
    wrong = postgres_url.replace(password, "not-the-" + password)
    with pytest.raises(ConfigError) as err:
        open_storage(wrong)
    assert password not in str(err.value) and "kgopt:***@" in str(err.value)
    bad = subprocess.run(_compile_cmd(wrong, study_name, 1, shared_data), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and password not in bad.stdout + bad.stderr and "cannot open study storage" in bad.stderr
    # The dashboard serves the shared study, and says where without the password.
    port = free_port()
    dash = subprocess.Popen([sys.executable, "-m", "kgopt", "dashboard", "--storage", postgres_url, "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        studies = _get_json(f"http://127.0.0.1:{port}/api/studies", timeout=60)
        assert study_name in [s["study_name"] for s in studies["study_summaries"]]
    finally:
        dash.send_signal(signal.SIGINT)
        try:
            out, _ = dash.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            dash.kill()
            out, _ = dash.communicate()
    assert password not in out and "kgopt:***@" in out


def _get_json(url: str, timeout: float):
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
