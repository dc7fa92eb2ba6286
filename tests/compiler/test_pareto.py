"""``--objective pareto``: a two-objective study (dev F1 up, prompt tokens per dev record down),
its front in the manifest, ``--max-tokens-per-record`` choosing within a cap, and the objective
in the fingerprint (a single-objective study does not resume as pareto, nor the reverse).

The endpoint counts a prompt's tokens as its characters / 4 (so more demonstrations cost more),
and the oracle answers the gold with two or more demonstrations, half the records' with one
(F1 between 0 and 100), and echoes zero-shot (F1 0).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import optuna
import pytest
from typer.testing import CliRunner

from kgopt.cli.main import app
from kgopt.clients.config import EndpointConfig
from kgopt.clients.lm import connect
from kgopt.compiler import compile_program
from kgopt.compiler.space import starting_points
from kgopt.core.tasks import get_task
from kgopt.errors import ConfigError
from kgopt.program import load_program
from kgopt.testing.fake_endpoint import chat_completion
from tests.oracle import Oracle

TASK, LANG, SOURCE = "NER", "en", "CrossNER_AI"
WARM = starting_points(get_task(TASK), ("labeled", "bootstrap"), 4)


class TokenOracle(Oracle):
    def answer(self, req: dict) -> str:
        demos = sum(m["role"] == "assistant" for m in req["messages"])
        if demos == 1:
            text = json.loads(req["messages"][-1]["content"]).get("input", "")
            if hashlib.sha256(text.encode()).digest()[0] % 2:
                return req["messages"][-1]["content"]  # an echo: not an answer
        return super().answer(req)

    def __call__(self, req: dict):
        tokens = len(json.dumps(req["messages"], ensure_ascii=False)) // 4
        return 200, chat_completion(self.answer(req), prompt_tokens=tokens, completion_tokens=5)


@pytest.fixture()
def oracle(shared_data):
    with TokenOracle(TASK, LANG, shared_data, SOURCE) as o:
        yield o


def _conn(server):
    return connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)


def _compile(oracle, shared_data, tmp_path, trials, **kw):
    return compile_program(TASK, LANG, _conn(oracle.server), source=SOURCE, trials=trials, data_dir=shared_data,
                           compiled_dir=tmp_path / "compiled", train_limit=12, dev_limit=4, instruction_proposals=0,
                           augmented=False, **kw)


def _study(tmp_path):
    return optuna.load_study(study_name=f"{TASK}_{LANG}", storage=f"sqlite:///{tmp_path / 'compiled' / 'studies.sqlite3'}")


def test_pareto_study_records_its_front_and_caps_tokens(oracle, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _compile(oracle, shared_data, tmp_path, trials=2, objective="pareto")  # the warm starts (3 demonstrations)
    study = _study(tmp_path)
    study.enqueue_trial(dataclasses.replace(WARM[0], num_demos=1).params())  # cheapest, half right
    study.enqueue_trial(dataclasses.replace(WARM[0], num_demos=2).params())  # all right, fewer tokens than 3
    res = _compile(oracle, shared_data, tmp_path, trials=4, objective="pareto")
    study = _study(tmp_path)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["dev F1", "prompt tokens / record"]
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4 and all(t.intermediate_values == {} for t in trials)
    one, two = trials[2], trials[3]
    f1 = {t.number: t.values[0] for t in trials}
    tokens = {t.number: t.values[1] for t in trials}
    assert 0 < f1[one.number] < 100 and f1[two.number] == f1[0] == f1[1] == 100.0
    assert tokens[one.number] < tokens[two.number] < min(tokens[0], tokens[1])
    assert all(t.user_attrs["prompt_tokens_per_record"] == t.values[1] for t in trials)
    m = res.manifest
    # The front: the two-demonstration trial dominates the warm starts; the one-demonstration one is cheapest.
    assert m["study"]["objective"] == "pareto" and m["study"]["max_tokens_per_record"] is None
    assert m["study"]["pareto_front"] == [
        {"trial": two.number, "f1": 100.0, "prompt_tokens_per_record": tokens[two.number]},
        {"trial": one.number, "f1": f1[one.number], "prompt_tokens_per_record": tokens[one.number]},
    ]
    assert not m["study"]["halving"]["on"] and "pareto" in m["study"]["halving"]["off_because"]
    # Written: the best F1, the fewer tokens on a tie.
    assert m["chosen"] == "trial" and m["trial"]["number"] == two.number and m["dev"]["f1"] == 100.0
    zero_tokens = m["baseline_dev"]["prompt_tokens_per_record"]
    assert 0 < zero_tokens < tokens[one.number]
    # Within a cap the two-demonstration trial is over: the best F1 within it is the one-demonstration trial.
    # The cap chooses only: the same study resumes, and no LLM call is sent.
    sent = len(oracle.server.requests)
    cap = (tokens[one.number] + tokens[two.number]) / 2
    capped = _compile(oracle, shared_data, tmp_path, trials=4, objective="pareto", max_tokens_per_record=cap, out=tmp_path / "capped.json")
    assert len(oracle.server.requests) == sent
    c = capped.manifest
    assert c["chosen"] == "trial" and c["trial"]["number"] == one.number and c["dev"]["f1"] == f1[one.number]
    assert c["study"]["max_tokens_per_record"] == cap and c["trial"]["user_attrs"]["prompt_tokens_per_record"] <= cap
    program, _ = load_program(tmp_path / "capped.json")
    assert program.settings.num_demos == 1
    # Below every trial, but the zero-shot baseline is within: it is written.
    low = _compile(oracle, shared_data, tmp_path, trials=4, objective="pareto", max_tokens_per_record=zero_tokens, out=tmp_path / "low.json")
    assert low.manifest["chosen"] == "baseline" and low.manifest["trial"] is None
    # Below the baseline too: refused, nothing written.
    with pytest.raises(ConfigError, match="no complete trial uses at most .* prompt tokens per dev record"):
        _compile(oracle, shared_data, tmp_path, trials=4, objective="pareto", max_tokens_per_record=1, out=tmp_path / "none.json")
    assert not (tmp_path / "none.json").exists()


def test_the_objective_is_part_of_the_fingerprint(oracle, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    single = _compile(oracle, shared_data, tmp_path, trials=1)
    sent = len(oracle.server.requests)
    with pytest.raises(ConfigError, match=r'changed: objective \(null -> "pareto"\).*--new-study'):
        _compile(oracle, shared_data, tmp_path, trials=1, objective="pareto")
    assert len(oracle.server.requests) == sent
    # --new-study starts the pareto study beside it; that one does not resume as single-objective.
    pareto = _compile(oracle, shared_data, tmp_path, trials=1, objective="pareto", new_study=True, out=tmp_path / "p.json")
    assert pareto.study_name != single.study_name and pareto.manifest["study"]["fingerprint"] != single.manifest["study"]["fingerprint"]
    with pytest.raises(ConfigError, match=r'changed: objective \("pareto" -> null\)'):
        _compile(oracle, shared_data, tmp_path, trials=1, study_name=pareto.study_name, out=tmp_path / "p.json")


def test_a_cap_needs_the_pareto_objective():
    from kgopt.compiler.study import CompileOptions

    with pytest.raises(ConfigError, match="--objective pareto"):
        CompileOptions(TASK, LANG, max_tokens_per_record=100)
    with pytest.raises(ConfigError, match="unknown objective"):
        CompileOptions(TASK, LANG, objective="tokens")


def test_cli_pareto_flags(oracle, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KGOPT_API_BASE", oracle.server.url)
    monkeypatch.setenv("KGOPT_MODEL", "fake")
    args = ["compile", "--task", TASK, "--lang", LANG, "--source", SOURCE, "--trials", "2", "--data-dir", str(shared_data),
            "--train-limit", "12", "--dev-limit", "2", "--instruction-proposals", "0", "--no-augmented"]
    res = CliRunner().invoke(app, [*args, "--objective", "pareto", "--max-tokens-per-record", "100000"])
    assert res.exit_code == 0, res.output
    assert "successive halving is off" in res.output
    _, m = load_program(tmp_path / "compiled" / "NER_en.json")
    assert m["study"]["objective"] == "pareto" and m["study"]["max_tokens_per_record"] == 100000 and m["study"]["pareto_front"]
    bad = CliRunner().invoke(app, [*args, "--objective", "tokens"])
    assert bad.exit_code == 2 and "tokens" in bad.output


def test_prompt_tokens_per_record_counts_answers_from_the_cache():
    from kgopt.compiler.study import prompt_tokens_per_record

    sent_only = {"calls": 4, "cache_hits": 0, "prompt_tokens": 400, "cached_prompt_tokens": 0}
    all_cached = {"calls": 0, "cache_hits": 4, "prompt_tokens": 0, "cached_prompt_tokens": 400}
    mixed = {"calls": 2, "cache_hits": 2, "prompt_tokens": 200, "cached_prompt_tokens": 200}
    assert prompt_tokens_per_record(sent_only, 2) == prompt_tokens_per_record(all_cached, 2) == prompt_tokens_per_record(mixed, 2) == 200.0
    assert prompt_tokens_per_record({"calls": 0, "cache_hits": 0, "prompt_tokens": 0, "cached_prompt_tokens": 0}, 2) is None
