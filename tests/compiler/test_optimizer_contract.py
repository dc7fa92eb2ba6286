"""The optimiser registry: every registered optimiser keeps the contract a trial relies on, and
adding one is one ``Optimizer`` subclass plus ``@register_optimizer`` (shown with a test-only one).

The ``check_*`` functions are the contract; they run over every built-in optimiser and over the
test-only one. Compiling runs against the fake endpoint with the test oracle, which also answers
DSPy's own prompts (MIPRO's proposer, GEPA's reflection).
"""

from __future__ import annotations

import dataclasses
import random
import warnings

import dspy
import optuna
import pytest

from kgopt.clients.config import EndpointConfig
from kgopt.clients.lm import connect
from kgopt.compiler import optimizers as registry_module
from kgopt.compiler.optimizers import REGISTRY, Optimizer, get_optimizer, optimizer_names, register_optimizer, run_optimizer
from kgopt.compiler.space import TrialConfig, suggest
from kgopt.compiler.study import CompileOptions
from kgopt.compiler.trainset import chunk_examples
from kgopt.core.tasks import get_task
from kgopt.data.readers import load_examples
from kgopt.errors import ConfigError
from kgopt.program import IEProgram
from kgopt.testing.fake_endpoint import FakeEndpoint
from tests.oracle import Oracle

TASK, LANG, SOURCE = "NER", "en", "CrossNER_AI"
BUILT_IN = ("labeled", "bootstrap", "mipro", "gepa")
BASE_PARAMS = {f.name for f in dataclasses.fields(TrialConfig)} - {"options"}


# --- the contract -------------------------------------------------------------------------------


def check_options(optimizer: Optimizer, max_demos: int, seed: int = 0) -> None:
    """Its searched settings are Optuna parameters ``<name>_<key>``, keyed as ``defaults`` is,
    and the defaults lie inside the searched space (so a warm start is a point of it)."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    options = optimizer.suggest_options(trial, max_demos)
    defaults = optimizer.defaults(max_demos)
    assert set(options) == set(defaults), optimizer.name
    assert set(trial.params) == {f"{optimizer.name}_{k}" for k in options}, optimizer.name
    for key, value in defaults.items():
        dist = trial.distributions[f"{optimizer.name}_{key}"]
        assert dist._contains(dist.to_internal_repr(value)), (optimizer.name, key, value, dist)
    cfg = TrialConfig(optimizer=optimizer.name, options=options)
    assert TrialConfig.from_params(cfg.params()) == cfg  # read back from the study by its prefix


def check_suggested_by_the_space(optimizer: Optimizer, max_demos: int = 3) -> None:
    """``space.suggest`` offers it among every registered optimiser and asks its settings."""
    spec = get_task(TASK)
    wanted = TrialConfig(optimizer=optimizer.name, num_demos=2, split_size=spec.split_size, options=optimizer.defaults(max_demos))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = suggest(optuna.trial.FixedTrial(wanted.params()), spec, None, 1, max_demos)
    # A FixedTrial takes a value outside the choices with only a warning.
    assert not [w for w in caught if "out of the range" in str(w.message)], optimizer.name
    assert got == wanted


def check_compiles(optimizer: Optimizer, server, lm, trainset, valset) -> None:
    """Through ``run_optimizer``: a copy with at most ``num_demos`` demonstrations, the input
    untouched; with no demonstrations a demos-only optimiser asks the model nothing."""
    program = IEProgram(TASK, LANG)
    with dspy.context(lm=lm):
        compiled = run_optimizer(optimizer.name, program, trainset, valset, lm, 2, "random", seed=1)
        assert isinstance(compiled, IEProgram) and compiled is not program
        assert len(compiled.extract.demos) <= 2 and compiled.settings.num_demos == 2
        assert compiled.settings.demo_selection == "fixed" and program.extract.demos == []
        if optimizer.demos_only:
            asked = len(server.requests)
            none = run_optimizer(optimizer.name, program, trainset, valset, lm, 0, "random", seed=1)
            assert none.extract.demos == [] and len(server.requests) == asked


# --- over every registered optimiser ------------------------------------------------------------


@pytest.fixture(scope="module")
def setting(shared_data):
    """The oracle's endpoint and a tiny train/valset of NER/en chunks."""
    spec = get_task(TASK)
    train = load_examples(TASK, LANG, "train", data_dir=shared_data, source=SOURCE, limit=6)
    chunks = chunk_examples(spec, train, spec.split_size)
    oracle = Oracle(TASK, LANG, shared_data, SOURCE)
    with FakeEndpoint(respond=oracle) as server:
        lm = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False).lm
        yield server, lm, chunks[2:], chunks[:2]


def test_the_built_in_optimizers_are_registered_under_their_own_names():
    assert optimizer_names()[: len(BUILT_IN)] == BUILT_IN
    assert registry_module.OPTIMIZERS == optimizer_names()
    assert len({type(o) for o in REGISTRY.values()}) == len(REGISTRY)
    for key, optimizer in REGISTRY.items():
        assert optimizer.name == key and get_optimizer(key) is optimizer
        # TrialConfig.from_params finds options by "<name>_": it must catch no base parameter.
        assert not [p for p in BASE_PARAMS if p.startswith(key + "_")], key
    assert [n for n in BUILT_IN if get_optimizer(n).selects_on_valset] == ["mipro", "gepa"]
    with pytest.raises(ValueError, match="unknown optimizer 'nope'; choose one of labeled, bootstrap, mipro, gepa"):
        get_optimizer("nope")


@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.parametrize("max_demos", [0, 1, 4])
def test_options_are_prefixed_parameters_with_defaults_in_the_space(name, max_demos):
    check_options(get_optimizer(name), max_demos, seed=max_demos)


@pytest.mark.parametrize("name", BUILT_IN)
def test_the_space_suggests_each_optimizer_and_its_settings(name):
    check_suggested_by_the_space(get_optimizer(name))


def test_the_option_names_are_the_searched_ones():
    """The names a person reads in optuna-dashboard (space-v2: mipro_trials, not mipro_mipro_trials)."""
    names = {}
    for name in BUILT_IN:
        trial = optuna.create_study().ask()
        get_optimizer(name).suggest_options(trial, 4)
        names[name] = sorted(trial.params)
    assert names == {"labeled": [], "bootstrap": ["bootstrap_bootstrapped"], "mipro": ["mipro_candidates", "mipro_trials"], "gepa": ["gepa_metric_calls"]}


@pytest.mark.parametrize("name", BUILT_IN)
def test_each_optimizer_compiles_a_tiny_trainset(name, setting, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where DSPy may write its logs
    check_compiles(get_optimizer(name), *setting)


def test_registration_refuses_a_taken_or_unreadable_name():
    class Again(Optimizer):
        name = "labeled"

    class Underscored(Optimizer):
        name = "my_opt"  # "my_opt_x" would read as option "opt_x" of an optimiser "my"

    class Nameless(Optimizer):
        pass

    for cls, message in ((Again, "already registered"), (Underscored, "lowercase letters and digits"), (Nameless, "lowercase")):
        with pytest.raises(ValueError, match=message):
            register_optimizer(cls)
    assert optimizer_names()[: len(BUILT_IN)] == BUILT_IN and "my_opt" not in REGISTRY


# --- adding an optimiser: one class and its registration ----------------------------------------


class FirstChunks(Optimizer):
    """Test-only: the training chunks from ``offset`` on as demonstrations (one searched setting)."""

    name = "firstchunks"
    demos_only = True

    def suggest_options(self, trial, max_demos):
        return {"offset": trial.suggest_int(self.param("offset"), 0, 2)}

    def defaults(self, max_demos):
        return {"offset": 0}

    def compile(self, program, trainset, valset, lm, num_demos, demo_choice, seed, options):
        compiled = program.deepcopy()
        compiled.extract.demos = trainset[options["offset"] : options["offset"] + num_demos]
        return compiled


@pytest.fixture()
def added():
    register_optimizer(FirstChunks)
    try:
        yield get_optimizer(FirstChunks.name)
    finally:
        REGISTRY.pop(FirstChunks.name)


def test_an_added_optimizer_keeps_the_contract(added, setting):
    assert optimizer_names() == (*BUILT_IN, "firstchunks") == registry_module.OPTIMIZERS
    for max_demos in (0, 4):
        check_options(added, max_demos)
    check_suggested_by_the_space(added)
    check_compiles(added, *setting)


def test_an_added_optimizer_is_searched_and_run_like_the_built_in_ones(added, setting):
    spec = get_task(TASK)
    chosen = []
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: chosen.append(suggest(t, spec, None, 1, 3)) or 0.0, n_trials=40)
    ours = [c for c in chosen if c.optimizer == "firstchunks"]
    assert {c.optimizer for c in chosen} == set(optimizer_names()) and ours
    assert all(set(c.options) == {"offset"} for c in ours)
    first = next(t for t in study.trials if t.params["optimizer"] == "firstchunks")
    assert "firstchunks_offset" in first.params and TrialConfig.from_params(first.params) == ours[0]

    # run_optimizer: shuffled with the seed, its compile with the defaults filled in, then the demo choice.
    server, lm, trainset, valset = setting
    program = IEProgram(TASK, LANG)
    compiled = run_optimizer("firstchunks", program, trainset, valset, lm, 2, "similar", seed=3, options={"offset": 1})
    shuffled = list(trainset)
    random.Random(3).shuffle(shuffled)
    assert list(compiled.extract.demos) == shuffled[1:3]
    assert (compiled.settings.num_demos, compiled.settings.demo_selection) == (2, "similar")
    assert list(run_optimizer("firstchunks", program, trainset, valset, lm, 2, "random", seed=3).extract.demos) == shuffled[:2]
    # A study may be fixed to it, as to any registered optimiser.
    assert CompileOptions(TASK, LANG, optimizer="firstchunks").optimizers == ("firstchunks",)


def test_a_removed_optimizer_is_gone_from_the_choices():
    """After the tests above: the fixture took it out again, so no other test sees it."""
    assert "firstchunks" not in optimizer_names()
    with pytest.raises(ConfigError, match="unknown optimizer 'firstchunks'"):
        CompileOptions(TASK, LANG, optimizer="firstchunks")
