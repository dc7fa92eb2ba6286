"""Benchmark: kgopt compile against plain DSPy optimisers at the same LLM-call budget.

Every method gets the same model (the configured endpoint, else the embedded Qwen), the same
train and dev records, the same `IEProgram` and chunk metric, and the same budget B of LLM
requests that reach the model (a hard cap: `EndpointLM.max_calls`). Each (method, seed) asks
under its own response-cache namespace, so no method gets another's answers for free. Every
resulting program is then scored on the test split, which no method sees (test calls are
counted apart from B). The test answers of a task are cached in one namespace shared by every
method, seed and tag: a program asks the test records exactly what an identical program asked
before (e.g. kgopt writing few-shot's program, or a seed-independent program on a later seed), and the answer is
the one a deterministic server would give again, so it is not asked twice.

Methods:
- zero_shot:     the task's OneKE instruction, no demonstrations (no calls before the test).
- few_shot:      LabeledFewShot, 3 demonstrations similar to each input, default split.
- mipro:         DSPy MIPROv2 (instruction proposals x bootstrapped demo sets, its own TPE
                 search), set up as kgopt's mipro trials are, trials scaled to B, selecting on
                 the dev records.
- bootstrap_rs:  DSPy BootstrapFewShotWithRandomSearch, candidates scaled to B, selecting on dev.
- gepa:          DSPy GEPA (reflective instruction evolution; the same model reflects), set
                 up as kgopt's gepa trials are, max_metric_calls scaled to B, from 3 gold
                 demonstrations, selecting on dev.
- kgopt:         `kgopt compile --max-calls B` (the study stops when B is spent).
- kgopt_augmented: `kgopt augment --train-limit` on the same train records as the rest (a quarter of B at most), then
                 `kgopt compile` on train + accepted samples with what is left of B.

A method that fails (its error, e.g. a small model that cannot follow DSPy's proposal
prompts, or a DSPy optimiser that needed more than B calls) is reported with its error.

    .venv/bin/python scripts/bench_optimizers.py --tasks NER:en,RE:zh --budget 40 --seeds 3
    .venv/bin/python scripts/bench_optimizers.py --tasks NER:en:30,KG:zh:20 --seeds 3     # a budget per task
    .venv/bin/python scripts/bench_optimizers.py --tasks NER:en --budget 40 --json

Prints a markdown table (mean/min/max held-out F1 over seeds, budget, calls, tokens, seconds) or, with
--json, one object {"NER/en": {"zero_shot": {"mean", "min", "max", "calls", ...}, ...}}; every
run is appended as JSON to runs/bench-optimizers/runs.jsonl as it finishes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import dspy
import ujson
from loguru import logger
from tqdm import tqdm

from kgopt.augmentation import augment
from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import Connection, connect
from kgopt.compiler import compile_program
from kgopt.compiler.optimizers import get_optimizer, run_optimizer
from kgopt.compiler.trainset import chunk_examples, make_metric
from kgopt.core.stats import RecordCount, paired_bootstrap
from kgopt.core.tasks import get_task
from kgopt.data.readers import default_data_dir, load_examples
from kgopt.errors import BudgetExceeded
from kgopt.evaluation import evaluate
from kgopt.program import IEProgram, ProgramSettings, load_program

METHODS = ("zero_shot", "few_shot", "kgopt", "mipro", "bootstrap_rs", "gepa", "kgopt_augmented")
DETERMINISTIC = ("zero_shot",)  # the same program and answers whatever the seed: run once
DEMOS = 3  # the obvious few-shot setting, and the demo cap of every method
BOOTSTRAP_FROM = 2 * DEMOS  # training chunks DSPy's bootstrapping may run the model on (it fits the budget)
SOURCES = {"NER/en": "CrossNER_AI", "RE/zh": "DuIE2.0", "EE/zh": "FewFC", "RE/en": "CoNLL2004", "EE/en": "PHEE", "NER/zh": "WeiboNER"}
OUT = Path("runs/bench-optimizers")


@dataclass
class Case:
    """One task/language and the records every method shares."""

    task: str
    lang: str
    source: str | None
    data_dir: Path
    train_limit: int
    dev_limit: int
    test_limit: int
    budget: int  # LLM requests each method may send before the test

    @property
    def key(self) -> str:
        return f"{self.task}/{self.lang}"

    def load(self, split: str, limit: int):
        return load_examples(self.task, self.lang, split, data_dir=self.data_dir, source=self.source, limit=limit)


@dataclass
class Run:
    """What a method gets: the records, a connection capped at the budget, a seed, a scratch folder."""

    case: Case
    conn: Connection
    seed: int
    scratch: Path
    train: list
    dev: list
    notes: dict[str, Any]

    @property
    def budget(self) -> int:
        return self.case.budget

    @property
    def spec(self):
        return get_task(self.case.task)

    def chunks(self, records, positive_only: bool = True) -> list[dspy.Example]:
        return chunk_examples(self.spec, records, self.spec.split_size, positive_only)

    def valset(self) -> list[dspy.Example]:
        """Every dev chunk, with labels or not: what kgopt's record-level dev score sees."""
        return self.chunks(self.dev, positive_only=False)

    def student(self) -> IEProgram:
        """The program DSPy's optimisers start from. It shows every demonstration they attach (up
        to DEMOS, in their order), as a DSPy predictor does; an IEProgram shows none by default."""
        program = IEProgram(self.case.task, self.case.lang, settings=ProgramSettings(num_demos=DEMOS, demo_selection="fixed"))
        program.set_lm(self.conn.lm)
        return program


# --- methods: each returns the program to test --------------------------------------------------


def zero_shot(run: Run) -> IEProgram:
    return run.student()  # no demonstrations attached


def few_shot(run: Run) -> IEProgram:
    program = IEProgram(run.case.task, run.case.lang, settings=ProgramSettings(num_demos=DEMOS, demo_selection="similar"))
    return run_optimizer("labeled", program, run.chunks(run.train), [], run.conn.lm, DEMOS, "similar", run.seed)


def mipro(run: Run) -> IEProgram:
    trainset, valset = run.chunks(run.train)[:BOOTSTRAP_FROM], run.valset()
    optimizer = get_optimizer("mipro")  # as a kgopt trial runs it, with its trials scaled to B
    options = optimizer.defaults(DEMOS)
    # Calls: its bootstrapped demo sets (all but the zero-shot and labeled-only ones), about one
    # proposal per candidate, then the default program and each trial over dev.
    setup = (options["candidates"] - 2) * len(trainset) + options["candidates"]
    options["trials"] = max(1, (run.budget - setup) // max(1, len(valset)) - 1)
    run.notes.update(options)
    with dspy.context(lm=run.conn.lm):
        return optimizer.compile(run.student(), trainset, valset, run.conn.lm, DEMOS, "random", run.seed, options)


def bootstrap_rs(run: Run) -> IEProgram:
    trainset, valset = run.chunks(run.train)[:BOOTSTRAP_FROM], run.valset()
    # Calls: 3 fixed candidates (zero-shot, labeled only, unshuffled bootstrap) and C random ones,
    # each scored over dev; C + 1 of them bootstrap (up to |trainset| tries each).
    t, v = len(trainset), max(1, len(valset))
    candidates = max(1, (run.budget - 3 * v - t) // (v + t))
    run.notes.update(candidates=candidates)
    tele = dspy.BootstrapFewShotWithRandomSearch(
        metric=make_metric(run.spec), max_bootstrapped_demos=DEMOS, max_labeled_demos=DEMOS, num_candidate_programs=candidates,
        num_threads=1, max_errors=10_000,
    )  # fmt: skip
    with dspy.context(lm=run.conn.lm):
        return tele.compile(run.student(), trainset=trainset, valset=valset)


def gepa(run: Run) -> IEProgram:
    trainset, valset = run.chunks(run.train), run.valset()
    optimizer = get_optimizer("gepa")  # as a kgopt trial runs it, from DEMOS gold demonstrations
    options = optimizer.defaults(DEMOS)
    options["metric_calls"] = max(len(valset) + 2, (3 * run.budget) // 4)  # the rest is for reflection calls
    run.notes.update(max_metric_calls=options["metric_calls"])
    with dspy.context(lm=run.conn.lm):
        return optimizer.compile(run.student(), trainset, valset, run.conn.lm, DEMOS, "random", run.seed, options)


def _compile(run: Run, budget: int, augmented_dir: Path | None) -> IEProgram:
    c = run.case
    res = compile_program(
        c.task, c.lang, run.conn, source=c.source, trials=1000, max_calls=budget, data_dir=c.data_dir, augmented=augmented_dir is not None,
        augmented_dir=augmented_dir, train_limit=c.train_limit, dev_limit=c.dev_limit, max_demos=DEMOS, seed=run.seed,
        storage=f"sqlite:///{(OUT / 'studies.sqlite3').resolve()}", study_name=f"{run.scratch.name}", compiled_dir=run.scratch,
        out=run.scratch / "program.json",
    )  # fmt: skip
    m = res.manifest
    run.notes.update(study=res.study_name, trials=res.trials_run, chosen=m["chosen"], dev_f1=m["dev"]["f1"], zero_shot_dev_f1=m["baseline_dev"]["f1"])
    program, _ = load_program(res.path, task=c.task, lang=c.lang)
    return program


def kgopt(run: Run) -> IEProgram:
    return _compile(run, run.budget, None)


def kgopt_augmented(run: Run) -> IEProgram:
    c, lm = run.case, run.conn.lm
    aug_dir = run.scratch / "augmented"
    lm.max_calls = run.budget // 4  # augmentation's share; what it does not use goes to the compile
    try:
        # It learns from the same train records as every other method, no more.
        augment(c.task, c.lang, run.conn, source=c.source, per_label=2, seed=run.seed, data_dir=c.data_dir, out_dir=aug_dir,
                max_labels=max(1, run.budget // 4), train_limit=c.train_limit)
    except BudgetExceeded:
        run.notes["augmentation_stopped"] = "its share of the budget was spent (what was accepted is kept)"
    for path in sorted((aug_dir / "reports").glob("*.json")):  # the yield, written even when the budget stopped it
        rep = ujson.loads(path.read_text(encoding="utf-8"))
        run.notes["augmentation"] = {k: rep.get(k) for k in ("asked", "received", "accepted", "rejected", "missing")}
    left = run.budget - lm.requests_sent
    lm.max_calls = None
    return _compile(run, left, aug_dir)


METHOD_FUNCTIONS: dict[str, Callable[[Run], IEProgram]] = {
    "zero_shot": zero_shot, "few_shot": few_shot, "mipro": mipro, "bootstrap_rs": bootstrap_rs, "gepa": gepa, "kgopt": kgopt,
    "kgopt_augmented": kgopt_augmented,
}  # fmt: skip


# --- one run, one case, the table ---------------------------------------------------------------


def run_method(case: Case, method: str, seed: int, tag: str, config) -> dict[str, Any]:
    """One method on one case with one seed: optimise within the case's budget, then test."""
    budget = case.budget
    name = f"{case.task}_{case.lang}_{method}_s{seed}_{tag}"
    conn = connect(config, cache_namespace=f"bench-optimizers/{name}", max_calls=budget)
    scratch = OUT / "runs" / name
    scratch.mkdir(parents=True, exist_ok=True)
    run = Run(case, conn, seed, scratch, case.load("train", case.train_limit), case.load("dev", case.dev_limit), {})
    row: dict[str, Any] = {"case": case.key, "method": method, "seed": seed, "budget": budget, "tag": tag, "model": conn.model}
    started = time.monotonic()
    try:
        with conn.lm.usage.track() as spent:
            program = METHOD_FUNCTIONS[method](run)
        # DSPy's optimisers score a refused call as a miss and go on, so say when the budget ran out.
        run.notes["budget_spent"] = conn.lm.requests_sent >= budget
        used = spent.counts()
        row.update(calls=used["calls"], tokens=used["total_tokens"], cache_hits=used["cache_hits"], seconds=round(time.monotonic() - started, 1))
        tester = connect(config, cache_namespace=f"bench-optimizers/test/{case.key}")  # no cap: the test is not part of B
        program.set_lm(tester.lm)
        with tester.lm.usage.track() as tested:
            ev = evaluate(case.task, case.lang, tester, split="test", source=case.source, limit=case.test_limit, data_dir=case.data_dir,
                          program=program, out_dir=scratch / "test")
        t = tested.counts()
        row.update(test_f1=ev.report.total.headline_f1(), test_records=ev.report.total.instances, test_calls=t["calls"], test_cache_hits=t["cache_hits"])
        # Per record: matched, predicted, gold (headline level), so intervals can be recomputed from runs.jsonl.
        row["test_counts"] = [[c.key, c.tp, c.pred, c.gold] for c in ev.report.records]
        ccks = getattr(ev.report, "ccks", None)
        if ccks:
            row["test_ccks"] = ccks["score"]
    except Exception as exc:  # reported, never dropped
        row.update(error=f"{type(exc).__name__}: {str(exc)[:300]}", seconds=round(time.monotonic() - started, 1), calls=conn.lm.requests_sent)
        logger.debug(traceback.format_exc())
    row["notes"] = run.notes
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "runs.jsonl", "a", encoding="utf-8") as fh:
        fh.write(ujson.dumps(row, ensure_ascii=False) + "\n")
    logger.info("{} {} seed {}: {}", case.key, method, seed, {k: row.get(k) for k in ("test_f1", "calls", "seconds", "error")})
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean/min/max test F1 over a method's seeds, with its calls, tokens and seconds (means)."""
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return {"error": rows[0]["error"] if rows else "not run", "seeds": len(rows), "budget": rows[0]["budget"] if rows else None}
    f1 = [r["test_f1"] for r in ok]
    out = {
        "mean": round(statistics.mean(f1), 2), "min": round(min(f1), 2), "max": round(max(f1), 2), "seeds": len(ok),
        "calls": round(statistics.mean(r["calls"] for r in ok), 1), "tokens": round(statistics.mean(r["tokens"] for r in ok)),
        "seconds": round(statistics.mean(r["seconds"] for r in ok), 1), "test_records": ok[0]["test_records"], "budget": ok[0]["budget"],
    }  # fmt: skip
    if len(ok) < len(rows):
        out["failed_seeds"] = [r["error"] for r in rows if "error" in r]
    if all("test_counts" in r for r in ok):  # summed over seeds, per test record (for paired intervals)
        counts: dict[str, list[int]] = {}
        for r in ok:
            for key, tp, pred, gold in r["test_counts"]:
                c = counts.setdefault(key, [0, 0, 0])
                c[0], c[1], c[2] = c[0] + tp, c[1] + pred, c[2] + gold
        out["record_counts"] = counts
    yields = [r["notes"]["augmentation"] for r in rows if r.get("notes", {}).get("augmentation")]
    if yields:  # summed over seeds
        out["augmentation"] = {k: sum(y.get(k) or 0 for y in yields) for k in ("asked", "received", "accepted", "missing")}
        out["augmentation"]["rejected"] = {k: sum((y.get("rejected") or {}).get(k, 0) for y in yields) for k in yields[0].get("rejected") or {}}
    return out


def parse_cases(spec: str, args) -> list[Case]:
    """``TASK:LANG[:BUDGET],...``: a task without its own budget gets ``--budget``."""
    cases = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        task, _, rest = item.partition(":")
        lang, _, budget_text = rest.partition(":")
        if not lang or (budget_text and not budget_text.isdigit()):
            raise SystemExit(f"--tasks: {item!r} is not TASK:LANG or TASK:LANG:BUDGET (BUDGET a whole number of calls)")
        key = f"{get_task(task).name}/{lang}"
        source = None if get_task(task).asks_topics else SOURCES.get(key)
        budget = int(budget_text) if budget_text else args.budget
        cases.append(Case(get_task(task).name, lang, source, args.data_dir, args.train, args.dev, args.test, budget))
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="NER:en,RE:zh,EE:zh,KG:zh", help="TASK:LANG[:BUDGET],... (default: %(default)s)")
    ap.add_argument("--budget", type=int, default=60, help="LLM requests each method may send before the test, for a task without its own (default: %(default)s)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per method, numbered from --first-seed (default: %(default)s)")
    ap.add_argument("--first-seed", type=int, default=0, help="number the seeds from this one (to add seeds to a run of the same --tag)")
    ap.add_argument("--methods", default=",".join(METHODS), help="which methods (default: all)")
    ap.add_argument("--data-dir", type=Path, default=None, help="data root (train, dev and the test split); default: the bundled data")
    ap.add_argument("--train", type=int, default=12, help="train records per source (default: %(default)s)")
    ap.add_argument("--dev", type=int, default=4, help="dev records per source (default: %(default)s)")
    ap.add_argument("--test", type=int, default=8, help="test records per source (default: %(default)s)")
    ap.add_argument("--tag", default=time.strftime("%Y%m%d-%H%M%S"), help="names this run's cache namespaces and studies (default: now)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--report", metavar="TAGS", help="run nothing: print the table of the runs of these tags (comma-separated) in runs.jsonl; "
                    "where two tags have a row for the same task, method and seed, the later-listed tag's is used")
    args = ap.parse_args(argv)
    if args.report:
        print_results(results_of_tag(args.report), args)
        return 0
    args.data_dir = args.data_dir or default_data_dir()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_FUNCTIONS]
    if unknown:
        ap.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    logger.remove()
    logger.add(sys.stderr, level="INFO")
    config = resolve_endpoint()
    cases = parse_cases(args.tasks, args)
    # Per task, seeds outside methods: a cut-short run still has every method's first seeds.
    plan = [(case, seed, m) for case in cases for seed in range(args.first_seed, args.first_seed + args.seeds) for m in methods if seed == 0 or m not in DETERMINISTIC]
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {case.key: {m: [] for m in methods} for case in cases}
    with tqdm(plan, desc="bench", unit="run", dynamic_ncols=True) as bar:
        for case, seed, method in bar:
            bar.set_postfix_str(f"{case.key} {method} seed {seed}")
            rows[case.key][method].append(run_method(case, method, seed, args.tag, config))
    results = {key: {m: summarise(r) for m, r in by_method.items() if r} for key, by_method in rows.items()}
    if args.first_seed:  # the earlier seeds are in the log
        results = results_of_tag(args.tag)
    print_results(results, args)
    return 0


def results_of_tag(tags: str) -> dict[str, dict[str, Any]]:
    """The summary of every finished run of the tags (comma-separated), as main() prints it."""
    order = {t: i for i, t in enumerate(tags.split(","))}
    # One row per (case, method, seed): a later-listed tag's row replaces an earlier one's (a
    # method re-run after a fix), and within a tag the later line does.
    latest: dict[tuple, tuple[int, dict]] = {}
    for line in (OUT / "runs.jsonl").read_text(encoding="utf-8").splitlines():
        r = ujson.loads(line)
        rank = order.get(r.get("tag"))
        if rank is not None:
            key = (r["case"], r["method"], r["seed"])
            if key not in latest or rank >= latest[key][0]:
                latest[key] = (rank, r)
    rows: dict[str, dict[str, list]] = {}
    for _, r in latest.values():
        rows.setdefault(r["case"], {}).setdefault(r["method"], []).append(r)
    return {case: {m: summarise(rs) for m, rs in by_method.items()} for case, by_method in rows.items()}


def print_results(results: dict[str, dict[str, Any]], args) -> None:
    if args.json:
        print(ujson.dumps(results, ensure_ascii=False))
    else:
        print_table(results)


def kgopt_against(results: dict[str, dict[str, Any]], reference: str = "kgopt") -> dict[str, dict[str, Any]]:
    """Per case, ``reference`` against every other method: F1(reference) - F1(method), paired over
    the test records (each record's counts summed over the seeds each ran), with its 95% interval."""
    out: dict[str, dict[str, Any]] = {}
    for key, methods in results.items():
        ref = methods.get(reference, {}).get("record_counts")
        if ref is None:
            continue
        for method, s in methods.items():
            other = s.get("record_counts")
            if method == reference or other is None or set(other) != set(ref):
                continue
            d = paired_bootstrap([RecordCount(k, *v) for k, v in other.items()], [RecordCount(k, *v) for k, v in ref.items()])
            out.setdefault(key, {})[method] = d
    return out


def print_intervals(results: dict[str, dict[str, Any]]) -> None:
    diffs = kgopt_against(results)
    if not diffs:
        return
    print("\n| task | kgopt minus | ΔF1 [95% CI] | records | verdict |")
    print("|---|---|---|---|---|")
    for key, by_method in diffs.items():
        for method, d in by_method.items():
            verdict = ("kgopt higher" if d.low > 0 else "kgopt lower") if d.significant else f"not significant at n = {d.n}"
            print(f"| {key} | {method} | {d.delta:+.2f} [{d.low:+.2f}, {d.high:+.2f}] | {d.n} | {verdict} |")


def print_table(results: dict[str, dict[str, Any]]) -> None:
    print("| task | method | held-out F1 mean | min | max | seeds | budget | calls | tokens | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, methods in results.items():
        for method, s in methods.items():
            if "error" in s:
                print(f"| {key} | {method} | failed: {s['error']} | | | {s['seeds']} | {s['budget']} | | | |")
            else:
                print(f"| {key} | {method} | {s['mean']:.2f} | {s['min']:.2f} | {s['max']:.2f} | {s['seeds']} | {s['budget']} | {s['calls']} | {s['tokens']} | {s['seconds']} |")
    print_intervals(results)
    for key, methods in results.items():
        for method, s in methods.items():
            if "augmentation" in s:
                a = s["augmentation"]
                rejected = ", ".join(f"{k} {v}" for k, v in a["rejected"].items() if v) or "none"
                print(f"\n{key} {method}, augmentation over all seeds: asked {a['asked']}, received {a['received']}, accepted {a['accepted']}; rejected: {rejected}")


if __name__ == "__main__":
    sys.exit(main())
