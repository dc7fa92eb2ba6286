"""scripts/bench_optimizers.py end to end against the fake endpoint: the equal-budget rules."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from kgopt.testing.fake_endpoint import FakeEndpoint

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 24


@pytest.fixture()
def bench(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_optimizers", ROOT / "scripts" / "bench_optimizers.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    monkeypatch.chdir(tmp_path)  # runs/bench-optimizers/ goes here
    monkeypatch.setenv("KGOPT_HOME", str(tmp_path / "home"))
    with FakeEndpoint() as ep:
        monkeypatch.setenv("KGOPT_API_BASE", ep.url)
        monkeypatch.setenv("KGOPT_MODEL", "fake")
        module.endpoint = ep  # what the methods sent, for the tests
        yield module


def _run(bench, capsys, *args: str) -> dict:
    argv = ["--tasks", "NER:en", "--budget", str(BUDGET), "--train", "6", "--dev", "2", "--test", "3", "--json", *args]
    assert bench.main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _rows() -> list[dict]:
    return [json.loads(line) for line in Path("runs/bench-optimizers/runs.jsonl").read_text(encoding="utf-8").splitlines()]


def test_every_method_reported_within_the_budget_on_the_same_test_records(bench, capsys):
    out = _run(bench, capsys, "--seeds", "2", "--tag", "a")
    methods = out["NER/en"]
    assert list(methods) == list(bench.METHODS)
    for name, s in methods.items():
        if "error" in s:  # reported with its error, not dropped (the fake cannot answer DSPy's proposal prompts)
            assert s["error"] and s["seeds"] >= 1
            continue
        assert s["calls"] <= BUDGET, name
        assert s["test_records"] == 3 and s["min"] <= s["mean"] <= s["max"]
    assert "error" in methods["mipro"]  # its instruction proposer needs a model that answers in DSPy's format
    assert methods["zero_shot"]["calls"] == 0 and methods["zero_shot"]["seeds"] == 1  # deterministic: one run
    assert methods["kgopt"]["seeds"] == 2 and methods["kgopt"]["calls"] == BUDGET  # the study spends what it is given
    a = methods["kgopt_augmented"]["augmentation"]
    assert a["asked"] > 0 and a["received"] <= a["asked"]
    rows = _rows()
    for r in rows:  # augmentation counts in the budget: the whole method stays within it
        if "error" not in r:
            assert r["calls"] <= BUDGET and r["test_calls"] + r["test_cache_hits"] >= 1
            assert r["notes"]["budget_spent"] == (r["method"] in ("kgopt", "kgopt_augmented") or r["calls"] == BUDGET)
    assert {r["notes"]["study"] for r in rows if r["method"] == "kgopt"} == {"NER_en_kgopt_s0_a", "NER_en_kgopt_s1_a"}
    # A run cut short is summarised from its log, with the same figures.
    assert _run(bench, capsys, "--report", "a") == out


def test_kgopt_is_compared_with_each_method_by_a_paired_interval(bench, capsys):
    """Each run keeps its per-record test counts; the table pairs kgopt with each method over the
    test records (counts summed over seeds), and the interval is recomputable from runs.jsonl."""
    from kgopt.core.stats import RecordCount, paired_bootstrap

    _run(bench, capsys, "--seeds", "2", "--tag", "ci", "--methods", "zero_shot,few_shot,kgopt")
    rows = _rows()
    assert all(len(r["test_counts"]) == 3 for r in rows)
    results = bench.results_of_tag("ci")
    diffs = bench.kgopt_against(results)["NER/en"]
    assert set(diffs) == {"zero_shot", "few_shot"} and all(d.n == 3 for d in diffs.values())

    def summed(method):
        out = {}
        for r in rows:
            if r["method"] == method:
                for key, *c in r["test_counts"]:
                    out[key] = [a + b for a, b in zip(out.get(key, [0, 0, 0]), c)]
        return [RecordCount(k, *v) for k, v in out.items()]

    assert diffs["few_shot"] == paired_bootstrap(summed("few_shot"), summed("kgopt"))
    bench.print_table(results)
    table = capsys.readouterr().out
    assert "| NER/en | kgopt minus | ΔF1 [95% CI] | records | verdict |" not in table  # header row is generic
    assert "| task | kgopt minus | ΔF1 [95% CI] | records | verdict |" in table
    assert f"| NER/en | few_shot | {diffs['few_shot'].delta:+.2f} [" in table


def test_each_run_asks_in_its_own_cache_namespace(bench, capsys):
    first = _run(bench, capsys, "--methods", "kgopt", "--seeds", "1", "--tag", "a")
    again = _run(bench, capsys, "--methods", "kgopt", "--seeds", "1", "--tag", "b")
    # Identical requests of an earlier run are not free answers for this one: it pays for its calls.
    assert first["NER/en"]["kgopt"]["calls"] == again["NER/en"]["kgopt"]["calls"] == BUDGET
    assert [r["cache_hits"] for r in _rows()] == [0, 0]


def test_an_identical_program_is_not_asked_the_test_records_twice(bench, capsys):
    """Test answers are shared across methods and seeds (never the budgeted calls). On these
    records few-shot shows the same demonstrations on both seeds, so it sends the same test
    requests and the second seed's answers all come from the cache."""
    out = _run(bench, capsys, "--methods", "few_shot", "--seeds", "2", "--tag", "t")
    first, second = _rows()
    assert first["test_calls"] > 0 and first["test_cache_hits"] == 0
    assert (second["test_calls"], second["test_cache_hits"]) == (0, first["test_calls"])
    assert second["test_f1"] == first["test_f1"] and out["NER/en"]["few_shot"]["seeds"] == 2


def test_a_report_over_several_tags_takes_a_rerun_seed_from_the_later_tag(bench, capsys):
    _run(bench, capsys, "--methods", "zero_shot,kgopt", "--seeds", "1", "--tag", "old")
    _run(bench, capsys, "--tasks", "NER:en:8", "--methods", "kgopt", "--seeds", "1", "--tag", "fixed")  # told apart by budget
    report = _run(bench, capsys, "--report", "old,fixed")["NER/en"]
    assert report["kgopt"]["seeds"] == 1 and report["zero_shot"]["seeds"] == 1  # not two kgopt seed-0 rows
    assert (report["kgopt"]["budget"], report["kgopt"]["calls"]) == (8, 8)
    assert _run(bench, capsys, "--report", "fixed,old")["NER/en"]["kgopt"]["budget"] == BUDGET


def test_augmentation_learns_from_the_same_train_records_as_every_method(bench, capsys):
    _run(bench, capsys, "--methods", "kgopt_augmented", "--seeds", "1", "--train", "2", "--tag", "a")
    args = SimpleNamespace(budget=BUDGET, data_dir=bench.default_data_dir(), train=2, dev=2, test=3)
    (case,) = bench.parse_cases("NER:en", args)
    allowed = {ex.record.text for ex in case.load("train", 2)}
    everything = {ex.record.text for ex in case.load("train", None)}
    asked = [r["messages"][0]["content"] for r in bench.endpoint.requests if "You create training data" in r["messages"][0]["content"]]
    shown = {json.loads(line)["text"] for p in asked for line in p.split("Real samples")[1].splitlines() if line.startswith('{"text"')}
    assert asked and shown and shown <= allowed and len(everything) > len(allowed)


def test_first_seed_numbers_the_seeds_asked_for(bench, capsys):
    _run(bench, capsys, "--methods", "few_shot", "--first-seed", "1", "--seeds", "2", "--tag", "a")
    assert [r["seed"] for r in _rows()] == [1, 2]


def test_a_task_may_have_its_own_budget(bench, capsys):
    out = _run(bench, capsys, "--tasks", "NER:en:8", "--methods", "zero_shot,kgopt", "--seeds", "1", "--tag", "own")
    kgopt = out["NER/en"]["kgopt"]
    assert (kgopt["budget"], kgopt["calls"]) == (8, 8)  # not --budget's 24
    assert out["NER/en"]["zero_shot"]["budget"] == 8
    for bad in ("NER:en:lots", "NER", "NER:en:3:4"):
        with pytest.raises(SystemExit, match="TASK:LANG:BUDGET"):
            bench.main(["--tasks", bad])


def test_unknown_method_is_refused(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--methods", "nope"])
    assert "unknown method" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["bootstrap_rs", "gepa"])
def test_dspy_optimisers_programs_show_the_demonstrations_they_attach(bench, method, tmp_path):
    """A DSPy optimiser's demos are shown at call time (an IEProgram shows none unless told)."""
    from kgopt.clients.config import EndpointConfig
    from kgopt.clients.lm import connect
    from kgopt.data.readers import default_data_dir

    case = bench.Case("NER", "en", "CrossNER_AI", default_data_dir(), 6, 2, 3, BUDGET)
    conn = connect(EndpointConfig(api_base=os.environ["KGOPT_API_BASE"], model="fake"), cache=False, max_calls=BUDGET)
    run = bench.Run(case, conn, 0, tmp_path, case.load("train", 6), case.load("dev", 2), {})
    program = bench.METHOD_FUNCTIONS[method](run)
    example = run.valset()[0]
    if method == "gepa":  # it starts from gold demonstrations and keeps them
        assert program.extract.demos
    # (BRS may rightly choose its zero-shot candidate: on the fake's answers every candidate scores 0.)
    assert program.select_demos(example.text, example.chunk) == list(program.extract.demos)[: bench.DEMOS]


@pytest.mark.parametrize("method", ["mipro", "gepa"])
def test_mipro_and_gepa_run_as_kgopts_trials_run_them(bench, method, tmp_path, monkeypatch):
    """Their DSPy settings are the registry's (kgopt.compiler.optimizers), only the budget-bound
    one scaled to B: the benchmark keeps no copy of them that could drift."""
    from kgopt.clients.config import EndpointConfig
    from kgopt.clients.lm import connect
    from kgopt.compiler.optimizers import get_optimizer
    from kgopt.data.readers import default_data_dir

    optimizer, seen = get_optimizer(method), {}

    def spy(self, program, trainset, valset, lm, num_demos, demo_choice, seed, options):
        seen.update(trainset=trainset, valset=valset, lm=lm, num_demos=num_demos, seed=seed, options=options)
        return program

    monkeypatch.setattr(type(optimizer), "compile", spy)
    case = bench.Case("NER", "en", "CrossNER_AI", default_data_dir(), 6, 2, 3, BUDGET)
    conn = connect(EndpointConfig(api_base=os.environ["KGOPT_API_BASE"], model="fake"), cache=False, max_calls=BUDGET)
    run = bench.Run(case, conn, 4, tmp_path, case.load("train", 6), case.load("dev", 2), {})
    bench.METHOD_FUNCTIONS[method](run)
    defaults = optimizer.defaults(bench.DEMOS)
    assert set(seen["options"]) == set(defaults) and (seen["num_demos"], seen["seed"], seen["lm"]) == (bench.DEMOS, 4, conn.lm)
    assert seen["valset"] == run.valset()  # selecting on dev
    scaled = "trials" if method == "mipro" else "metric_calls"
    assert {k: v for k, v in seen["options"].items() if k != scaled} == {k: v for k, v in defaults.items() if k != scaled}
    if method == "mipro":
        assert run.notes == seen["options"] and seen["trainset"] == run.chunks(run.train)[: bench.BOOTSTRAP_FROM]
    else:
        assert run.notes == {"max_metric_calls": seen["options"]["metric_calls"]} and seen["trainset"] == run.chunks(run.train)


def test_score_warm_starts_scores_a_studys_trial_0(bench, capsys):
    """scripts/score_warm_starts.py on a study the benchmark just ran; a missing study is a clear error."""
    _run(bench, capsys, "--methods", "kgopt", "--seeds", "1", "--tag", "w")
    spec = importlib.util.spec_from_file_location("score_warm_starts", ROOT / "scripts" / "score_warm_starts.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = ["--task", "NER", "--lang", "en", "--source", "CrossNER_AI", "--test", "3"]
    assert script.main(["NER_en_kgopt_s0_w", *args]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["trial"] == 0 and row["params"]["num_demos"] == 3 and row["calls"] > 0 and 0 <= row["test_f1"] <= 100
    from kgopt.errors import KgoptError

    with pytest.raises(KgoptError, match="nope"):
        script.main(["nope", *args])


@pytest.mark.llm
def test_the_benchmark_on_the_embedded_model(monkeypatch, tmp_path, capsys):
    """End to end on the real embedded Qwen (a tiny slice): zero-shot, few-shot and kgopt at one
    budget, scored on the same test record; kgopt's written program never scores below zero-shot
    on dev, and a tie with zero-shot writes the few-shot warm start."""
    spec = importlib.util.spec_from_file_location("bench_optimizers", ROOT / "scripts" / "bench_optimizers.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)
    spec.loader.exec_module(bench)
    monkeypatch.chdir(tmp_path)
    budget = 10
    argv = ["--tasks", "NER:en", "--budget", str(budget), "--train", "4", "--dev", "1", "--test", "1", "--seeds", "1",
            "--methods", "zero_shot,few_shot,kgopt", "--tag", "llm", "--json"]  # fmt: skip
    assert bench.main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["NER/en"]
    assert set(out) == {"zero_shot", "few_shot", "kgopt"} and not any("error" in s for s in out.values()), out
    assert all(s["test_records"] == 1 and 0 <= s["mean"] <= 100 for s in out.values())
    assert out["zero_shot"]["calls"] == out["few_shot"]["calls"] == 0 and 0 < out["kgopt"]["calls"] <= budget
    (row,) = [r for r in _rows() if r["method"] == "kgopt"]
    assert row["model"].startswith("qwen2.5-coder") and row["test_calls"] + row["test_cache_hits"] > 0
    # The choice, recomputed from the study's own record of its trials.
    import optuna

    notes = row["notes"]
    study = optuna.load_study(study_name=notes["study"], storage=f"sqlite:///{tmp_path / bench.OUT / 'studies.sqlite3'}")
    zero = study.user_attrs["baseline_dev"]["f1"]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max((t.value for t in complete), default=None)
    first = study.trials[0]  # the few-shot warm start
    assert notes["zero_shot_dev_f1"] == zero and first.state == optuna.trial.TrialState.COMPLETE
    assert (first.params["optimizer"], first.params["num_demos"], first.params["demo_choice"]) == ("labeled", 3, "similar")
    if best is not None and best > zero:
        assert (notes["chosen"], notes["dev_f1"]) == ("trial", best)
    elif first.value == zero:
        assert (notes["chosen"], notes["dev_f1"]) == ("warm start", zero)
    else:
        assert (notes["chosen"], notes["dev_f1"]) == ("baseline", zero)
