"""The continuous part of the search space (space-v3): weighted demonstration selection, whose four
weights are Optuna floats, and temperature as a float. No model is asked anything here."""

from __future__ import annotations

import json
import random
from pathlib import Path

import dspy
import optuna
import pytest

from kgopt.compiler.optimizers import SIMILAR_POOL, run_optimizer
from kgopt.compiler.space import DEMO_CHOICES, DEMO_WEIGHT_PARAMS, DISCRETE_TEMPERATURES, SEARCH_SPACE_VERSION, TrialConfig, starting_points, suggest
from kgopt.core.demos import DemoWeights, most_similar, weighted_demos
from kgopt.core.tasks import get_task
from kgopt.data.readers import load_examples
from kgopt.errors import ArtifactError
from kgopt.program import IEProgram, ProgramSettings, demo_labels, load_program

ROOT = Path(__file__).resolve().parents[2]
WEIGHT_PARAMS = set(DEMO_WEIGHT_PARAMS)


def _demo(text: str, **labels: list[str]) -> dspy.Example:
    return dspy.Example(text=text, chunk=sorted(labels), answer=json.dumps(labels))


def _pick(text, pool, k, wanted=(), **weights):
    return weighted_demos(text, pool, k, DemoWeights(**weights), key=lambda d: d["text"], labels_of=demo_labels, wanted=set(wanted),
                          size=lambda d: len(d["text"]) + len(d["answer"]))


def _texts(demos):
    return [d["text"] for d in demos]


# --- the selection: a pure function of (input, chunk, pool, weights) ----------------------------


def test_similarity_alone_is_most_similar_without_a_bonus():
    pool = ["Obama visited Paris in 2009", "The cat sat on the mat", "Obama met Merkel in Berlin", "Merkel spoke in Berlin", "cats and mats"]
    for k in range(0, len(pool) + 2):
        for text in ("Obama went to Berlin", "the cat", "nothing in common", ""):
            got = weighted_demos(text, pool, k, DemoWeights(similarity=1.0), key=str, labels_of=lambda _: set(), wanted=set())
            assert got == most_similar(text, pool, k, key=str), (text, k)


def test_similarity_alone_matches_most_similar_on_real_training_texts(shared_data):
    texts = [ex.record.text for ex in load_examples("NER", "en", "train", data_dir=shared_data, limit=40)]
    rng = random.Random(0)
    for _ in range(20):
        pool = rng.sample(texts, 12)
        query = rng.choice(texts)
        assert weighted_demos(query, pool, 4, DemoWeights(similarity=1.0), key=str, labels_of=lambda _: set(), wanted=set()) == most_similar(query, pool, 4, key=str)


def test_similar_selection_is_weighted_with_half_a_coverage_weight_on_one_label_chunks():
    """``similar`` adds a bonus of 0.5 to a demo that answers any of the chunk's labels; ``weighted``'s
    coverage is the share of the chunk's labels it answers. On a one-label chunk the two are the
    same, so ``similar`` is the point (similarity 1, coverage 0.5) of the weighted space; on a chunk
    of several labels the bonus is all-or-nothing and the share is not, and they may differ."""
    pool = [
        _demo("Obama visited Paris", person=["Obama"]),
        _demo("Obama visited Berlin", location=["Berlin"]),
        _demo("The cat sat on the mat", animal=["cat"]),
        _demo("Merkel visited Berlin", person=["Merkel"], location=["Berlin"]),
        _demo("Obama visited Berlin twice", person=["Obama"], location=["Berlin"]),
    ]
    similar = IEProgram("NER", "en", settings=ProgramSettings(num_demos=2, demo_selection="similar"))
    weighted = IEProgram("NER", "en", settings=ProgramSettings(num_demos=2, demo_selection="weighted", demo_weights=DemoWeights(similarity=1, coverage=0.5)))
    similar.extract.demos = weighted.extract.demos = pool
    for text in ("Obama visited Berlin", "the cat", "Merkel in Paris"):
        for chunk in (["person"], ["location"], ["animal"], ["organization"]):
            assert weighted.select_demos(text, chunk) == similar.select_demos(text, chunk), (text, chunk)


def test_coverage_picks_the_demo_that_answers_the_chunks_labels():
    pool = [_demo("Ada wrote notes", person=["Ada"]), _demo("Paris and Ada", person=["Ada"], location=["Paris"]), _demo("A cat", animal=["cat"])]
    assert _texts(_pick("anything", pool, 1, wanted={"person", "location"}, coverage=1)) == ["Paris and Ada"]
    assert _texts(_pick("anything", pool, 1, wanted={"animal"}, coverage=1)) == ["A cat"]
    # More similar, but answering none of the chunk's labels: coverage outweighs it.
    pool.append(_demo("anything at all", organization=["ACME"]))
    assert _texts(_pick("anything at all", pool, 1, wanted={"animal"}, similarity=0.5, coverage=1)) == ["A cat"]
    assert _texts(_pick("anything at all", pool, 1, wanted={"animal"}, similarity=1, coverage=0.5)) == ["anything at all"]


def test_diversity_avoids_near_duplicates():
    pool = [
        _demo("Obama visited Berlin in June", person=["Obama"]),
        _demo("Obama visited Berlin in July", person=["Obama"]),
        _demo("Merkel spoke in Paris", person=["Merkel"]),
    ]
    query = "Obama visited Berlin"
    assert _texts(_pick(query, pool, 2, similarity=1)) == ["Obama visited Berlin in July", "Obama visited Berlin in June"]
    # The first pick is the most similar; the second is not its near-copy. Best still last.
    assert _texts(_pick(query, pool, 2, similarity=1, diversity=1)) == ["Merkel spoke in Paris", "Obama visited Berlin in June"]


def test_length_weight_prefers_shorter_demos():
    pool = [_demo("a long demonstration with many many words in it", person=["x"]), _demo("short one", person=["x"]), _demo("medium sized text here", person=["x"])]
    assert _texts(_pick("q", pool, 1, length=1)) == ["short one"]
    assert _texts(_pick("q", pool, 3, length=1)) == [d["text"] for d in (pool[0], pool[2], pool[1])]  # shortest last
    # Length counts the answer as well as the text: it is what the demo adds to the prompt.
    pool = [_demo("same text", person=["a very long answer value indeed"]), _demo("same text", person=["b"])]
    assert _pick("q", pool, 1, length=1) == [pool[1]]


def test_ties_go_to_pool_order_and_the_choice_is_pure():
    pool = [_demo(f"text {i}", person=["p"]) for i in range(6)]
    before = list(pool)
    assert _pick("unrelated", pool, 3) == [pool[2], pool[1], pool[0]]  # all weights 0: the first k, first one last
    assert _pick("unrelated", pool, 3, coverage=1, diversity=1, length=0.5) == _pick("unrelated", pool, 3, coverage=1, diversity=1, length=0.5)
    assert pool == before
    assert _pick("x", [], 3, similarity=1) == [] and _pick("x", pool, 0, similarity=1) == []
    assert len(_pick("x", pool, 10, similarity=1)) == len(pool)


def test_demo_weights_are_checked():
    assert DemoWeights(similarity=1, length=0) == DemoWeights(similarity=1.0)
    assert isinstance(DemoWeights(similarity=1).similarity, float)
    for bad in (-0.1, 1.01, float("nan"), float("inf"), True, "0.5", None):
        with pytest.raises(ValueError, match=r"demo_weights.coverage must be a number from 0 to 1"):
            DemoWeights(coverage=bad)
    with pytest.raises(ValueError, match=r"unknown weight\(s\) 'simlarity'"):
        DemoWeights.from_dict({"simlarity": 0.5})
    with pytest.raises(ValueError, match=r"demo_weights must be an object"):
        DemoWeights.from_dict([0.5])


# --- in a program: settings, save and load ------------------------------------------------------


def _weighted_program(weights=DemoWeights(similarity=0.6, coverage=0.3, diversity=0.7, length=0.1234567890123456789)):
    prog = IEProgram("NER", "en", settings=ProgramSettings(num_demos=2, demo_selection="weighted", demo_weights=weights, temperature=0.4321))
    prog.extract.demos = [
        _demo("Obama visited Berlin in June", person=["Obama"], location=["Berlin"]),
        _demo("Obama visited Berlin in July", person=["Obama"]),
        _demo("Merkel spoke in Paris", person=["Merkel"], location=["Paris"]),
        _demo("The cat sat", animal=["cat"]),
    ]
    return prog


def test_weighted_settings_round_trip_and_rerun_identically(tmp_path):
    prog = _weighted_program()
    path = prog.save_artifact(tmp_path / "p.json")
    saved = json.loads(path.read_text(encoding="utf-8"))["config"]
    assert saved["demo_selection"] == "weighted"
    assert saved["demo_weights"] == {"similarity": 0.6, "coverage": 0.3, "diversity": 0.7, "length": 0.1234567890123456789}
    loaded, _ = load_program(path, "NER", "en")
    assert loaded.settings == prog.settings and isinstance(loaded.settings.demo_weights, DemoWeights)
    for text in ("Obama in Berlin", "a cat", "Paris"):
        for chunk in (["person"], ["location", "person"], ["animal"]):
            assert _texts(loaded.select_demos(text, chunk)) == _texts(prog.select_demos(text, chunk))
    assert loaded.call_config(["person"])["temperature"] == 0.4321


def test_programs_without_weights_are_saved_and_loaded_as_before(tmp_path):
    prog = IEProgram("NER", "en", settings=ProgramSettings(num_demos=1, demo_selection="similar"))
    assert "demo_weights" not in prog.config()
    loaded, _ = load_program(prog.save_artifact(tmp_path / "p.json"))
    assert loaded.settings.demo_weights is None and loaded.settings == prog.settings
    kinds = set()
    for f in sorted((ROOT / "programs").glob("*.json")) + sorted((ROOT / "compiled").glob("*.json")):
        config = json.loads(f.read_text(encoding="utf-8"))["config"]
        program, _ = load_program(f)
        if "demo_weights" in config:  # a committed program the continuous search chose (compiled/EE_zh.json)
            assert program.settings.demo_selection == "weighted" and program.settings.demo_weights == DemoWeights(**config["demo_weights"])
        else:
            assert program.settings.demo_weights is None and program.settings.demo_selection != "weighted"
        kinds.add("demo_weights" in config)
    assert kinds == {True, False}  # both kinds are on disk, so both branches ran


def test_settings_in_code_take_a_dict_and_refuse_a_mismatch():
    st = ProgramSettings(demo_selection="weighted", demo_weights={"similarity": 1})
    assert st.demo_weights == DemoWeights(similarity=1.0)
    with pytest.raises(ValueError, match="demo_weights must be given with demo_selection 'weighted'"):
        ProgramSettings(demo_selection="weighted")
    with pytest.raises(ValueError, match="and only with it"):
        ProgramSettings(demo_selection="similar", demo_weights=DemoWeights(similarity=1))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["demo_weights"].__setitem__("similarity", "high"), r"config: demo_weights.similarity must be a number from 0 to 1, got 'high'"),
        (lambda c: c["demo_weights"].__setitem__("coverage", 1.5), r"config: demo_weights.coverage must be a number from 0 to 1, got 1.5"),
        (lambda c: c["demo_weights"].__setitem__("diversity", True), r"config: demo_weights.diversity must be a number from 0 to 1, got True"),
        (lambda c: c["demo_weights"].__setitem__("length", None), r"config: demo_weights.length must be a number from 0 to 1, got None"),
        (lambda c: c["demo_weights"].__setitem__("mmr", 0.5), r"config: demo_weights: unknown weight\(s\) 'mmr'"),
        (lambda c: c.__setitem__("demo_weights", [0.5, 0.5]), r"config: demo_weights must be an object"),
        (lambda c: c.__setitem__("demo_weights", None), r"config: demo_weights must be given with demo_selection 'weighted'"),
        (lambda c: c.pop("demo_weights"), r"config: demo_weights must be given with demo_selection 'weighted'"),
        (lambda c: c.__setitem__("demo_selection", "fixed"), r"config: demo_weights must be given with demo_selection 'weighted', and only with it"),
        (lambda c: c.__setitem__("demo_selection", "mmr"), r"config: demo_selection must be one of \('fixed', 'similar', 'weighted'\)"),
    ],
)
def test_bad_weights_in_a_program_file_are_refused_with_the_file_and_key(tmp_path, edit, message):
    art = _weighted_program().to_artifact()
    edit(art["config"])
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(art), encoding="utf-8")
    with pytest.raises(ArtifactError, match=message) as err:
        load_program(path)
    assert str(path) in str(err.value)


# --- in the search space ------------------------------------------------------------------------


def test_the_search_space_version_is_bumped():
    assert SEARCH_SPACE_VERSION == "space-v5"
    assert DEMO_CHOICES == ("random", "coverage", "similar", "weighted")
    assert WEIGHT_PARAMS == {"demo_w_similarity", "demo_w_coverage", "demo_w_diversity", "demo_w_length"}


def test_trial_config_round_trips_with_the_weights():
    weighted = TrialConfig(demo_choice="weighted", num_demos=3, temperature=0.37, demo_w_similarity=0.25, demo_w_coverage=1.0, demo_w_diversity=0.5, demo_w_length=0.0)
    params = weighted.params()
    assert WEIGHT_PARAMS <= set(params) and params["temperature"] == 0.37
    assert TrialConfig.from_params(params) == weighted
    st = weighted.settings()
    assert (st.demo_selection, st.demo_weights, st.temperature) == ("weighted", DemoWeights(0.25, 1.0, 0.5, 0.0), 0.37)
    for choice, selection in (("random", "fixed"), ("coverage", "fixed"), ("similar", "similar")):
        cfg = TrialConfig(demo_choice=choice, temperature=0.9)
        assert not WEIGHT_PARAMS & set(cfg.params()) and TrialConfig.from_params(cfg.params()) == cfg
        assert (cfg.settings().demo_selection, cfg.settings().demo_weights) == (selection, None)


def test_suggest_on_a_fixed_trial():
    spec = get_task("NER")
    for cfg in (TrialConfig(demo_choice="weighted", num_demos=2, split_size=spec.split_size, temperature=0.61, demo_w_similarity=0.1, demo_w_coverage=0.2, demo_w_diversity=0.3, demo_w_length=0.4),
                TrialConfig(demo_choice="similar", num_demos=2, split_size=spec.split_size, temperature=0.0)):
        trial = optuna.trial.FixedTrial(cfg.params())
        assert suggest(trial, spec, ("labeled",), 1, 4) == cfg
        assert (WEIGHT_PARAMS <= set(trial.params)) == (cfg.demo_choice == "weighted")
        assert isinstance(trial.params["temperature"], float)


def test_suggest_in_a_real_study_asks_floats_only_where_they_apply():
    spec = get_task("NER")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    choices, temperatures = set(), set()
    for _ in range(60):
        trial = study.ask()
        cfg = suggest(trial, spec, ("labeled", "bootstrap"), 2, 4)
        study.tell(trial, 0.0)
        frozen = study.trials[-1]
        choices.add(cfg.demo_choice)
        temperatures.add(cfg.temperature)
        assert frozen.distributions["temperature"] == optuna.distributions.FloatDistribution(0.0, 1.0)
        assert 0.0 <= cfg.temperature <= 1.0
        if cfg.demo_choice == "weighted":
            assert WEIGHT_PARAMS <= set(frozen.params)
            for p in WEIGHT_PARAMS:
                assert frozen.distributions[p] == optuna.distributions.FloatDistribution(0.0, 1.0)
            assert cfg.demo_weights() == DemoWeights(*(frozen.params[f"demo_w_{k}"] for k in ("similarity", "coverage", "diversity", "length")))
        else:
            assert not WEIGHT_PARAMS & set(frozen.params) and cfg.demo_weights() is None
        assert TrialConfig.from_params(frozen.params) == cfg  # what the study reads back (study.py)
    assert choices == set(DEMO_CHOICES) and len(temperatures) > 10


def test_without_the_continuous_part_every_parameter_is_categorical():
    spec = get_task("NER")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for cfg in starting_points(spec, ("labeled",), 4):
        study.enqueue_trial(cfg.params())  # the warm starts (temperature 0) fit the categorical space
    choices, temperatures = set(), set()
    for _ in range(60):
        trial = study.ask()
        cfg = suggest(trial, spec, ("labeled", "bootstrap"), 2, 4, fixed_space=True, continuous=False)
        study.tell(trial, 0.0)
        frozen = study.trials[trial.number]
        choices.add(cfg.demo_choice)
        temperatures.add(cfg.temperature)
        assert not any(isinstance(d, optuna.distributions.FloatDistribution) for d in frozen.distributions.values()), frozen.distributions
        assert frozen.distributions["temperature"] == optuna.distributions.CategoricalDistribution(list(DISCRETE_TEMPERATURES))
    assert choices == set(DEMO_CHOICES) - {"weighted"} and temperatures == set(DISCRETE_TEMPERATURES)


def test_no_continuous_is_its_own_study_and_refuses_cmaes():
    from kgopt.compiler.fingerprint import fingerprint_of
    from kgopt.compiler.study import CompileOptions
    from kgopt.errors import ConfigError

    conn = type("C", (), {"model": "m", "identity": "http://x"})()
    parts = [fingerprint_of(CompileOptions("NER", "en", continuous=c), {}, [], conn).parts for c in (True, False)]
    assert "continuous" not in parts[0] and parts[1]["continuous"] is False  # studies made before the switch keep their fingerprint
    with pytest.raises(ConfigError, match="no-continuous"):
        CompileOptions("NER", "en", continuous=False, sampler="cmaes")


def test_demo_order_is_searched_and_reaches_the_program_settings():
    spec = get_task("NER")
    assert {c.demo_order for c in starting_points(spec, ("labeled",), 4)} == {"selected"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    orders = set()
    for _ in range(20):
        trial = study.ask()
        cfg = suggest(trial, spec, ("labeled",), 1, 4)
        study.tell(trial, 0.0)
        assert study.trials[-1].distributions["demo_order"] == optuna.distributions.CategoricalDistribution(["selected", "sorted"])
        assert cfg.settings().demo_order == cfg.demo_order == study.trials[-1].params["demo_order"]
        orders.add(cfg.demo_order)
    assert orders == {"selected", "sorted"}


def test_warm_starts_keep_temperature_zero_through_a_study():
    spec = get_task("NER")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    points = starting_points(spec, ("labeled",), 4)
    for cfg in points:
        assert cfg.temperature == 0.0 and cfg.demo_choice == "similar"
        study.enqueue_trial(cfg.params())
    for cfg in points:
        trial = study.ask()
        assert suggest(trial, spec, ("labeled",), 1, 4, (spec.split_size,)) == cfg
        assert trial.params["temperature"] == 0.0
        study.tell(trial, 0.0)


# --- through the optimiser ----------------------------------------------------------------------


def _trainset(n=30):
    return [_demo(f"Person {i} visited city {i % 7}", person=[f"Person {i}"]) for i in range(n)]


def test_a_weighted_trial_compiles_to_a_weighted_program_with_a_pool(tmp_path):
    cfg = TrialConfig(optimizer="labeled", num_demos=2, demo_choice="weighted", demo_w_similarity=0.5, demo_w_diversity=0.25)
    program = IEProgram("NER", "en", settings=cfg.settings())
    compiled = run_optimizer("labeled", program, _trainset(), [], None, 2, "weighted", seed=1)
    assert len(compiled.extract.demos) == SIMILAR_POOL
    assert (compiled.settings.demo_selection, compiled.settings.demo_weights) == ("weighted", cfg.demo_weights())
    loaded, _ = load_program(compiled.save_artifact(tmp_path / "trial.json"))
    assert _texts(loaded.select_demos("Person 3 visited city 3", ["person"])) == _texts(compiled.select_demos("Person 3 visited city 3", ["person"]))
    # Without weights in the settings a weighted trial is refused before anything is compiled.
    with pytest.raises(ValueError, match="needs demo_weights"):
        run_optimizer("labeled", IEProgram("NER", "en"), _trainset(), [], None, 2, "weighted", seed=1)


def test_other_trials_compile_to_programs_without_weights():
    for choice, selection in (("random", "fixed"), ("coverage", "fixed"), ("similar", "similar")):
        cfg = TrialConfig(num_demos=2, demo_choice=choice)
        compiled = run_optimizer("labeled", IEProgram("NER", "en", settings=cfg.settings()), _trainset(), [], None, 2, choice, seed=1)
        assert (compiled.settings.demo_selection, compiled.settings.demo_weights) == (selection, None)
        assert "demo_weights" not in compiled.config()
