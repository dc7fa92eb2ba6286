"""How the study uses the continuous search: --sampler cmaes (CMA-ES on the numeric parameters,
the demonstration weights asked in every trial) and --instructzero (the embedded model's
instructions join the candidates; z, seed and text go to the manifest). The fake endpoint and a
stub writer stand in for the models; tests/compiler/test_instructzero.py has the real writer."""

from __future__ import annotations

import optuna
import pytest

from kgopt.compiler import compile_program, instructzero
from kgopt.compiler.space import DEMO_WEIGHT_PARAMS
from kgopt.compiler.study import make_sampler
from kgopt.errors import ConfigError
from kgopt.testing.fake_endpoint import asked as asked_instruction, fake_connection
from tests.oracle import Oracle

TASK, LANG, SOURCE = "NER", "en", "CrossNER_AI"


@pytest.fixture()
def oracle(shared_data):
    with Oracle(TASK, LANG, shared_data, SOURCE) as o:
        yield o


def _compile(oracle, shared_data, tmp_path, trials, **kw):
    return compile_program(TASK, LANG, fake_connection(oracle.server.url), source=SOURCE, trials=trials, data_dir=shared_data,
                           compiled_dir=tmp_path / "compiled", train_limit=12, dev_limit=3, instruction_proposals=0, augmented=False, **kw)


def _study(tmp_path, name=f"{TASK}_{LANG}"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'compiled' / 'studies.sqlite3'}")


def test_the_samplers():
    assert isinstance(make_sampler("tpe", 0), optuna.samplers.TPESampler)
    cma = make_sampler("cmaes", 0)
    assert isinstance(cma, optuna.samplers.CmaEsSampler)
    with pytest.raises(ConfigError, match="unknown sampler 'grid'"):
        compile_program(TASK, LANG, None, sampler="grid")


def test_cmaes_asks_every_trial_the_weights_and_is_its_own_study(oracle, shared_data, tmp_path):
    res = _compile(oracle, shared_data, tmp_path, trials=6, sampler="cmaes")
    sampled = [t for t in _study(tmp_path).trials if t.state.name == "COMPLETE" and "rerun_of" not in t.user_attrs][2:]  # after the warm starts
    assert sampled and all(set(DEMO_WEIGHT_PARAMS) <= set(t.params) for t in sampled)
    assert all(0.0 <= t.params["temperature"] <= 1.0 for t in sampled)
    assert res.manifest["dev"]["f1"] >= res.manifest["baseline_dev"]["f1"]
    with pytest.raises(ConfigError, match=r"changed: sampler"):
        _compile(oracle, shared_data, tmp_path, trials=6)  # a TPE run does not resume a CMA-ES study


class StubWriter:
    """Writes a text chosen by z_0, as the embedded model would write one from a soft prompt."""

    d, n_soft = instructzero.DEFAULT_D, instructzero.DEFAULT_N_SOFT

    def __init__(self, **kw):
        self.last_raw = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def write(self, z, examples, lang):
        assert lang == LANG and len(examples) == 3  # three training examples, no dev record
        return f"Extract the entities of each type listed in the schema (variant {int(round((z[0] + 1) * 2))})."

    def describe(self):
        return {"writer": "stub", "prompt_version": instructzero.PROMPT_VERSION, "d": self.d, "n_soft": self.n_soft,
                "projection": {"seed": 0}, "model": {"sha256": "0" * 64}}


def test_instructzero_candidates_join_the_study_and_the_manifest(oracle, shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(instructzero, "InstructionWriter", StubWriter)
    res = _compile(oracle, shared_data, tmp_path, trials=2, instructzero_trials=3)
    study = _study(tmp_path)
    record = study.user_attrs["instructzero"]
    assert record["method"] == "instructzero" and len(record["trials"]) == 3 and record["writer"]["projection"]["seed"] == 0
    best = record["best"]["instruction"]
    assert best.startswith("Extract the entities") and study.user_attrs["instructions"].index(best) >= 1  # after the official one
    assert all(len(t["z"]) == StubWriter.d and t["instruction"] for t in record["trials"])
    assert res.manifest["study"]["instructzero"] == record


def test_instructzero_scores_its_instructions_on_the_first_rung(shared_data, tmp_path, monkeypatch):
    """Each written instruction is asked zero-shot on dev's first 5 records only (a pre-selection:
    the candidate kept is scored on all of dev as a trial), so more of them fit a budget."""

    monkeypatch.setattr(instructzero, "InstructionWriter", StubWriter)
    asked: dict[str, set[str]] = {}

    class Recording(Oracle):
        def answer(self, req):
            try:
                instr = asked_instruction(req["messages"])
                if "variant" in instr["instruction"] and not any(m["role"] == "assistant" for m in req["messages"]):
                    asked.setdefault(instr["instruction"], set()).add(instr["input"])
            except (ValueError, KeyError, TypeError):
                pass
            return super().answer(req)

    with Recording(TASK, LANG, shared_data, SOURCE) as oracle:
        compile_program(TASK, LANG, fake_connection(oracle.server.url), source=SOURCE, trials=1, data_dir=shared_data,
                        compiled_dir=tmp_path / "compiled", train_limit=12, dev_limit=12, instruction_proposals=0, augmented=False,
                        instructzero_trials=2)
    assert asked and all(len(inputs) == 5 for inputs in asked.values()), {k: len(v) for k, v in asked.items()}
