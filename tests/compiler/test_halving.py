"""Successive halving over dev: trials score dev in rungs (5, 10, ... records, then all) and one
below the median of the others at a rung stops there (PRUNED, its rung and calls recorded); warm
starts never stop; only complete trials choose the program; the saved calls are reported.

The oracle answers the gold with demonstrations, except with exactly one demonstration, where it
echoes (a bad configuration): dev F1 100 against 0, decided at the first rung.
"""

from __future__ import annotations

import dataclasses

import optuna
import pytest
from loguru import logger

from kgopt.clients.config import EndpointConfig
from kgopt.clients.lm import connect
from kgopt.compiler import compile_program
from kgopt.compiler.space import starting_points
from kgopt.compiler.study import Compiler, RungPruner, interleave_sources, rungs_of
from kgopt.core.tasks import get_task
from kgopt.data.readers import load_examples
from tests.oracle import Oracle

TASK, LANG, SOURCE = "NER", "en", "CrossNER_AI"
DEV = 12  # rungs 5, 10, 12
SPEC = get_task(TASK)
WARM = starting_points(SPEC, ("labeled", "bootstrap"), 4)


class OneDemoIsBad(Oracle):
    def answer(self, req: dict) -> str:
        if sum(m["role"] == "assistant" for m in req["messages"]) == 1:
            return req["messages"][-1]["content"]  # an echo: not an answer
        return super().answer(req)


@pytest.fixture()
def oracle(shared_data):
    with OneDemoIsBad(TASK, LANG, shared_data, SOURCE) as o:
        yield o


@pytest.fixture()
def log():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    yield lines
    logger.remove(sink)


def _conn(server):
    return connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)


def _compile(oracle, shared_data, tmp_path, trials, **kw):
    return compile_program(TASK, LANG, _conn(oracle.server), source=SOURCE, trials=trials, data_dir=shared_data,
                           compiled_dir=tmp_path / "compiled", train_limit=12, dev_limit=DEV, instruction_proposals=0,
                           augmented=False, **kw)


def _study(tmp_path):
    return optuna.load_study(study_name=f"{TASK}_{LANG}", storage=f"sqlite:///{tmp_path / 'compiled' / 'studies.sqlite3'}")


def _enqueue_bad_then_good(tmp_path):
    study = _study(tmp_path)
    study.enqueue_trial(dataclasses.replace(WARM[0], num_demos=1).params())  # bad: the oracle echoes
    study.enqueue_trial(dataclasses.replace(WARM[0], num_demos=2).params())  # good


def test_rungs_grow_from_five_to_all_of_dev():
    assert rungs_of(3) == [3] and rungs_of(5) == [5]  # one rung: nothing to stop early
    assert rungs_of(6) == [5, 6] and rungs_of(12) == [5, 10, 12] and rungs_of(40) == [5, 10, 20, 40] and rungs_of(41) == [5, 10, 20, 40, 41]


def test_dev_records_take_turns_by_source(shared_data):
    dev = load_examples(TASK, LANG, "dev", data_dir=shared_data, limit=2)  # two per source, source after source
    sources = list(dict.fromkeys(ex.record.source for ex in dev))
    got = interleave_sources(dev)
    assert len(sources) > 2 and [ex.record.source for ex in got] == sources * 2  # every source in the first rung it can be
    assert sorted(map(id, got)) == sorted(map(id, dev))


def test_a_bad_trial_stops_at_the_first_rung_and_the_saving_is_reported(oracle, shared_data, tmp_path, monkeypatch, log):
    monkeypatch.chdir(tmp_path)
    _compile(oracle, shared_data, tmp_path, trials=2)  # the warm starts
    _enqueue_bad_then_good(tmp_path)
    res = _compile(oracle, shared_data, tmp_path, trials=4)
    trials = _study(tmp_path).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]
    warm_a, warm_b, bad, good = trials
    # The warm starts and the good trial reported at every rung short of all dev, and scored all of it.
    for t in (warm_a, warm_b, good):
        assert t.intermediate_values == {5: 100.0, 10: 100.0} and t.value == 100.0 and t.user_attrs["rung"] == DEV
    # The bad one: F1 0 after 5 records, below the median (100) of the two that reached rung 5.
    assert bad.params["num_demos"] == 1 and bad.intermediate_values == {5: 0.0} and bad.user_attrs["rung"] == 5
    assert bad.user_attrs["dev_calls"] > 0 and bad.user_attrs["llm_calls"] == bad.user_attrs["compile_calls"] + bad.user_attrs["dev_calls"]
    assert bad.user_attrs["dev_calls"] < good.user_attrs["dev_calls"]  # it stopped early
    halving = res.manifest["study"]["halving"]
    saved = round(bad.user_attrs["dev_calls"] / 5 * (DEV - 5))
    assert halving["on"] and halving["rungs"] == [5, 10, 12] and halving["dev_records"] == DEV
    assert halving["trials_stopped"] == 1 and halving["calls_saved_estimate"] == saved > 0
    assert halving["stopped"] == [{"trial": bad.number, "rung": 5, "dev_calls": bad.user_attrs["dev_calls"], "calls_saved": saved}]
    assert f"early stopping saved ~{saved} calls (1 trial stopped at rungs 5 of {DEV} dev records)" in log
    assert any("rungs of 5, 10, 12 records" in line for line in log)
    # The program is a complete trial's; the pruned trial counts towards --trials.
    m = res.manifest
    assert m["chosen"] == "trial" and m["dev"]["f1"] == 100.0 and m["trial"]["number"] in (warm_a.number, warm_b.number, good.number)
    assert res.trials_run == 4 and m["study"]["trials_finished"] == 4 and m["study"]["objective"] == "f1"
    # A re-run keeps the pruned trial and asks nothing new.
    sent = len(oracle.server.requests)
    _compile(oracle, shared_data, tmp_path, trials=4)
    assert len(oracle.server.requests) == sent and _study(tmp_path).trials[bad.number].state.name == "PRUNED"


def test_no_halving_scores_every_trial_on_all_of_dev(oracle, shared_data, tmp_path, monkeypatch, log):
    monkeypatch.chdir(tmp_path)
    _compile(oracle, shared_data, tmp_path, trials=2, halving=False)
    _enqueue_bad_then_good(tmp_path)
    res = _compile(oracle, shared_data, tmp_path, trials=4, halving=False)
    trials = _study(tmp_path).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert trials[2].value == 0.0 and trials[2].user_attrs["rung"] == DEV and trials[2].intermediate_values == {5: 0.0, 10: 0.0}
    halving = res.manifest["study"]["halving"]
    assert not halving["on"] and halving["trials_stopped"] == 0 and halving["calls_saved_estimate"] == 0
    assert any("successive halving is off (--no-halving)" in line for line in log)
    assert not any("early stopping saved" in line for line in log)


def test_one_rung_when_dev_is_small(oracle, shared_data, tmp_path, monkeypatch, log):
    monkeypatch.chdir(tmp_path)
    res = compile_program(TASK, LANG, _conn(oracle.server), source=SOURCE, trials=1, data_dir=shared_data, compiled_dir=tmp_path / "compiled",
                          train_limit=12, dev_limit=4, instruction_proposals=0, augmented=False)
    assert res.manifest["study"]["halving"]["rungs"] == [4]
    assert _study(tmp_path).trials[0].intermediate_values == {}  # nothing reported short of all dev
    assert any("one rung (dev has 4 records" in line for line in log)


def test_warm_starts_are_never_stopped(oracle, shared_data, tmp_path, monkeypatch):
    """With two trials at F1 100 at every rung, a broken model: the warm start scores all of dev
    (F1 0), another configuration stops at the first rung."""
    monkeypatch.chdir(tmp_path)
    oracle.broken = True
    train = load_examples(TASK, LANG, "train", data_dir=shared_data, source=SOURCE, limit=12)
    dev = load_examples(TASK, LANG, "dev", data_dir=shared_data, source=SOURCE, limit=DEV)
    comp = Compiler(TASK, LANG, _conn(oracle.server), train, dev, ("labeled", "bootstrap"), 4, 0, 1, tmp_path / "trials")
    comp.instructions = [""]
    study = optuna.create_study(direction="maximize", pruner=RungPruner())
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=100.0, intermediate_values={5: 100.0, 10: 100.0}))
    study.enqueue_trial(WARM[0].params())
    study.enqueue_trial(dataclasses.replace(WARM[0], num_demos=2).params())
    study.optimize(comp.objective, n_trials=2)
    warm, other = study.trials[2:]
    assert warm.state.name == "COMPLETE" and warm.value == 0.0 and warm.user_attrs["rung"] == DEV
    assert warm.intermediate_values == {5: 0.0, 10: 0.0}
    assert other.state.name == "PRUNED" and other.user_attrs["rung"] == 5
