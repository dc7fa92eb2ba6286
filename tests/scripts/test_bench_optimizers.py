"""scripts/bench_optimizers.py end to end against the fake endpoint: the equal-budget rules."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
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


BASE = ("zero_shot", "few_shot", "kgopt", "mipro", "bootstrap_rs", "gepa", "kgopt_augmented")  # the ablations: tests below


def test_every_method_reported_within_the_budget_on_the_same_test_records(bench, capsys):
    out = _run(bench, capsys, "--seeds", "2", "--tag", "a", "--methods", ",".join(BASE))
    methods = out["NER/en"]
    assert list(methods) == list(BASE) and set(BASE) < set(bench.METHODS)
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


def test_the_dspy_optimisers_spend_the_budget_as_kgopt_does(bench, capsys):
    """B ends their schedules, not a guess of what bootstrapping costs (which left them 62-116
    calls of 150 on KG/zh under pool-v2). GEPA stops while B can still pay for an iteration up
    to its reflection call; MIPROv2 fails on the fake (it cannot answer the proposal prompts)."""
    _run(bench, capsys, "--seeds", "1", "--tag", "spend", "--methods", "bootstrap_rs,gepa,kgopt")
    rows = {r["method"]: r for r in _rows() if "error" not in r}
    calls = {method: r["calls"] for method, r in rows.items()}
    assert calls["kgopt"] == BUDGET
    assert BUDGET - bench.GEPA_ITERATION_CALLS < calls["gepa"] <= BUDGET
    # BRS spends B, or runs out of candidates first: on the fake's answers most of them repeat
    # an earlier one's prompts, answered from the cache at no call.
    brs = rows["bootstrap_rs"]["notes"]
    assert calls["bootstrap_rs"] == BUDGET or brs["candidates_scored"] == 3 + brs["candidates"] == 3 + BUDGET


def test_a_run_is_reused_only_under_its_methods_latest_rules(bench):
    """A new protocol redoes only the methods whose rules it changed (CHANGED_IN)."""
    def row(method, protocol):
        return {"case": "KG/zh", "method": method, "seed": 0, "protocol": protocol, "test_counts": []}

    assert bench.PROTOCOL == bench.PROTOCOLS[-1] and set(bench.CHANGED_IN.values()) <= set(bench.PROTOCOLS)
    assert bench.still_holds(row("kgopt", "pool-v1")) and bench.still_holds(row("few_shot", "pool-v2"))
    assert not bench.still_holds(row("mipro", "pool-v3")) and bench.still_holds(row("mipro", "pool-v4"))
    assert not bench.still_holds(row("gepa", "pool-v4")) and bench.still_holds(row("gepa", "pool-v5"))
    assert not bench.still_holds(row("kgopt_augmented", "pool-v1")) and not bench.still_holds(row("kgopt", "pool-v0"))
    done = bench.finished_runs([row("gepa", "pool-v2"), row("kgopt", "pool-v2")])
    assert [k[1] for k in done] == ["kgopt"]


def test_kgopt_is_compared_with_each_method_by_a_paired_interval(bench, capsys):
    """Each run keeps its per-record test counts; the table pairs kgopt with each method over the
    test records (each record's counts summed over the seeds both ran; zero-shot's one run stands
    for each of kgopt's seeds), and the interval is recomputable from runs.jsonl."""
    from kgopt.core.stats import RecordCount, paired_bootstrap

    _run(bench, capsys, "--seeds", "2", "--tag", "ci", "--methods", "zero_shot,few_shot,kgopt")
    rows = _rows()
    assert all(len(r["test_counts"]) == 3 for r in rows)
    results = bench.results_of_tag("ci")
    diffs = bench.kgopt_against(results)["NER/en"]
    assert set(diffs) == {"zero_shot", "few_shot"} and all(p.difference.n == 3 and p.seeds == [0, 1] for p in diffs.values())

    def summed(method, times=1):
        out = {}
        for r in rows:
            if r["method"] == method:
                for key, *c in r["test_counts"] * times:
                    out[key] = [a + b for a, b in zip(out.get(key, [0, 0, 0]), c)]
        return [RecordCount(k, *v) for k, v in out.items()]

    assert diffs["few_shot"].difference == paired_bootstrap(summed("few_shot"), summed("kgopt"))
    assert diffs["zero_shot"].difference == paired_bootstrap(summed("zero_shot", times=2), summed("kgopt"))
    assert results["NER/en"]["few_shot"]["kgopt_minus"] == {**diffs["few_shot"].difference.to_json(), "seeds": [0, 1]}
    bench.print_table(results)
    table = capsys.readouterr().out
    assert "| task | kgopt minus | ΔF1 [95% CI], n | seeds paired | verdict |" in table
    d = diffs["few_shot"].difference
    assert f"| NER/en | few_shot | {d.line()} | 0, 1 |" in table
    assert f"not significant at n = {d.n}" in table  # on the fake's answers every interval holds 0


def test_each_run_asks_in_its_own_cache_namespace(bench, capsys):
    first = _run(bench, capsys, "--methods", "kgopt", "--seeds", "1", "--tag", "a")
    again = _run(bench, capsys, "--methods", "kgopt", "--seeds", "1", "--tag", "b", "--no-resume")
    # Identical requests of an earlier run are not free answers for this one: it pays for its calls.
    assert first["NER/en"]["kgopt"]["calls"] == again["NER/en"]["kgopt"]["calls"] == BUDGET
    rows = _rows()
    assert [r["cache_hits"] for r in rows] == [0, 0] and rows[0]["cache_namespace"] != rows[1]["cache_namespace"]


def test_an_identical_program_is_not_asked_the_test_records_twice(bench, capsys):
    """Test answers are shared across methods and seeds (never the budgeted calls). With the pool
    drawn from 6 records of 6 (the same records on both seeds, in another order) few-shot shows
    the same demonstrations on both seeds, so it sends the same test requests and the second
    seed's answers all come from the cache."""
    out = _run(bench, capsys, "--methods", "few_shot", "--seeds", "2", "--tag", "t", "--train-from", "6")
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
    args = SimpleNamespace(budget=BUDGET, data_dir=bench.default_data_dir(), train=2, dev=2, test=3, train_from=None)
    (case,) = bench.parse_cases("NER:en", args)
    allowed = {ex.record.text for ex in bench.training_pool(case, 0)}  # the seed's pool
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
    args = SimpleNamespace(budget=BUDGET, data_dir=None, train=6, dev=2, test=3, train_from=None)
    own, default, test_only = bench.parse_cases("NER:en:8:2,RE:zh,EE:zh::5", args)
    assert [(c.budget, c.test_limit) for c in (own, default, test_only)] == [(8, 2), (BUDGET, 3), (BUDGET, 5)]
    for bad in ("NER:en:lots", "NER", "NER:en:3:4:5:6", "NER:en:3:x"):
        with pytest.raises(SystemExit, match=r"TASK:LANG\[:BUDGET\[:TEST\[:SOURCE\]\]\]"):
            bench.main(["--tasks", bad])
    with pytest.raises(SystemExit, match="no source 'CrossNER_nope' of NER/en; choose all or one of CrossNER_AI"):
        bench.parse_cases("NER:en:::CrossNER_nope", args)


def test_source_all_spreads_the_records_over_every_source(bench, tmp_path):
    """CrossNER_AI alone has 45 test records; NER:en:::all asks 60 from the five domains, as the
    documented full run does, and its runs are kept apart from the one-source runs."""
    args = SimpleNamespace(budget=BUDGET, data_dir=bench.default_data_dir(), train=12, dev=20, test=60, train_from=None)
    spread, one, music = bench.parse_cases("NER:en:::all,NER:en,NER:en:::CrossNER_music", args)
    assert (spread.source, spread.spread, spread.train_limit, spread.dev_limit, spread.test_limit) == (None, 5, 3, 4, 12)
    tested = spread.load("test", spread.test_limit)
    assert len(tested) == 60 and len({ex.record.source for ex in tested}) == 5
    assert len(spread.load("dev", spread.dev_limit)) == 20 and len(bench.training_pool(spread, 0)) == 15
    assert len(one.load("test", one.test_limit)) == 45  # the default source: all it has
    assert [c.key for c in (spread, one, music)] == ["NER/en@all", "NER/en", "NER/en@CrossNER_music"]
    assert bench.parse_cases(bench.DEFAULT_TASKS, args)[0].key == "NER/en@all"
    one_source = bench.parse_cases("KG:zh:::all,KG:zh:::InstructIE,RE:en:::all,NER:en:::CrossNER_AI", args)
    assert [c.key for c in one_source] == ["KG/zh", "KG/zh", "RE/en", "NER/en"]  # the same records: the same case
    odd = SimpleNamespace(**{**vars(args), "test": 61})
    assert bench.parse_cases("NER:en:::all", odd)[0].test_limit == 13  # rounded up: never fewer than asked
    for case in (spread, one, music):  # --from-counts finds each case's counts folder again
        path = bench.counts_path(tmp_path / "counts", case.key, "few_shot", 0)
        bench.bench_compile.write_counts(path, {"few_shot": [bench.RecordCount("CrossNER_AI/1", 1, 2, 3)]})
    assert {r["case"] for r in bench.rows_from_counts(tmp_path / "counts", None, None)} == {"NER/en@all", "NER/en", "NER/en@CrossNER_music"}


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
    if method == "gepa":  # it starts from a pool of gold demonstrations and keeps them
        assert len(program.extract.demos) > bench.DEMOS
    # Both use kgopt's per-input retrieval: the DEMOS most similar to the input, from the pool.
    # (BRS may rightly choose its zero-shot candidate: on the fake's answers every candidate scores 0.)
    shown = program.select_demos(example.text, example.chunk)
    assert program.settings.demo_selection == "similar" and len(shown) == min(bench.DEMOS, len(program.extract.demos))
    assert all(d in list(program.extract.demos) for d in shown)


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
        seen.update(trainset=trainset, valset=valset, lm=lm, num_demos=num_demos, seed=seed, options=options, demo_choice=demo_choice,
                    selection=program.settings.demo_selection)
        return program

    monkeypatch.setattr(type(optimizer), "compile", spy)
    case = bench.Case("NER", "en", "CrossNER_AI", default_data_dir(), 6, 2, 3, BUDGET)
    conn = connect(EndpointConfig(api_base=os.environ["KGOPT_API_BASE"], model="fake"), cache=False, max_calls=BUDGET)
    run = bench.Run(case, conn, 4, tmp_path, case.load("train", 6), case.load("dev", 2), {})
    bench.METHOD_FUNCTIONS[method](run)
    defaults = optimizer.defaults(bench.DEMOS)
    assert set(defaults) <= set(seen["options"]) and (seen["num_demos"], seen["seed"], seen["lm"]) == (bench.DEMOS, 4, conn.lm)
    assert seen["valset"] == run.valset()  # selecting on dev
    assert seen["trainset"] == run.pool() == run.chunks(run.train)  # the whole pool, as every method gets it
    options, v = seen["options"], len(run.valset())
    if method == "mipro":  # its demo sets are fixed sets it chooses among: no per-input retrieval
        assert run.notes == options and (seen["demo_choice"], seen["selection"]) == ("random", "fixed")
        # Its schedule outlasts B: scoring every instruction x demo-set pair once costs more.
        assert set(options) == set(defaults) and options["candidates"] >= defaults["candidates"]
        assert options["candidates"] ** 2 * v >= BUDGET and options["trials"] == BUDGET
    else:  # GEPA keeps its gold demonstrations: shown 3 similar to each input
        assert run.notes == {"max_metric_calls": options["metric_calls"], "demo_selection": "similar"}
        assert (seen["demo_choice"], seen["selection"]) == ("similar", "similar")
        # Its own cap is far past B (a rollout answered from the cache costs no call); the stopper
        # ends it when B could not pay for the next reflection.
        assert options["metric_calls"] == bench.GEPA_ROLLOUTS_PER_CALL * BUDGET >= 20 * BUDGET and set(options) == set(defaults) | {"stop_callbacks"}
        (stop,) = options["stop_callbacks"]
        while not stop(None):  # spend calls until it stops: when fewer than an iteration's are left
            conn.lm(prompt=f"call {conn.lm.requests_sent}")
        assert BUDGET - conn.lm.requests_sent == bench.GEPA_ITERATION_CALLS - 1


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


# --- resuming, the counts files, the shared pool, the ablations -------------------------------------


def test_resume_skips_a_finished_run_and_redoes_a_failed_one(bench, capsys):
    first = _run(bench, capsys, "--methods", "few_shot,mipro", "--seeds", "1", "--tag", "a")
    assert "error" in first["NER/en"]["mipro"] and "error" not in first["NER/en"]["few_shot"]
    shutil.rmtree("benchmarks")  # a reused run writes its counts file again
    again = _run(bench, capsys, "--methods", "few_shot,mipro", "--seeds", "1", "--tag", "b")
    rows = _rows()
    assert [(r["method"], r["tag"]) for r in rows] == [("few_shot", "a"), ("mipro", "a"), ("mipro", "b")]  # mipro failed: tried again
    assert again["NER/en"]["few_shot"] == first["NER/en"]["few_shot"]  # the recorded result, in the table
    assert Path("benchmarks/counts/optimizers/NER_en/few_shot_seed0.jsonl").is_file()
    # Another setting is another run; --no-resume runs a finished one again.
    _run(bench, capsys, "--methods", "few_shot", "--seeds", "1", "--tag", "c", "--test", "2")
    _run(bench, capsys, "--methods", "few_shot", "--seeds", "1", "--tag", "d", "--no-resume")
    assert [(r["method"], r["tag"], r["test"]) for r in _rows()[3:]] == [("few_shot", "c", 2), ("few_shot", "d", 3)]


def test_a_killed_run_leaves_no_record_and_is_redone_from_scratch(bench, capsys, monkeypatch):
    """Killed during its test: no record, no counts file. Redone: a fresh study and cache
    namespace (the killed attempt's trials and answers are not free), its record on a line of
    its own after a torn one."""
    import optuna

    real = bench.evaluate

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        bench.main(["--tasks", "NER:en", "--budget", str(BUDGET), "--train", "6", "--dev", "2", "--test", "3", "--methods", "kgopt",
                    "--seeds", "1", "--tag", "k"])  # fmt: skip
    assert not Path("runs/bench-optimizers/runs.jsonl").exists() and not Path("benchmarks/counts/optimizers/NER_en/kgopt_seed0.jsonl").exists()
    Path("runs/bench-optimizers/runs.jsonl").write_text('{"case": "NER/en", "method": "kg', encoding="utf-8")  # a write cut off
    monkeypatch.setattr(bench, "evaluate", real)
    out = _run(bench, capsys, "--methods", "kgopt", "--seeds", "1", "--tag", "k")["NER/en"]["kgopt"]
    (row,) = bench.read_rows()  # the torn line is skipped
    assert out["calls"] == BUDGET and row["cache_hits"] == 0
    study = optuna.load_study(study_name="NER_en_kgopt_s0_k", storage=bench.storage_url())
    assert sum(t.user_attrs.get("llm_calls", 0) for t in study.trials) <= BUDGET  # this attempt's trials only
    assert Path(row["counts_file"]).is_file()


def _gold_answers(records):
    """A fake model that knows the gold answer of these records: always when shown
    demonstrations, for every other record zero-shot; anything else as the fake answers it."""
    import hashlib

    from kgopt.core.tasks import get_task
    from kgopt.testing.fake_endpoint import oneke_answer

    by_text = {ex.record.text: ex.record for ex in records}

    def answer(request):
        try:
            ins = json.loads(request["messages"][-1]["content"])
            rec = by_text.get(ins["input"])
        except (ValueError, KeyError, TypeError):
            rec = None
        if rec is None:
            return oneke_answer(request)
        demos = len(request["messages"]) > 2
        if demos or hashlib.sha256(rec.text.encode()).digest()[0] % 2:
            return json.dumps(get_task("NER").gold_answer(rec, ins["schema"]), ensure_ascii=False)
        return oneke_answer(request)

    return answer


def test_counts_files_rebuild_the_table_and_its_intervals_without_a_model(bench, capsys, monkeypatch):
    from kgopt.data.readers import load_examples

    test = load_examples("NER", "en", "test", source="CrossNER_AI", limit=6)
    with FakeEndpoint(answer=_gold_answers(test)) as ep:
        monkeypatch.setenv("KGOPT_API_BASE", ep.url)
        live = _run(bench, capsys, "--methods", "zero_shot,few_shot,kgopt", "--seeds", "2", "--test", "6", "--tag", "c")["NER/en"]
        asked = len(ep.requests)
        counts = Path("benchmarks/counts/optimizers/NER_en")
        assert sorted(p.name for p in counts.iterdir()) == ["few_shot_seed0.jsonl", "few_shot_seed1.jsonl", "kgopt_seed0.jsonl",
                                                            "kgopt_seed1.jsonl", "zero_shot_seed0.jsonl"]  # fmt: skip
        lines = [json.loads(line) for line in (counts / "zero_shot_seed0.jsonl").read_text(encoding="utf-8").splitlines()]
        assert {line["run"] for line in lines} == {"zero-shot strict", "zero-shot lenient", "zero-shot constrained"} and len(lines) == 18
        assert set(lines[0]) == {"run", "record", "tp", "pred", "gold"}  # bench_compile's format
        rebuilt = _run(bench, capsys, "--from-counts")["NER/en"]
        assert len(ep.requests) == asked  # no model call
    for row in _rows():  # each run's F1 from its counts is its official test F1
        assert bench.f1_of(row["test_counts"]) == row["test_f1"]
    assert live["kgopt"]["mean"] > live["zero_shot"]["mean"] > 0  # not a table of zeros
    assert list(rebuilt) == list(live) == ["zero_shot", "few_shot", "kgopt"]
    for method, s in live.items():
        same = ("mean", "min", "max", "seeds", "seed_list", "test_records", "way", "ways", "kgopt_minus")
        assert {k: rebuilt[method].get(k) for k in same} == {k: s.get(k) for k in same}, method
    assert live["zero_shot"]["way"] in ("strict", "lenient", "constrained") and live["zero_shot"]["kgopt_minus"]["delta_f1"] > 0
    assert live["zero_shot"]["kgopt_minus"]["resamples"] >= 2000
    assert bench.main(["--from-counts"]) == 0
    table = capsys.readouterr().out
    assert f"| NER/en | zero_shot (strongest: {live['zero_shot']['way']}) |" in table and "ΔF1 " in table and "6 records" in table


def test_from_counts_recomputes_synthetic_runs_exactly(bench, capsys):
    """Rows with known counts: the table from their counts files is the table from the rows."""
    import random

    rng = random.Random(1)

    def counts():
        return [[f"src/{i}", tp, tp + rng.randint(0, 3), tp + rng.randint(0, 3)] for i, tp in enumerate(rng.randint(0, 4) for _ in range(30))]

    rows = []
    for method, seeds in (("kgopt", (0, 1, 2)), ("few_shot", (0, 1, 2)), ("gepa", (1, 2)), ("zero_shot", (0,))):
        for seed in seeds:
            row = {"case": "RE/zh", "method": method, "seed": seed, "test_counts": counts()}
            if method == "zero_shot":
                ways = {"strict": counts(), "lenient": counts(), "constrained": counts()}
                row.update(test_counts_ways=ways, zero_shot_way=bench.strongest_way_of_counts(ways), test_counts=ways[bench.strongest_way_of_counts(ways)])
            rows.append(row)
            path = bench.counts_path(bench.COUNTS, "RE/zh", method, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            bench.save_counts(path, row)
    by_method: dict = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    direct = bench.add_intervals({"RE/zh": {m: bench.summarise(rs) for m, rs in by_method.items()}})["RE/zh"]
    rebuilt = bench.results_from_counts(bench.COUNTS)["RE/zh"]
    assert set(rebuilt) == set(direct)
    for method in direct:
        assert rebuilt[method] == direct[method], method
    assert direct["gepa"]["kgopt_minus"]["seeds"] == [1, 2]  # paired on the seeds both ran
    assert direct["zero_shot"]["kgopt_minus"]["seeds"] == [0, 1, 2] and direct["zero_shot"]["kgopt_minus"]["records"] == 30


def test_the_training_pool_is_the_same_for_every_method_and_differs_across_seeds(bench, capsys, monkeypatch):
    """What each method was handed, caught where it is handed over (each spy then stops the run)."""
    import dspy

    from kgopt.compiler.optimizers import get_optimizer
    from kgopt.compiler.trainset import chunk_examples
    from kgopt.core.tasks import get_task
    from kgopt.data.readers import load_examples

    spec, seen = get_task("NER"), {}

    class Stop(Exception):
        pass

    def caught(method, chunks):
        seen[(method, len([k for k in seen if k[0] == method]))] = [(ex.text, ex.chunk) for ex in chunks]
        raise Stop

    def compile_spy(task, lang, conn, **kw):  # kgopt reads its train split through the pool's layout
        records = load_examples(task, lang, "train", data_dir=kw["data_dir"], source=kw["source"], limit=kw["train_limit"])
        caught("kgopt", chunk_examples(spec, records, spec.split_size))

    def augment_spy(task, lang, conn, **kw):
        records = load_examples(task, lang, "train", data_dir=kw["data_dir"], source=kw["source"], limit=kw["train_limit"])
        caught("kgopt_augmented", chunk_examples(spec, records, spec.split_size))

    monkeypatch.setattr(bench, "run_optimizer", lambda name, program, trainset, *a, **k: caught("few_shot", trainset))
    monkeypatch.setattr(bench, "compile_program", compile_spy)
    monkeypatch.setattr(bench, "augment", augment_spy)
    for name in ("mipro", "gepa"):
        monkeypatch.setattr(type(get_optimizer(name)), "compile", lambda self, program, trainset, *a, _n=name: caught(_n, trainset))
    monkeypatch.setattr(dspy.BootstrapFewShotWithRandomSearch, "compile", lambda self, student, trainset, **k: caught("bootstrap_rs", trainset))
    methods = ("few_shot", "mipro", "bootstrap_rs", "gepa", "kgopt", "kgopt_augmented")
    _run(bench, capsys, "--methods", ",".join(methods), "--seeds", "2", "--train", "4", "--train-from", "40", "--tag", "p")
    assert all("Stop" in r["error"] for r in _rows())
    args = SimpleNamespace(budget=BUDGET, data_dir=bench.default_data_dir(), train=4, dev=2, test=3, train_from=40)
    (case,) = bench.parse_cases("NER:en", args)
    for seed in (0, 1):
        pool = [(ex.text, ex.chunk) for ex in chunk_examples(spec, bench.training_pool(case, seed), spec.split_size)]
        assert pool and all(seen[(m, seed)] == pool for m in methods), seed  # the same list, in the same order
        assert [r["notes"]["train_pool"] for r in _rows() if r["seed"] == seed] == [[bench.record_key(ex) for ex in bench.training_pool(case, seed)]] * len(methods)
    assert {t for t, _ in seen[("kgopt", 0)]} != {t for t, _ in seen[("kgopt", 1)]}  # another seed, other records to choose from
    first40 = {ex.record.text for ex in load_examples("NER", "en", "train", source="CrossNER_AI", limit=40)}
    assert {t for (m, _), chunks in seen.items() for t, _ in chunks} <= first40


def test_the_ablations_compile_with_the_intended_options(bench, capsys, monkeypatch):
    """kgopt and its ablations call the same compile; each changes only its own part."""
    import optuna

    from kgopt.compiler import space, study
    from kgopt.core.tasks import get_task

    seen = {}
    original_suggest = study.suggest

    def space_now(continuous: bool) -> dict:
        trial = optuna.create_study().ask()
        study.suggest(trial, get_task("NER"), ("labeled",), 1, 3, continuous=continuous)  # what a trial of this compile is asked
        return {"temperature": trial.distributions["temperature"], "demo_choice": trial.distributions["demo_choice"].choices}

    def compile_spy(task, lang, conn, **kw):
        seen[kw["study_name"].split("_s0_")[0]] = {**kw, "space": space_now(kw.get("continuous", True)), "max_calls_left": conn.lm.max_calls}
        raise RuntimeError("stop")

    monkeypatch.setattr(bench, "compile_program", compile_spy)
    _run(bench, capsys, "--methods", "kgopt,kgopt_no_halving,kgopt_no_continuous,kgopt_instructzero,kgopt_reflect", "--seeds", "1", "--tag", "x")
    by = {name.removeprefix("NER_en_"): kw for name, kw in seen.items()}
    assert set(by) == {"kgopt", "kgopt_no_halving", "kgopt_no_continuous", "kgopt_instructzero", "kgopt_reflect"}
    assert by["kgopt_reflect"]["reflections"] == bench.REFLECTIONS and "reflections" not in by["kgopt"]
    full = {"temperature": optuna.distributions.FloatDistribution(0.0, 1.0), "demo_choice": tuple(space.DEMO_CHOICES)}
    assert "weighted" in full["demo_choice"]
    discrete = {"temperature": optuna.distributions.CategoricalDistribution(list(bench.DISCRETE_TEMPERATURES)),
                "demo_choice": tuple(c for c in space.DEMO_CHOICES if c != "weighted")}
    assert by["kgopt"]["space"] == full and "halving" not in by["kgopt"] and "instructzero_trials" not in by["kgopt"]  # kgopt's defaults
    assert by["kgopt_no_halving"]["halving"] is False and by["kgopt_no_halving"]["space"] == full
    assert by["kgopt_no_continuous"]["space"] == discrete and by["kgopt_no_continuous"]["continuous"] is False
    assert "halving" not in by["kgopt_no_continuous"] and "continuous" not in by["kgopt"]
    assert by["kgopt_instructzero"]["instructzero_trials"] >= 1 and by["kgopt_instructzero"]["space"] == full
    (iz,) = [r for r in _rows() if r["method"] == "kgopt_instructzero"]
    assert iz["notes"]["instructzero_trials"] == by["kgopt_instructzero"]["instructzero_trials"] <= bench.INSTRUCTZERO_MAX
    ignore = {"halving", "instructzero_trials", "continuous", "reflections", "space", "study_name", "compiled_dir", "out", "data_dir"}
    shared = [{k: v for k, v in kw.items() if k not in ignore} for kw in by.values()]
    assert all(s == shared[0] for s in shared) and shared[0]["max_calls"] == BUDGET and shared[0]["seed"] == 0
    assert study.suggest is original_suggest and "weighted" in space.DEMO_CHOICES  # the library's space, untouched


def test_kgopt_without_the_continuous_part_searches_no_float(bench, capsys):
    """End to end on the fake: every trial of kgopt_no_continuous has a categorical temperature
    and no weighted demonstration choice (so no demo_w_* weights)."""
    import optuna

    out = _run(bench, capsys, "--methods", "kgopt_no_continuous", "--seeds", "1", "--tag", "nc")["NER/en"]["kgopt_no_continuous"]
    assert out["calls"] == BUDGET
    study = optuna.load_study(study_name="NER_en_kgopt_no_continuous_s0_nc", storage=bench.storage_url())
    trials = [t for t in study.trials if "temperature" in t.distributions]
    assert len(trials) >= 2
    for t in trials:
        assert isinstance(t.distributions["temperature"], optuna.distributions.CategoricalDistribution)
        assert "weighted" not in t.distributions["demo_choice"].choices and not any(p.startswith("demo_w_") for p in t.params)


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
