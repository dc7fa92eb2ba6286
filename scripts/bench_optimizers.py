"""Benchmark: kgopt compile against plain DSPy optimisers, and kgopt's ablations, at the same LLM-call budget.

Every method gets the same model (the configured endpoint, else the embedded Qwen), the same
training pool and dev records, the same `IEProgram` and chunk metric, and the same budget B of
LLM requests that reach the model (a hard cap: `EndpointLM.max_calls`). Each run of a method
asks under a response-cache namespace of its own (per attempt: a run redone after it was killed
does not get its first attempt's answers for free either). Every resulting program is then
scored on the test split, which no method sees (test calls are counted apart from B). The test
answers of a task are cached in one namespace shared by every method, seed and tag: a program
asks the test records exactly what an identical program asked before, and the answer is the one
a deterministic server would give again, so it is not asked twice.

The same training pool for every method. For seed k, the pool is, per source, `--train` records
drawn with `random.Random(k)` from the first `--train-from` train records (default: all of the
source's train split), in the drawn order: the same list for every method at a seed, another
draw at another seed, so seeds vary what the methods choose from, not only their samplers. The
DSPy methods get the pool's chunks at the task's default schema split (`chunk_examples`, chunks
with a label); kgopt and kgopt_augmented compile on the same records (a data layout whose train
split is the pool), and chunk them at each trial's split size (at the default split, the very
same chunks). No method gets a smaller or a larger pool (the former cap of 6 chunks for MIPROv2
and BootstrapFewShotWithRandomSearch is gone: their bootstrapping stops after 3 demonstrations
pass, and B caps what it may cost). Dev is the first `--dev` records per source for everyone.

Methods:
- zero_shot:     the strongest of the three zero-shot ways on the same test records (strict: the
                 official parse; lenient: the same answers repaired; constrained: the answer
                 schema enforced by the server; `kgopt.evaluation.compare_with_zero_shot`, the
                 first of `ZERO_SHOT_WAYS` on a tie), named in the table. It picks its way on
                 the test records themselves, which only favours the baseline. No calls before
                 the test, no training data: run once (seed 0), and paired with every seed of
                 kgopt (a deterministic server answers it the same on every seed).
- few_shot:      DSPy LabeledFewShot from the pool, 3 demonstrations similar to each input
                 (kgopt's per-input retrieval), default split.
- mipro:         DSPy MIPROv2 (instruction proposals x bootstrapped demo sets, its own TPE
                 search), set up as kgopt's mipro trials are, selecting on dev, with enough
                 candidates and trials that B ends it. It cannot use kgopt's per-input
                 retrieval: its candidates are demo sets of 3, which its search chooses among
                 as fixed sets (kgopt's `Mipro` optimiser caps labeled demos at the number
                 shown), so it shows the set it chose.
- bootstrap_rs:  DSPy BootstrapFewShotWithRandomSearch, B candidates (B ends it), selecting on dev,
                 with kgopt's per-input retrieval: each candidate is a pool (its bootstrapped
                 demos, topped up with up to 24 gold ones) from which the program shows the 3
                 most similar to each input, as kgopt's bootstrap+similar trials do. DSPy's own
                 bootstrapping (its teacher) sees them the same way, without the example itself.
- gepa:          DSPy GEPA (reflective instruction evolution; the same model reflects), set up
                 as kgopt's gepa trials are, from a pool of gold demonstrations shown 3 similar
                 to each input, selecting on dev; max_metric_calls far past B (GEPA_ROLLOUTS_PER_CALL
                 x B), and a stopper that ends it before an iteration whose reflection call B
                 could not pay for.
- kgopt:         `kgopt compile --max-calls B` (the study stops when B is spent), TPE sampler,
                 successive halving on, no InstructZero: kgopt's defaults.
- kgopt_augmented: `kgopt augment` on the pool (a quarter of B at most; the language's way of
                 showing the real samples: annotations only on Chinese), then `kgopt compile`
                 on pool + accepted samples with what is left of B.
Each method spends B (GEPA up to an iteration short), or runs its whole schedule first
(MIPROv2's B trials, BRS's B candidates, GEPA's rollout cap); the run's notes say which
(`budget_spent`). A schedule sized by a guess of what bootstrapping costs left them 62-116 calls
of 150 (pool-v2), since cached answers and early-stopping bootstraps cost less than the guess. A
call refused past B scores as a miss, so a candidate the cap cuts short is not chosen over one
scored whole.

Ablations of kgopt (the same compile, one part changed):
- kgopt_no_halving:    without successive halving (`halving=False`): every trial scores all of dev.
- kgopt_no_continuous: without the continuous part (a), `continuous=False` (`kgopt compile
                 --no-continuous`): no `weighted` demo choice (so no `demo_w_*` weights) and
                 temperature one of 0, 0.3, 0.7 (the choices before space-v3) instead of a float
                 in [0, 1]; TPE sampler, as kgopt's default.
- kgopt_instructzero:  with (b), InstructZero instruction search (`instructzero_trials`, opt-in,
                 so this row adds it): as many written instructions as a third of B can score
                 on dev's first rung (1 to 4). The writing runs on the embedded model in-process
                 (the `local` extra), outside B; scoring each instruction on dev is inside B.
- kgopt_reflect:       with learning from failures (`reflections=REFLECTIONS`, `--reflect`, opt-in):
                 instructions written from the best trial's dev errors, each one more trial,
                 inside B. It becomes kgopt's default only if this row beats kgopt's.

A method that fails (its error, e.g. a small model that cannot follow DSPy's proposal prompts,
a DSPy optimiser that needed more than B calls, or a compile whose dev scoring alone costs more
than B) is reported with its error, and a later run tries it again.

Resumable. Each finished (task, method, seed) run is appended to runs/bench-optimizers/runs.jsonl,
only once it has finished (a killed run leaves no record, and a torn last line is skipped). With
`--resume` (the default) a run already recorded without error for the same task, method, seed,
budget, pool (`--train`, `--train-from`), dev and test sizes and model, under its method's
latest rules (a protocol at or after `CHANGED_IN`'s for it), is not run again: its recorded
result goes into the table. `--no-resume` runs it again. A run that is redone starts clean:
its study, scratch folder and trial files are removed first. So a long run is done in chunks
that fit a session (`--methods`, `--tasks`, `--seeds`), and the same command run again
afterwards prints the whole table at no cost.

Per-record counts. Every run writes benchmarks/counts/optimizers/<TASK>_<lang>/<method>_seed<k>.jsonl
(`--counts-dir`), one JSON line per test record, in scripts/bench_compile.py's format (its
`write_counts`): {"run", "record", "tp", "pred", "gold"}, the record's headline counts
(matched, predicted, gold; EE: arguments). zero_shot's file holds its three ways (runs
"zero-shot strict", "zero-shot lenient", "zero-shot constrained"), every other file one run
named after the method. `--from-counts` rebuilds the F1s, the strongest zero-shot way and every
interval from those files alone, without a model call. Each run's F1 is the official headline
F1 of its summed counts (`kgopt.core.scoring.prf`, P and R rounded first, as in runs.jsonl's
`test_f1`); the table gives the mean, min and max over seeds.

Paired intervals. For each method, kgopt minus the method on the same test records: the seeds
both ran (zero_shot's one run stands for each of kgopt's seeds) are pooled, each test record's
counts summed over those seeds for either method, and `kgopt.core.stats.paired_bootstrap` (2,000
resamples, seed 0) resamples the test records with all their seeds together. The record is the
unit drawn: one record's seeds are not independent of each other (the same text, the same gold),
so resampling (seed, record) pairs separately would make the interval too narrow. The difference
is that of micro-F1 over all (seed, record) pairs (exact 2TP/(predicted+gold), which can differ
from the difference of the table's rounded F1s in the second decimal). Printed as
`ΔF1 +x.xx [95% CI lo, hi], n records`, with "not significant at n = ..." when the interval
holds 0.

The documented full run (the defaults: NER/en, RE/zh, EE/zh, KG/zh; B = 150; pool of 12 train
records; 20 dev; 60 test, RE/zh 30; 3 seeds; every method). The bundled CrossNER_AI test split
has 45 records, so NER/en runs over all five CrossNER domains (`NER:en:::all`: the pool, dev and
test counted per task and spread evenly, here 3 train, 4 dev and 12 test records per domain;
its rows are named `NER/en@all`). A task tested on fewer records than asked is logged:

    .venv/bin/python scripts/bench_optimizers.py
    # = --tasks NER:en:::all,RE:zh::30,EE:zh,KG:zh --budget 150 --train 12 --dev 20 --test 60 --seeds 3

What B buys there: one scoring of all dev (the task's default split) is 44 calls on NER/en, 240
on RE/zh, 60 on EE/zh and 20 on KG/zh (each run logs it, as a warning when it is B or more).
kgopt scores the zero-shot baseline and its warm starts on all of dev, so on RE/zh at B = 150 the
kgopt rows fail with BudgetExceeded before any trial (RE/zh needs a budget of its own,
RE:zh:B:30, well over 3 x 240 for any trial past the two warm starts), and on EE/zh B is spent
within the warm starts (the ablations then differ little).

In chunks, one method (or one task, or one seed) per session; finished runs are skipped, so a
chunk cut short is resumed by the same command:

    .venv/bin/python scripts/bench_optimizers.py --methods zero_shot,few_shot
    .venv/bin/python scripts/bench_optimizers.py --methods kgopt
    .venv/bin/python scripts/bench_optimizers.py --methods kgopt_augmented
    .venv/bin/python scripts/bench_optimizers.py --methods mipro
    .venv/bin/python scripts/bench_optimizers.py --methods bootstrap_rs
    .venv/bin/python scripts/bench_optimizers.py --methods gepa
    .venv/bin/python scripts/bench_optimizers.py --methods kgopt_no_halving
    .venv/bin/python scripts/bench_optimizers.py --methods kgopt_no_continuous
    .venv/bin/python scripts/bench_optimizers.py --methods kgopt_instructzero
    .venv/bin/python scripts/bench_optimizers.py --methods kgopt_reflect
    .venv/bin/python scripts/bench_optimizers.py --tasks RE:zh::30 --methods kgopt --seeds 1   # smaller still
    .venv/bin/python scripts/bench_optimizers.py                # then: the whole table, every run reused
    .venv/bin/python scripts/bench_optimizers.py --from-counts  # the table and intervals from the committed counts

Smaller runs (keep their counts apart from the committed ones with --counts-dir):

    .venv/bin/python scripts/bench_optimizers.py --tasks NER:en:40:8 --dev 4 --seeds 2 --counts-dir runs/bench-optimizers/counts
    .venv/bin/python scripts/bench_optimizers.py --report TAG,TAG2      # the runs of these tags in runs.jsonl

`--tasks` is TASK:LANG[:BUDGET[:TEST]]: an empty or missing BUDGET or TEST takes `--budget`
or `--test`. Prints a markdown table (mean/min/max held-out F1 over seeds, test records, budget,
calls, tokens, seconds) and the intervals or, with --json, one object
{"NER/en": {"zero_shot": {"mean", "min", "max", "calls", ..., "kgopt_minus": {...}}, ...}}.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import statistics
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import dspy
import optuna
import ujson
from loguru import logger
from tqdm import tqdm

from kgopt.augmentation import augment
from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import Connection, connect
from kgopt.compiler import compile_program
from kgopt.compiler.optimizers import GEPA_MINIBATCH, SIMILAR_POOL, get_optimizer, run_optimizer
from kgopt.compiler.space import DISCRETE_TEMPERATURES
from kgopt.compiler.study import FIRST_RUNG
from kgopt.compiler.trainset import chunk_examples, make_metric
from kgopt.core.stats import RESAMPLES, SEED, PairedDifference, RecordCount, paired_bootstrap
from kgopt.core.tasks import get_task
from kgopt.data.layouts import IEPileTree, InstructIEFiles, layout_of
from kgopt.data.readers import AskedRecord, default_data_dir, list_sources, load_examples
from kgopt.errors import BudgetExceeded
from kgopt.evaluation import ZERO_SHOT_WAYS, compare_with_zero_shot, evaluate
from kgopt.evaluation import strongest_way  # the rule of kgopt evaluate --vs-zero-shot
from kgopt.program import IEProgram, ProgramSettings, load_program

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_compile  # noqa: E402  (the one reader and writer of benchmarks/counts/' per-record format)

METHODS = (
    "zero_shot", "few_shot", "kgopt", "mipro", "bootstrap_rs", "gepa", "kgopt_augmented",
    "kgopt_no_halving", "kgopt_no_continuous", "kgopt_instructzero", "kgopt_reflect",
)  # fmt: skip
DETERMINISTIC = ("zero_shot",)  # the same program and answers whatever the seed: run once, at seed 0
DEMOS = 3  # the obvious few-shot setting, and the demo cap of every method
SOURCES = {"NER/en": "CrossNER_AI", "RE/zh": "DuIE2.0", "EE/zh": "FewFC", "RE/en": "CoNLL2004", "EE/en": "PHEE", "NER/zh": "WeiboNER"}
# The four tasks; NER/en over its five CrossNER domains, since CrossNER_AI alone has 45
# test records and the run asks for 60.
DEFAULT_TASKS = "NER:en:::all,RE:zh::30,EE:zh,KG:zh"
OUT = Path("runs/bench-optimizers")
COUNTS = Path("benchmarks/counts/optimizers")
# What a recorded run means; a new one when the rules change, so that --resume never reuses a
# run made under rules since changed for its method. pool-v1: one seeded training pool for every
# method, the strongest zero-shot way, similar retrieval for BRS and GEPA. pool-v2:
# kgopt_augmented on Chinese shows the real samples' annotations only (augmentation's default
# there since). pool-v3: MIPROv2, BRS and GEPA get schedules longer than B pays for, and B ends
# them, so they spend B as kgopt does (under pool-v2 they stopped at 62-116 of 150 calls).
# pool-v4: MIPROv2 gets B trials (2 per pair left it short of B on a seed). pool-v5: GEPA's
# rollout cap is 20 x B (GEPA_ROLLOUTS_PER_CALL), and kgopt_reflect's trials leave reflection its
# share of B (under pool-v4 they spent it all, so the study never reflected).
PROTOCOLS = ("pool-v1", "pool-v2", "pool-v3", "pool-v4", "pool-v5")
PROTOCOL = PROTOCOLS[-1]
CHANGED_IN = {"kgopt_augmented": "pool-v2", "bootstrap_rs": "pool-v3", "gepa": "pool-v5", "mipro": "pool-v4", "kgopt_reflect": "pool-v5"}  # else pool-v1
ZERO_SHOT_RUNS = {way: f"zero-shot {way}" for way in ZERO_SHOT_WAYS}  # run names in a zero_shot counts file
ENOUGH_ERRORS = 100_000  # DSPy stops at its max_errors; a call refused past B is a miss, not the end
GEPA_ITERATION_CALLS = GEPA_MINIBATCH + 1  # what an iteration may spend up to its reflection call
# GEPA's own cap counts rollouts, and a rollout answered from the cache costs no call: at 4 x B
# (pool-v3, pool-v4) the cap ended KG/zh seed 2 at 116 calls of 150, after 598 rollouts. The cap
# only guards against a loop that spends no calls; B ends GEPA, through the stopper.
GEPA_ROLLOUTS_PER_CALL = 20
REFLECTIONS = 2  # kgopt_reflect: instructions written from the best trial's dev errors
INSTRUCTZERO_MAX = 4  # kgopt_instructzero: at most this many instructions written and scored


@dataclass
class Case:
    """One task/language and the records every method shares."""

    task: str
    lang: str
    source: str | None
    data_dir: Path
    train_limit: int  # the pool: records per source
    dev_limit: int
    test_limit: int
    budget: int  # LLM requests each method may send before the test
    train_from: int | None = None  # the pool is drawn from this many train records per source (None: all)
    spread: int = 1  # how many sources the per-source limits apply to (SOURCE "all": every source of the task)

    @property
    def key(self) -> str:
        return case_key(self.task, self.lang, self.source)

    def load(self, split: str, limit: int | None):
        return load_examples(self.task, self.lang, split, data_dir=self.data_dir, source=self.source, limit=limit)


def training_pool(case: Case, seed: int) -> list[AskedRecord]:
    """The seed's training records, the same list for every method: per source (in name order),
    ``train_limit`` records drawn by ``random.Random(seed)`` from the first ``train_from``."""
    by_source: dict[str, list[AskedRecord]] = {}
    for ex in case.load("train", case.train_from):
        by_source.setdefault(ex.record.source, []).append(ex)
    rng = random.Random(seed)
    pool: list[AskedRecord] = []
    for source in sorted(by_source):
        records = by_source[source]
        pool += rng.sample(records, min(case.train_limit, len(records)))
    return pool


class _Pool:
    """A data layout whose train split is a given list of records (the seed's pool); its other
    splits, schemas and files are the base layout's. kgopt compile and augment read it as they
    read any layout, so they train on exactly the pool the other methods get."""

    pool: list[AskedRecord]
    filters_source = True

    def examples(self, spec, lang, split, source=None, limit=None):
        if split != "train":
            return super().examples(spec, lang, split, source, limit)
        taken: dict[str, int] = {}
        out = []
        for ex in self.pool:
            src = ex.record.source
            if (source and self.filters_source and src != source) or (limit is not None and taken.get(src, 0) >= limit):
                continue
            taken[src] = taken.get(src, 0) + 1
            out.append(ex)
        return out


class PoolTree(_Pool, IEPileTree):
    pass


class PoolFiles(_Pool, InstructIEFiles):
    filters_source = False  # InstructIE has one source (a --source there names a topic)


def pool_layout(case: Case, pool: list[AskedRecord]):
    base = layout_of(case.task, case.data_dir)
    layout = (PoolFiles if isinstance(base, InstructIEFiles) else PoolTree)(case.data_dir)
    layout.pool = list(pool)
    return layout


def record_key(ex: AskedRecord) -> str:
    return f"{ex.record.source}/{ex.record.id}"  # as the scorer keys records (RecordCount.key)


@dataclass
class Run:
    """What a method gets: the records, a connection capped at the budget, a seed, a scratch folder."""

    case: Case
    conn: Connection
    seed: int
    scratch: Path
    train: list  # the seed's training pool
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

    def pool(self) -> list[dspy.Example]:
        """The training pool's chunks at the task's default split: what every DSPy method gets."""
        return self.chunks(self.train)

    def valset(self) -> list[dspy.Example]:
        """Every dev chunk, with labels or not: what kgopt's record-level dev score sees."""
        return self.chunks(self.dev, positive_only=False)

    def student(self, selection: str = "fixed") -> IEProgram:
        """The program DSPy's optimisers start from. It shows DEMOS of the demonstrations they
        attach: the first ones ("fixed", as a DSPy predictor does) or the most similar to each
        input ("similar", kgopt's retrieval); an IEProgram shows none by default."""
        program = IEProgram(self.case.task, self.case.lang, settings=ProgramSettings(num_demos=DEMOS, demo_selection=selection))
        program.set_lm(self.conn.lm)
        return program


# --- methods: each returns the program to test --------------------------------------------------


def zero_shot(run: Run) -> IEProgram:
    return run.student()  # no demonstrations attached; tested three ways (run_method)


def few_shot(run: Run) -> IEProgram:
    program = IEProgram(run.case.task, run.case.lang, settings=ProgramSettings(num_demos=DEMOS, demo_selection="similar"))
    return run_optimizer("labeled", program, run.pool(), [], run.conn.lm, DEMOS, "similar", run.seed)


def mipro(run: Run) -> IEProgram:
    trainset, valset = run.pool(), run.valset()
    optimizer = get_optimizer("mipro")  # as a kgopt trial runs it, with a schedule B ends
    options = optimizer.defaults(DEMOS)
    # Enough instruction x demo-set pairs that scoring each once on dev costs more than B, and B
    # trials: its search repeats pairs (answered from the cache, at no call), so twice as many
    # trials as pairs left it at 133 of 150 calls (pool-v3). The budget, not the schedule, ends
    # it. A trial the cap cuts short scores its refused calls as misses, so it is not chosen
    # over one scored whole.
    v = max(1, len(valset))
    options["candidates"] = max(options["candidates"], math.ceil(math.sqrt(run.budget / v)))
    options["trials"] = run.budget
    run.notes.update(options)
    with dspy.context(lm=run.conn.lm, max_errors=ENOUGH_ERRORS):
        return optimizer.compile(run.student(), trainset, valset, run.conn.lm, DEMOS, "random", run.seed, options)


class _RandomSearchWithinBudget(dspy.BootstrapFewShotWithRandomSearch):
    """DSPy's BootstrapFewShotWithRandomSearch, stopped after the candidate during which the call
    budget ran out. Its loop checks ``stop_at_score`` after scoring each candidate, and a score of
    at least -inf stops it: the one hook it has. The candidate the cap cut short scores its
    refused calls as misses, so it is not chosen over one scored whole."""

    def __init__(self, lm, **kwargs):
        self._lm = lm
        super().__init__(**kwargs)

    @property
    def stop_at_score(self):
        return float("-inf") if self._lm.calls_left == 0 else None

    @stop_at_score.setter
    def stop_at_score(self, value):  # set by DSPy's __init__; the budget decides instead
        pass


def bootstrap_rs(run: Run) -> IEProgram:
    trainset, valset = run.pool(), run.valset()
    # As many random candidates as B could pay for if each cost one call (many cost fewer: a
    # candidate whose prompts match an earlier one's is answered from the cache): B ends it.
    run.notes.update(candidates=run.budget, demo_selection="similar")
    tele = _RandomSearchWithinBudget(
        run.conn.lm, metric=make_metric(run.spec), max_bootstrapped_demos=DEMOS, max_labeled_demos=SIMILAR_POOL,
        num_candidate_programs=run.budget, num_threads=1, max_errors=ENOUGH_ERRORS,
    )  # fmt: skip
    with dspy.context(lm=run.conn.lm):
        program = tele.compile(run.student("similar"), trainset=trainset, valset=valset)
    # Fewer than B calls only if it ran every candidate (its zero-shot, labeled-only and
    # unshuffled ones too): many of them repeat an earlier one's prompts, answered from the cache.
    run.notes["candidates_scored"] = len(program.candidate_programs)
    return program


def gepa(run: Run) -> IEProgram:
    trainset, valset = run.pool(), run.valset()
    optimizer = get_optimizer("gepa")  # as a kgopt trial runs it, from a pool of gold demonstrations
    options = optimizer.defaults(DEMOS)
    # Its own cap is set far past B (GEPA_ROLLOUTS_PER_CALL), and a stopper ends it before an
    # iteration whose reflection call B could not pay for (a refused reflection call would end
    # GEPA with an error; refused rollouts score as misses).
    lm = run.conn.lm
    options["metric_calls"] = GEPA_ROLLOUTS_PER_CALL * run.budget
    options["stop_callbacks"] = [lambda state: lm.calls_left < GEPA_ITERATION_CALLS]
    run.notes.update(max_metric_calls=options["metric_calls"], demo_selection="similar")
    with dspy.context(lm=lm):
        return optimizer.compile(run.student("similar"), trainset, valset, lm, DEMOS, "similar", run.seed, options)


def _compile(run: Run, budget: int, augmented_dir: Path | None, **options: Any) -> IEProgram:
    c = run.case
    res = compile_program(
        c.task, c.lang, run.conn, source=c.source, trials=1000, max_calls=budget, data_dir=pool_layout(c, run.train),
        augmented=augmented_dir is not None, augmented_dir=augmented_dir, train_limit=c.train_limit, dev_limit=c.dev_limit,
        max_demos=DEMOS, seed=run.seed, storage=storage_url(), study_name=run.scratch.name, compiled_dir=run.scratch,
        out=run.scratch / "program.json", **options,
    )  # fmt: skip
    m = res.manifest
    run.notes.update(study=res.study_name, trials=res.trials_run, chosen=m["chosen"], dev_f1=m["dev"]["f1"], zero_shot_dev_f1=m["baseline_dev"]["f1"])
    halving = (m.get("study") or {}).get("halving") or {}
    if halving:
        run.notes["halving"] = {k: halving.get(k) for k in ("on", "rungs", "trials_stopped", "calls_saved_estimate")}
    program, _ = load_program(res.path, task=c.task, lang=c.lang)
    return program


def kgopt(run: Run) -> IEProgram:
    return _compile(run, run.budget, None)


def kgopt_no_halving(run: Run) -> IEProgram:
    return _compile(run, run.budget, None, halving=False)


def kgopt_no_continuous(run: Run) -> IEProgram:
    run.notes["space"] = {"demo_choice": "no weighted", "temperature": list(DISCRETE_TEMPERATURES)}
    return _compile(run, run.budget, None, continuous=False)


def instructzero_trials(run: Run) -> int:
    """Instructions InstructZero writes: as many as a third of B can score on dev's first rung
    (each distinct one is one zero-shot pass over it), at least 1, at most INSTRUCTZERO_MAX."""
    first_rung = min(FIRST_RUNG, len(run.valset()))
    return max(1, min(INSTRUCTZERO_MAX, (run.budget // 3) // max(1, first_rung)))


def kgopt_instructzero(run: Run) -> IEProgram:
    trials = instructzero_trials(run)
    run.notes["instructzero_trials"] = trials
    return _compile(run, run.budget, None, instructzero_trials=trials)


def kgopt_reflect(run: Run) -> IEProgram:
    run.notes["reflections"] = REFLECTIONS
    return _compile(run, run.budget, None, reflections=REFLECTIONS)


def kgopt_augmented(run: Run) -> IEProgram:
    c, lm = run.case, run.conn.lm
    aug_dir = run.scratch / "augmented"
    lm.max_calls = run.budget // 4  # augmentation's share; what it does not use goes to the compile
    try:
        # It learns from the pool every other method gets, no more.
        augment(c.task, c.lang, run.conn, source=c.source, per_label=2, seed=run.seed, data_dir=pool_layout(c, run.train), out_dir=aug_dir,
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
    "kgopt_augmented": kgopt_augmented, "kgopt_no_halving": kgopt_no_halving, "kgopt_no_continuous": kgopt_no_continuous,
    "kgopt_instructzero": kgopt_instructzero, "kgopt_reflect": kgopt_reflect,
}  # fmt: skip


# --- the log, the counts files --------------------------------------------------------------------


def storage_url() -> str:
    return f"sqlite:///{(OUT / 'studies.sqlite3').resolve()}"


def read_rows() -> list[dict[str, Any]]:
    """Every record of runs.jsonl; a line that does not parse (a write cut off) is skipped."""
    path = OUT / "runs.jsonl"
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(ujson.loads(line))
        except ValueError:
            logger.warning("{}:{}: not a whole record (a write cut off?); skipped", path, n)
    return rows


def append_row(row: dict[str, Any]) -> None:
    """One line, written and synced at once, on a line of its own (after a torn line, if any)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "runs.jsonl"
    torn = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(("\n" if torn else "") + ujson.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def run_key(r: dict[str, Any]) -> tuple:
    """What makes two runs the same run (tag, attempt and protocol aside: ``still_holds``)."""
    return (r.get("case"), r.get("method"), r.get("seed"), r.get("budget"), r.get("train"), r.get("train_from"), r.get("dev"),
            r.get("test"), r.get("model"))  # fmt: skip


def planned_key(case: Case, method: str, seed: int, model: str) -> tuple:
    return (case.key, method, seed, case.budget, case.train_limit, case.train_from, case.dev_limit, case.test_limit, model)


def still_holds(r: dict[str, Any]) -> bool:
    """Whether a run's protocol is its method's latest rules: recorded under them or later."""
    protocol, changed = r.get("protocol"), CHANGED_IN.get(r.get("method"), PROTOCOLS[0])
    return protocol in PROTOCOLS and PROTOCOLS.index(protocol) >= PROTOCOLS.index(changed)


def finished_runs(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """The latest error-free record of each run made under its method's latest rules."""
    return {run_key(r): r for r in rows if "error" not in r and "test_counts" in r and still_holds(r)}


def counts_path(counts_dir: Path, case_key: str, method: str, seed: int) -> Path:
    return counts_dir / case_key.replace("/", "_") / f"{method}_seed{seed}.jsonl"


def save_counts(path: Path, row: dict[str, Any]) -> None:
    """The run's per-record test counts, in bench_compile's format, replaced whole (temp + rename)."""
    if row["method"] == "zero_shot" and "test_counts_ways" in row:
        runs = {ZERO_SHOT_RUNS[way]: row["test_counts_ways"][way] for way in ZERO_SHOT_WAYS}
    else:
        runs = {row["method"]: row["test_counts"]}
    tmp = path.with_name(path.name + ".partial")
    bench_compile.write_counts(tmp, {name: [RecordCount(*c) for c in counts] for name, counts in runs.items()})
    os.replace(tmp, path)


def read_counts(path: Path) -> dict[str, list[list]]:
    """A counts file as rows store it: each run's [record, tp, pred, gold] per record, in file order."""
    return {run: [[c.key, c.tp, c.pred, c.gold] for c in counts] for run, counts in bench_compile.read_counts(path).items()}


def f1_of(counts: list[list]) -> float:
    """The official headline F1 of a run's summed per-record counts (as its test_f1)."""
    return bench_compile.official_f1([RecordCount(*c) for c in counts])


def strongest_way_of_counts(ways: dict[str, list[list]]) -> str:
    """ZeroShotComparison.strongest's rule: the highest F1, the first of ZERO_SHOT_WAYS on a tie."""
    return strongest_way({way: f1_of(ways[way]) for way in ZERO_SHOT_WAYS})


def rows_from_counts(counts_dir: Path, cases: list[str] | None, methods: list[str] | None) -> list[dict[str, Any]]:
    """Rows rebuilt from the counts files alone (the test counts, and zero_shot's three ways)."""
    rows = []
    for folder in sorted(p for p in counts_dir.iterdir() if p.is_dir()) if counts_dir.is_dir() else []:
        task, _, rest = folder.name.partition("_")  # counts_path's folder: NER_en, NER_en@all, NER_en@CrossNER_music
        key = f"{task}/{rest}"
        if cases is not None and key not in cases:
            continue
        for path in sorted(folder.glob("*_seed*.jsonl")):
            method, _, seed = path.stem.rpartition("_seed")
            if (methods is not None and method not in methods) or not seed.isdigit():
                continue
            runs = read_counts(path)
            row: dict[str, Any] = {"case": key, "method": method, "seed": int(seed)}
            if method == "zero_shot" and set(ZERO_SHOT_RUNS.values()) <= set(runs):
                ways = {way: runs[ZERO_SHOT_RUNS[way]] for way in ZERO_SHOT_WAYS}
                row.update(test_counts_ways=ways, zero_shot_way=strongest_way_of_counts(ways))
                row["test_counts"] = ways[row["zero_shot_way"]]
            else:
                row["test_counts"] = runs.get(method) or next(iter(runs.values()), [])
            rows.append(row)
    return rows


# --- one run, one case, the table ---------------------------------------------------------------


def _start_clean(name: str, scratch: Path) -> None:
    """A run redone (killed before, or --no-resume) keeps nothing of an earlier attempt: not its
    study, nor its scratch folder (program, augmented samples), nor its trial files."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(Path("runs") / "compile" / name, ignore_errors=True)
    if (OUT / "studies.sqlite3").is_file():
        try:
            optuna.delete_study(study_name=name, storage=storage_url())
        except KeyError:
            pass


def run_method(case: Case, method: str, seed: int, tag: str, config, counts_dir: Path = COUNTS) -> dict[str, Any]:
    """One method on one case with one seed: optimise within the case's budget, then test. The
    counts file and then the record are written only once the run has finished."""
    budget = case.budget
    name = f"{case.task}_{case.lang}_{method}_s{seed}_{tag}"
    scratch = OUT / "runs" / name
    _start_clean(name, scratch)
    namespace = f"bench-optimizers/{name}/{uuid.uuid4().hex[:8]}"  # this attempt's own answers
    conn = connect(config, cache_namespace=namespace, max_calls=budget)
    scratch.mkdir(parents=True, exist_ok=True)
    pool = [] if method in DETERMINISTIC else training_pool(case, seed)
    run = Run(case, conn, seed, scratch, pool, case.load("dev", case.dev_limit), {})
    if pool:
        run.notes["train_pool"] = [record_key(ex) for ex in pool]
    row: dict[str, Any] = {
        "case": case.key, "method": method, "seed": seed, "budget": budget, "train": case.train_limit, "train_from": case.train_from,
        "dev": case.dev_limit, "test": case.test_limit, "model": conn.model, "protocol": PROTOCOL, "tag": tag, "cache_namespace": namespace,
    }  # fmt: skip
    started = time.monotonic()
    try:
        with conn.lm.usage.track() as spent:
            program = METHOD_FUNCTIONS[method](run)
        # DSPy's optimisers score a refused call as a miss and go on, so say when the budget ran out.
        run.notes["budget_spent"] = conn.lm.calls_left == 0
        used = spent.counts()
        row.update(calls=used["calls"], tokens=used["total_tokens"], cache_hits=used["cache_hits"], seconds=round(time.monotonic() - started, 1))
        tester = connect(config, cache_namespace=f"bench-optimizers/test/{case.key}")  # no cap: the test is not part of B
        program.set_lm(tester.lm)
        kw = dict(split="test", source=case.source, limit=case.test_limit, data_dir=case.data_dir)
        with tester.lm.usage.track() as tested:
            if method == "zero_shot":
                cmp = compare_with_zero_shot(case.task, case.lang, tester, program, out_dir=scratch / "test", **kw)
                report = cmp.reports[cmp.strongest]
                row.update(zero_shot_way=cmp.strongest, zero_shot_f1={k: r.total.headline_f1() for k, r in cmp.reports.items()},
                           test_counts_ways={k: [[c.key, c.tp, c.pred, c.gold] for c in r.records] for k, r in cmp.reports.items()})
            else:
                report = evaluate(case.task, case.lang, tester, program=program, out_dir=scratch / "test", **kw).report
        t = tested.counts()
        row.update(test_f1=report.total.headline_f1(), test_records=report.total.instances, test_calls=t["calls"], test_cache_hits=t["cache_hits"])
        # Per record: matched, predicted, gold (headline level): every F1 and interval follows from these.
        row["test_counts"] = [[c.key, c.tp, c.pred, c.gold] for c in report.records]
        ccks = getattr(report, "ccks", None)
        if ccks:
            row["test_ccks"] = ccks["score"]
    except Exception as exc:  # reported, never dropped (KeyboardInterrupt is not caught: a killed run records nothing)
        row.update(error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}", seconds=round(time.monotonic() - started, 1), calls=conn.lm.requests_sent)
        logger.debug(traceback.format_exc())
    row["notes"] = run.notes
    if "error" not in row:
        path = counts_path(counts_dir, case.key, method, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_counts(path, row)
        row["counts_file"] = str(path)
    append_row(row)
    logger.info("{} {} seed {}: {}", case.key, method, seed, {k: row.get(k) for k in ("test_f1", "calls", "seconds", "error")})
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean/min/max test F1 over a method's seeds (each from its per-record counts), with its
    calls, tokens and seconds (means) where the records have them."""
    ok = sorted((r for r in rows if "error" not in r), key=lambda r: r["seed"])
    if not ok:
        return {"error": rows[0]["error"] if rows else "not run", "seeds": len(rows), "budget": rows[0].get("budget") if rows else None}
    f1 = [f1_of(r["test_counts"]) for r in ok]
    out: dict[str, Any] = {
        "mean": round(statistics.mean(f1), 2), "min": round(min(f1), 2), "max": round(max(f1), 2), "seeds": len(ok),
        "seed_list": [r["seed"] for r in ok], "test_records": len(ok[0]["test_counts"]),
    }  # fmt: skip
    for k, digits in (("calls", 1), ("tokens", None), ("seconds", 1)):  # in the records, not in the counts files
        if all(k in r for r in ok):
            out[k] = round(statistics.mean(r[k] for r in ok), digits)
    if all("budget" in r for r in ok):
        out["budget"] = ok[0]["budget"]
    if ok[0].get("zero_shot_way"):
        out["way"] = ok[0]["zero_shot_way"]
        if "test_counts_ways" in ok[0]:
            out["ways"] = {k: f1_of(v) for k, v in ok[0]["test_counts_ways"].items()}
    if len(ok) < len(rows):
        out["failed_seeds"] = [r["error"] for r in rows if "error" in r]
    out["record_counts"] = {str(r["seed"]): r["test_counts"] for r in ok}  # per seed, for the paired intervals
    yields = [r["notes"]["augmentation"] for r in rows if (r.get("notes") or {}).get("augmentation")]
    if yields:  # summed over seeds
        out["augmentation"] = {k: sum(y.get(k) or 0 for y in yields) for k in ("asked", "received", "accepted", "missing")}
        out["augmentation"]["rejected"] = {k: sum((y.get("rejected") or {}).get(k, 0) for y in yields) for k in yields[0].get("rejected") or {}}
    return out


class Paired(NamedTuple):
    difference: PairedDifference  # F1(kgopt) - F1(method), over the test records
    seeds: list[int]  # kgopt's seeds paired (with the method's same seed, or its one deterministic run)


def _summed(by_seed: dict[str, list[list]], seeds: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for seed in seeds:
        for key, tp, pred, gold in by_seed[seed]:
            c = out.setdefault(key, [0, 0, 0])
            c[0], c[1], c[2] = c[0] + tp, c[1] + pred, c[2] + gold
    return out


def kgopt_against(results: dict[str, dict[str, Any]], reference: str = "kgopt") -> dict[str, dict[str, Paired]]:
    """Per case, ``reference`` against every other method on the same test records: the seeds
    both ran are pooled (a deterministic method's one run stands for each), each record's counts
    summed over them, and the paired bootstrap draws records (module doc, "Paired intervals")."""
    out: dict[str, dict[str, Paired]] = {}
    for key, methods in results.items():
        ref = (methods.get(reference) or {}).get("record_counts")
        if not ref:
            continue
        for method, s in methods.items():
            other = s.get("record_counts")
            if method == reference or not other:
                continue
            if method in DETERMINISTIC:
                seeds = sorted(ref, key=int)
                ref_sum, other_sum = _summed(ref, seeds), _summed({k: next(iter(other.values())) for k in seeds}, seeds)
            else:
                seeds = sorted(set(ref) & set(other), key=int)
                if not seeds:
                    continue
                ref_sum, other_sum = _summed(ref, seeds), _summed(other, seeds)
            if set(ref_sum) != set(other_sum):
                logger.warning("{}: {} and {} were tested on different records; no interval", key, reference, method)
                continue
            d = paired_bootstrap([RecordCount(k, *v) for k, v in other_sum.items()], [RecordCount(k, *v) for k, v in ref_sum.items()],
                                 resamples=RESAMPLES, seed=SEED)
            out.setdefault(key, {})[method] = Paired(d, [int(s) for s in seeds])
    return out


def add_intervals(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each method's summary gets ``kgopt_minus``: its paired interval against kgopt."""
    for key, by_method in kgopt_against(results).items():
        for method, p in by_method.items():
            results[key][method]["kgopt_minus"] = {**p.difference.to_json(), "seeds": p.seeds}
    return results


def default_source(task: str, lang: str) -> str | None:
    """The one source a task is measured on unless its --tasks item names another (KG: its only one)."""
    return None if get_task(task).asks_topics else SOURCES.get(f"{task}/{lang}")


def case_key(task: str, lang: str, source: str | None) -> str:
    """``NER/en``; ``NER/en@all`` or ``NER/en@CrossNER_music`` where the item named a source other
    than the default, so that its runs, counts and test cache are never another's."""
    where = "" if source == default_source(task, lang) else f"@{source or 'all'}"
    return f"{task}/{lang}{where}"


TASKS_FORMAT = "TASK:LANG[:BUDGET[:TEST[:SOURCE]]]"


def _per_source(records: int, sources: int) -> int:
    """Records per source for ``records`` in all, rounded up: no task gets fewer than asked."""
    return -(-records // sources)


def parse_cases(spec: str, args) -> list[Case]:
    """``TASK:LANG[:BUDGET[:TEST[:SOURCE]]],...``: an empty or missing BUDGET or TEST is ``--budget``
    or ``--test``; SOURCE is one of the task's sources, or ``all``: every source, with --train,
    --dev and TEST then counted per task and spread evenly over the sources (rounded up per
    source). NER/en's default source, CrossNER_AI, has 45 test records; ``NER:en:::all`` reaches 60."""
    cases = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        parts = item.split(":")
        numbers, named = parts[2:4], (parts[4] if len(parts) > 4 else "")
        if len(parts) < 2 or not parts[1] or len(parts) > 5 or any(n and not n.isdigit() for n in numbers):
            raise SystemExit(f"--tasks: {item!r} is not {TASKS_FORMAT} (BUDGET calls and TEST records, whole numbers; empty: the default)")
        task, lang = get_task(parts[0]).name, parts[1]
        budget_text, test_text = (numbers + ["", ""])[:2]
        budget = int(budget_text) if budget_text else args.budget
        test = int(test_text) if test_text else args.test
        source, spread = default_source(task, lang), 1
        if named:
            known = list_sources(task, lang, args.data_dir)
            if named != "all" and named not in known:
                raise SystemExit(f"--tasks: {item!r}: no source {named!r} of {task}/{lang}; choose all or one of {', '.join(known)}")
            if len(known) > 1:  # of a task with one source, every way of naming it is the default case
                source, spread = (None, len(known)) if named == "all" else (named, 1)
        cases.append(Case(task, lang, source, args.data_dir, _per_source(args.train, spread), _per_source(args.dev, spread),
                          _per_source(test, spread), budget, getattr(args, "train_from", None), spread))
    return cases


def model_of(config) -> str:
    """The model a run will be recorded under, without starting anything (the embedded model's served name)."""
    if config.embedded:
        from kgopt.clients.weights import selected_model

        return selected_model().served_name
    return config.model


def preflight(case: Case) -> None:
    """Say what the budget buys: one scoring of all dev, and test records short of those asked."""
    dev = case.load("dev", case.dev_limit)
    dev_calls = len(chunk_examples(get_task(case.task), dev, get_task(case.task).split_size, False))
    level = "WARNING" if dev_calls >= case.budget else "INFO"
    logger.log(level, "{}: B = {} calls; one scoring of all {} dev records is {} calls", case.key, case.budget, len(dev), dev_calls)
    tested, asked = len(case.load("test", case.test_limit)), case.test_limit * case.spread
    if tested < asked:
        logger.warning("{}: the test split has {} records ({} asked); every method is tested on those {}", case.key, tested, asked, tested)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=None, help=f"{TASKS_FORMAT},... (SOURCE: one source, or all; default: {DEFAULT_TASKS})")
    ap.add_argument("--budget", type=int, default=150, help="LLM requests each method may send before the test, for a task without its own (default: %(default)s)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per method, numbered from --first-seed (default: %(default)s)")
    ap.add_argument("--first-seed", type=int, default=0, help="number the seeds from this one (zero_shot runs at seed 0 whatever this is)")
    ap.add_argument("--methods", default=None, help=f"which methods, comma-separated (default: all: {','.join(METHODS)})")
    ap.add_argument("--data-dir", type=Path, default=None, help="data root (train, dev and the test split); default: the bundled data")
    ap.add_argument("--train", type=int, default=12, help="the training pool: records per source (per task for a SOURCE of all) (default: %(default)s)")
    ap.add_argument("--train-from", type=int, default=None, help="draw the pool from the first N train records per source (default: all)")
    ap.add_argument("--dev", type=int, default=20, help="dev records per source (per task for a SOURCE of all) (default: %(default)s)")
    ap.add_argument("--test", type=int, default=60, help="test records per source (per task for a SOURCE of all), for a task without its own (default: %(default)s)")
    ap.add_argument("--tag", default=time.strftime("%Y%m%d-%H%M%S"), help="names this run's cache namespaces and studies (default: now)")
    ap.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                    help="skip a run already recorded without error for the same settings and reuse its result (default: on)")
    ap.add_argument("--counts-dir", type=Path, default=COUNTS, help="where the per-record counts go (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--report", metavar="TAGS", help="run nothing: print the table of the runs of these tags (comma-separated) in runs.jsonl; "
                    "where two tags have a row for the same task, method and seed, the later-listed tag's is used")
    ap.add_argument("--from-counts", action="store_true", help="run nothing, call no model: the table and intervals from --counts-dir")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in (args.methods or ",".join(METHODS)).split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_FUNCTIONS]
    if unknown:
        ap.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if args.report:
        print_results(results_of_tag(args.report), args)
        return 0
    if args.from_counts:
        keys = None if args.tasks is None else [c.key for c in parse_cases(args.tasks, args)]
        print_results(results_from_counts(args.counts_dir, keys, None if args.methods is None else methods), args)
        return 0
    args.data_dir = args.data_dir or default_data_dir()
    logger.remove()
    logger.add(sys.stderr, level="INFO")
    cases = parse_cases(args.tasks or DEFAULT_TASKS, args)
    config = resolve_endpoint()
    model = model_of(config)
    done = finished_runs(read_rows()) if args.resume else {}
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    # Per task, seeds outside methods: a cut-short run still has every method's first seeds.
    plan = []
    for case in cases:
        plan += [(case, 0, m) for m in methods if m in DETERMINISTIC]  # once, at seed 0
        plan += [(case, seed, m) for seed in seeds for m in methods if m not in DETERMINISTIC]
    for case in cases:
        preflight(case)
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {case.key: {m: [] for m in methods} for case in cases}
    with tqdm(plan, desc="bench", unit="run", dynamic_ncols=True) as bar:
        for case, seed, method in bar:
            bar.set_postfix_str(f"{case.key} {method} seed {seed}")
            recorded = done.get(planned_key(case, method, seed, model))
            if recorded is not None:
                logger.info("{} {} seed {}: recorded under tag {} (test F1 {}); reused", case.key, method, seed, recorded.get("tag"), recorded.get("test_f1"))
                path = counts_path(args.counts_dir, case.key, method, seed)
                path.parent.mkdir(parents=True, exist_ok=True)
                save_counts(path, recorded)  # the counts behind the table, whichever session ran it
                rows[case.key][method].append(recorded)
                continue
            rows[case.key][method].append(run_method(case, method, seed, args.tag, config, args.counts_dir))
    results = add_intervals({key: {m: summarise(r) for m, r in by_method.items() if r} for key, by_method in rows.items()})
    print_results(results, args)
    return 0


def results_from_counts(counts_dir: Path, cases: list[str] | None = None, methods: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The table's results from the counts files alone (``--from-counts``)."""
    rows: dict[str, dict[str, list]] = {}
    for r in rows_from_counts(counts_dir, cases, methods):
        rows.setdefault(r["case"], {}).setdefault(r["method"], []).append(r)
    order = {m: i for i, m in enumerate(METHODS)}
    ordered = sorted(rows, key=lambda k: cases.index(k) if cases and k in cases else 0)
    return add_intervals({key: {m: summarise(rows[key][m]) for m in sorted(rows[key], key=lambda m: order.get(m, len(order)))} for key in ordered})


def results_of_tag(tags: str) -> dict[str, dict[str, Any]]:
    """The summary of every finished run of the tags (comma-separated), as main() prints it."""
    order = {t: i for i, t in enumerate(tags.split(","))}
    # One row per (case, method, seed): a later-listed tag's row replaces an earlier one's (a
    # method re-run after a fix), and within a tag the later line does.
    latest: dict[tuple, tuple[int, dict]] = {}
    for r in read_rows():
        rank = order.get(r.get("tag"))
        if rank is not None:
            key = (r["case"], r["method"], r["seed"])
            if key not in latest or rank >= latest[key][0]:
                latest[key] = (rank, r)
    rows: dict[str, dict[str, list]] = {}
    for _, r in latest.values():
        rows.setdefault(r["case"], {}).setdefault(r["method"], []).append(r)
    return add_intervals({case: {m: summarise(rs) for m, rs in by_method.items()} for case, by_method in rows.items()})


def print_results(results: dict[str, dict[str, Any]], args) -> None:
    if args.json:  # the per-record counts are in the counts files
        print(ujson.dumps({key: {m: {k: v for k, v in s.items() if k != "record_counts"} for m, s in by_method.items()}
                           for key, by_method in results.items()}, ensure_ascii=False))
    else:
        print_table(results)


def method_label(method: str, s: dict[str, Any]) -> str:
    if "way" in s:  # zero_shot: the strongest of its three ways, named
        return f"{method} (strongest: {s['way']})"
    return method


def verdict(diff: PairedDifference) -> str:
    return diff.verdict() or ("kgopt higher" if diff.low > 0 else "kgopt lower")


def print_intervals(results: dict[str, dict[str, Any]]) -> None:
    rows = [(key, method, s["kgopt_minus"]) for key, methods in results.items() for method, s in methods.items() if "kgopt_minus" in s]
    if not rows:
        return
    print("\n| task | kgopt minus | ΔF1 [95% CI], n | seeds paired | verdict |")
    print("|---|---|---|---|---|")
    for key, method, d in rows:
        diff = PairedDifference.from_json(d)
        print(f"| {key} | {method} | {diff.line()} | {', '.join(map(str, d['seeds']))} | {verdict(diff)} |")


def print_table(results: dict[str, dict[str, Any]]) -> None:
    print("| task | method | held-out F1 mean | min | max | seeds | test records | budget | calls | tokens | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key, methods in results.items():
        for method, s in methods.items():
            if "error" in s:
                print(f"| {key} | {method} | failed: {s['error']} | | | {s['seeds']} | | {s.get('budget') or ''} | | | |")
            else:
                cells = " | ".join(str(s.get(k, "")) for k in ("budget", "calls", "tokens", "seconds"))
                print(f"| {key} | {method_label(method, s)} | {s['mean']:.2f} | {s['min']:.2f} | {s['max']:.2f} | {s['seeds']} | {s['test_records']} | {cells} |")
    print_intervals(results)
    for key, methods in results.items():
        for method, s in methods.items():
            if "ways" in s:
                print(f"\n{key} {method}, the three ways on the same test records: " + ", ".join(f"{k} {v:.2f}" for k, v in s["ways"].items()))
            if "augmentation" in s:
                a = s["augmentation"]
                rejected = ", ".join(f"{k} {v}" for k, v in a["rejected"].items() if v) or "none"
                print(f"\n{key} {method}, augmentation over all seeds: asked {a['asked']}, received {a['received']}, accepted {a['accepted']}; rejected: {rejected}")


if __name__ == "__main__":
    sys.exit(main())
