"""``kgopt compile``: an Optuna study whose trials compile a program with DSPy and score it on dev.

One study per task/language (name ``<TASK>_<lang>`` unless told), in a real database
(``storage.py``). A study records the fingerprint of what its scores depend on (data files,
limits, model and endpoint, search space, versions: ``fingerprint.py``); opening it with
another fingerprint is refused with what differs, and ``--new-study`` names a study after
this run's fingerprint instead. Running the same command again resumes: trials already
complete or pruned count towards ``--trials``; a trial that was running when its process died
is failed by Optuna's heartbeat, not counted, and run again once. Several workers may run the
command on one study at once: the creator sets it up, and together they finish exactly
``--trials`` trials, each configuration once.

Successive halving (on by default, ``halving``): a trial scores dev in growing rungs (5, 10,
20, ... records, then all; ``rungs_of``) and after each reports its F1 so far; a trial below the
median of the trials that reached the same rung is stopped (PRUNED, ``RungPruner``), its rung and
calls recorded. Only trials that scored every dev record can be chosen. Warm starts are never
stopped. ``objective="pareto"`` makes the study two-objective (dev F1 up, prompt tokens per dev
record down; Optuna prunes single-objective studies only, so halving is off): the best F1 is
written, or with ``max_tokens_per_record`` the best F1 within that cap.

Learning from failures (``reflections``, ``--reflect N``; off by default until a benchmark
shows it helps): after the trials, the best trial's dev errors are shown to the model, which
writes up to N instructions (``_propose_reflections``); each becomes one more trial, the best trial's
configuration with that instruction, so it is written only if dev prefers it.

Failures fail: when more than ``max_failed_share`` of a trial's (or the baseline's, or the
instruction proposals') calls failed, nothing is recorded as a score. The trial is marked
FAIL with the reason and queued to run again, the run stops with ``CallsFailed`` and no
program is written. An existing program with a higher dev F1 on the same fingerprint is never
replaced unless ``force``.

``run_compile`` reads as its steps over ``CompileOptions``: load data, connect, open the
study, set it up, score the baseline, run trials (and reflect), write the best. The test split is never read.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
import optuna
import ujson
from loguru import logger
from tqdm import tqdm

from kgopt.clients.lm import Connection, UsageSpan, as_connection
from kgopt.compiler import manifest as mf
from kgopt.compiler.fingerprint import Fingerprint, differences, fingerprint_of
from kgopt.compiler.instructions import PROMPT_VERSION, REFLECT_PROMPT_VERSION, propose_from_failures, propose_instructions
from kgopt.compiler.interrupts import TrialShield
from kgopt.compiler.optimizers import get_optimizer, optimizer_names, run_optimizer
from kgopt.compiler.space import TrialConfig, split_choices, starting_points, suggest
from kgopt.compiler.storage import default_storage, fail_dead_trials, open_storage
from kgopt.compiler.trainset import chunk_examples
from kgopt.core.scoring import ScoreReport, group_lines, score_groups
from kgopt.core.tasks import check_lang, get_task
from kgopt.data.layouts import DataLayout, UserData, layout_of
from kgopt.data.readers import AskedRecord, default_data_dir, load_examples
from kgopt.errors import ArtifactError, BudgetExceeded, CallsFailed, ConfigError, DataError
from kgopt.evaluation import run_program
from kgopt.program import IEProgram, load_program
from kgopt.redaction import redact_url

DEFAULT_OPTIMIZERS = ("labeled", "bootstrap")
SAMPLERS = ("tpe", "cmaes")  # cmaes: CMA-ES on the numeric parameters, TPE for the categorical ones
OBJECTIVES = ("f1", "pareto")  # pareto: dev F1 up, prompt tokens per dev record down
METRIC_NAMES = {"f1": ["dev F1"], "pareto": ["dev F1", "prompt tokens / record"]}  # as the dashboard shows them
FIRST_RUNG = 5  # dev records a trial scores before it is first compared with the others
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial (the dashboard shows it)


@dataclass
class CompileResult:
    path: Path
    manifest: dict[str, Any]
    study_name: str
    storage: str
    trials_run: int
    usage: dict[str, int] = field(default_factory=dict)
    written: bool = True  # False: an existing program with a higher dev F1 was kept (``kept_reason``)
    kept_reason: str | None = None


def score_lines(task: str, lines: list[dict[str, Any]]) -> ScoreReport:
    return score_groups(task, group_lines(enumerate(lines, 1), "<dev>"))


def f1_by_source(report: ScoreReport) -> dict[str, float]:
    return {s: c.headline_f1() for s, c in sorted(report.by_source.items())}


def rungs_of(n: int) -> list[int]:
    """Dev records scored before each report: 5, 10, 20, ... while fewer than ``n``, then ``n``
    (a dev slice of 5 records or fewer is one rung: nothing to stop early)."""
    rungs, r = [], FIRST_RUNG
    while r < n:
        rungs.append(r)
        r *= 2
    return rungs + [n]


def interleave_sources(dev: list[AskedRecord]) -> list[AskedRecord]:
    """Dev records taken in turn from each source (in order within a source), so that every rung
    of successive halving holds every source it can, not the first source's records only."""
    by_source: dict[str, list[AskedRecord]] = {}
    for ex in dev:
        by_source.setdefault(ex.record.source, []).append(ex)
    queues = list(by_source.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def prompt_tokens_per_record(used: dict[str, int], records: int) -> float | None:
    """Prompt tokens per dev record, from the LM usage of scoring ``records`` records: the calls
    sent and the answers replayed from the response cache, at the prompt tokens recorded with
    them. None when the endpoint reports no prompt tokens."""
    tokens = used["prompt_tokens"] + used.get("cached_prompt_tokens", 0)
    if records <= 0 or tokens <= 0:
        return None
    return round(tokens / records, 1)


def trial_f1(t: optuna.trial.FrozenTrial) -> float | None:
    """A trial's dev F1 (its first objective), single- or two-objective."""
    return t.values[0] if t.values else None


class RungPruner(optuna.pruners.BasePruner):
    """Successive halving's rule: stop a trial whose dev F1 at a rung is below the median F1 of
    the other trials that reached that rung (complete or stopped there or later), once at least
    ``min_trials`` did. Every trial scores the same records in the same order, so a rung is the
    same records for all."""

    def __init__(self, min_trials: int = 2):
        self.min_trials = min_trials

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        others = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False, states=states)
                  if t.number != trial.number and step in t.intermediate_values]
        return len(others) >= self.min_trials and trial.intermediate_values[step] < statistics.median(others)


class Compiler:
    """The state one ``compile_program`` call shares between its trials."""

    def __init__(
        self,
        task: str,
        lang: str,
        connection: Connection,
        train: list[AskedRecord],
        dev: list[AskedRecord],
        optimizers: tuple[str, ...],
        max_demos: int,
        seed: int,
        threads: int,
        trials_dir: Path,
        dev_batches: int = 4,
        max_failed_share: float = 0.2,
        fingerprint: str | None = None,
        halving: bool = True,
        objective: str = "f1",
        sampler: str = "tpe",
        continuous: bool = True,
    ):
        self.spec = get_task(task)
        self.lang = lang
        self.connection = connection
        self.train, self.dev = train, interleave_sources(dev)  # the order rungs take them in
        self.optimizers = optimizers
        self.max_demos = max_demos
        self.seed = seed
        self.threads = threads
        self.trials_dir = trials_dir
        self.dev_batches = max(1, min(dev_batches, len(dev)))
        self.instructions: list[str] = []
        self.reflections: list[str] = []  # the study's reflective proposals (``_reflect``), once made
        self.last_lines: list[dict[str, Any]] = []  # the evaluator lines of the last ``evaluate``
        self.splits: tuple[int, ...] | None = None  # the study's split sizes
        self.trials: int | None = None  # finished trials the study should have (all workers together)
        self.budget_spent = False  # this run's --max-calls stopped it
        self.max_failed_share = max_failed_share
        self.calls_failed: CallsFailed | None = None  # a trial whose calls failed stopped this run
        self.fingerprint = fingerprint
        self.shield = TrialShield()  # Ctrl-C stops a trial's work, never Optuna's record of it
        self.objective_name = objective
        self.sampler = sampler
        self.continuous = continuous
        self.halving = halving and objective == "f1"  # Optuna prunes single-objective studies only
        self.rungs = rungs_of(len(self.dev))
        self.warm_starts = starting_points(self.spec, optimizers, max_demos)  # never stopped early
        self.scored = 0  # dev records the last evaluate scored

    @property
    def lm(self):
        return self.connection.lm

    def check_calls(self, span: UsageSpan, what: str) -> None:
        """Raise ``CallsFailed`` if more than ``max_failed_share`` of the calls in ``span`` failed:
        a score made of failed calls measures the endpoint, not the program."""
        u = span.counts()
        asked = u["calls"] + u["cache_hits"] + u["failures"]
        if u["failures"] and u["failures"] > self.max_failed_share * asked:
            raise CallsFailed(f"{what}: {u['failures']} of {asked} LLM calls failed (more than {self.max_failed_share:.0%})")

    def evaluate(self, program: IEProgram, trial: optuna.Trial | None = None, desc: str = "dev", prunable: bool = False,
                 records: int | None = None) -> ScoreReport:
        """Score on dev (its first ``records`` only, if given) in batches (every quarter and every
        rung); after each, stop with ``CallsFailed`` once too many calls failed (a dead endpoint costs
        one batch). At each rung short of all dev, report the F1 so far (step: records scored) to
        the trial of a single-objective study; if ``prunable`` and the pruner says so, record the
        rung and stop."""
        lines: list[dict[str, Any]] = []
        n = len(self.dev) if records is None else max(1, min(records, len(self.dev)))
        quarters = {round(i * n / self.dev_batches) for i in range(self.dev_batches + 1)}
        bounds = sorted(quarters | {r for r in self.rungs if r <= n} | {0})
        report = None
        spent = UsageSpan(self.lm.usage)
        reports = trial is not None and self.objective_name == "f1"
        self.scored = 0
        for a, b in zip(bounds, bounds[1:]):
            for ls in run_program(program, self.dev[a:b], self.connection, self.threads, desc=f"{desc} {b}/{n}"):
                lines.extend(ls)
            self.scored = b
            self.check_calls(spent, desc)
            report = score_lines(self.spec.name, lines)
            self.last_lines = lines
            if reports and b < n and b in self.rungs:
                trial.report(report.total.headline_f1(), step=b)
                if prunable and trial.should_prune():
                    trial.set_user_attr("rung", b)
                    raise optuna.TrialPruned(f"dev F1 {report.total.headline_f1()} after {b} of {n} records")
        return report

    def instruction_of(self, cfg: TrialConfig) -> str:
        return self.reflections[cfg.reflection] if cfg.reflection is not None else self.instructions[cfg.instruction]

    def build(self, cfg: TrialConfig, seed: int) -> IEProgram:
        # Candidate 0 is the official template: that of the trial's answer format.
        instruction = self.instruction_of(cfg) if cfg.instruction or cfg.reflection is not None else None
        program = IEProgram(self.spec.name, self.lang, instruction=instruction, settings=cfg.settings())
        program.set_lm(self.lm)
        trainset = chunk_examples(program.spec, self.train, cfg.split_size)
        if not trainset and cfg.num_demos:
            raise DataError(f"no training record of {self.spec.name}/{self.lang} has a label to show as a demonstration")
        # An optimiser that selects on a valset (mipro, gepa) gets held-out training chunks, never
        # dev (dev picks the trial). The others keep every chunk, so the first warm start is the
        # obvious few-shot program itself.
        cut = max(1, len(trainset) // 4) if get_optimizer(cfg.optimizer).selects_on_valset and len(trainset) > 3 else 0
        valset, trainset = trainset[:cut], trainset[cut:] or trainset
        with dspy.context(lm=self.lm):
            compiled = run_optimizer(cfg.optimizer, program, trainset, valset, self.lm, cfg.num_demos, cfg.demo_choice, seed, cfg.options)
        compiled.set_lm(self.lm)
        return compiled

    def objective(self, trial: optuna.Trial) -> float:
        try:
            with self.shield.unshielded():
                return self._objective(trial)
        except KeyboardInterrupt:
            # Back under the shield: record why, and queue the configuration for the resumed run.
            trial.set_user_attr("stopped", "interrupted")
            if trial.params:
                trial.study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
            raise

    def _objective(self, trial: optuna.Trial) -> float | tuple[float, float]:
        if self.trials is not None and _taken_before(trial) >= self.trials:
            # Another worker took the last trial between our check and this trial's start.
            trial.study.stop()
            raise SurplusTrial(f"the study already has its {self.trials} trials")
        cfg = suggest(trial, self.spec, self.optimizers, len(self.instructions), self.max_demos, self.splits, fixed_space=self.sampler == "cmaes",
                      continuous=self.continuous)
        if "reflection" in trial.user_attrs:  # enqueued by _reflect: recorded as a parameter, so it is its own configuration
            cfg.reflection = trial.suggest_categorical("reflection", list(range(len(self.reflections))))
        twin = _same_configuration(trial)
        if twin is not None:  # a configuration is run once per study, whichever worker proposes it again
            trial.set_user_attr("duplicate_of", twin.number)
            raise optuna.TrialPruned(f"same configuration as trial {twin.number}")
        trial.set_user_attr("instruction_text", self.instruction_of(cfg))
        trial.set_user_attr("worker", WORKER)
        started, spent = time.monotonic(), UsageSpan(self.lm.usage)
        compile_calls = None
        try:
            program = self.build(cfg, self.seed + trial.number)
            self.check_calls(spent, f"trial {trial.number} compile")
            compile_calls = spent.counts()["calls"]
            trial.set_user_attr("compile_calls", compile_calls)
            trial.set_user_attr("demos_in_pool", len(program.extract.demos))
            dev_spent = UsageSpan(self.lm.usage)
            prunable = self.halving and not _is_warm_start(cfg, self.warm_starts)  # warm starts always score all of dev
            try:
                report = self.evaluate(program, trial, desc=f"trial {trial.number} dev", prunable=prunable)
            finally:
                self._record_dev_usage(trial, dev_spent.counts())
        except CallsFailed as exc:
            # FAIL, never a score: not counted towards --trials, and queued to run again.
            trial.set_user_attr("failed", str(exc))
            trial.study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
            self.calls_failed = exc
            trial.study.stop()
            raise
        except BudgetExceeded as exc:
            trial.set_user_attr("stopped", str(exc))
            self.budget_spent = True
            trial.study.stop()
            raise optuna.TrialPruned(str(exc)) from None
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # recorded on the trial (Optuna marks it failed and goes on)
            trial.set_user_attr("error", f"{type(exc).__name__}: {str(exc)[:500]}")
            raise
        finally:
            self._record_usage(trial, spent.counts(), started)
        trial.set_user_attr("rung", len(self.dev))  # every dev record scored
        trial.set_user_attr("dev_f1_by_source", f1_by_source(report))
        trial.set_user_attr("dev_errors", report.total.errors)
        tokens = trial.user_attrs.get("prompt_tokens_per_record")
        if self.objective_name == "pareto" and tokens is None:  # FAIL: a made-up token count would join the front
            why = ("no prompt tokens to measure: every dev answer came from the response cache, or the endpoint reports no usage "
                   "(--objective pareto needs the endpoint's prompt token counts)")
            trial.set_user_attr("error", why)
            raise ConfigError(f"trial {trial.number}: {why}")
        self.trials_dir.mkdir(parents=True, exist_ok=True)
        program.save_artifact(self.trials_dir / f"trial-{trial.number}.json",
                              {"trial": trial.number, "params": trial.params, "fingerprint": self.fingerprint})
        if self.objective_name == "pareto":
            return report.total.headline_f1(), tokens
        return report.total.headline_f1()

    def _record_usage(self, trial: optuna.Trial, used: dict[str, int], started: float) -> None:
        trial.set_user_attr("llm_calls", used["calls"])
        trial.set_user_attr("llm_tokens", used["total_tokens"])
        trial.set_user_attr("cache_hits", used["cache_hits"])
        trial.set_user_attr("seconds", round(time.monotonic() - started, 1))

    def _record_dev_usage(self, trial: optuna.Trial, used: dict[str, int]) -> None:
        """The dev scoring's own calls and prompt tokens per record (of the records it scored)."""
        trial.set_user_attr("dev_calls", used["calls"])
        trial.set_user_attr("prompt_tokens_per_record", prompt_tokens_per_record(used, self.scored))


class SurplusTrial(Exception):
    """A trial started after the study had enough (several workers raced for the last one)."""


def _done(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def _running(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))


def _taken_before(trial: optuna.Trial) -> int:
    """Finished trials, plus running ones that started before ``trial`` (they win a race for the last slot)."""
    study = trial.study
    return len(_done(study)) + sum(t.number < trial.number for t in _running(study))


def _same_configuration(trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
    """An earlier trial (finished or running, any worker) with exactly this trial's parameters."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
    for t in trial.study.get_trials(deepcopy=False, states=states):
        if t.number < trial.number and _effective(t.params) == _effective(trial.params) and not {"duplicate_of", "stopped"} & set(t.user_attrs):
            return t
    return None


def _effective(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters without those it does not use (a CMA-ES study asks every trial the
    demonstration weights; only "weighted" trials use them)."""
    return TrialConfig.from_params(params).params()


def _is_warm_start(cfg: TrialConfig, warm_starts: list[TrialConfig]) -> bool:
    return cfg.params() in [w.params() for w in warm_starts]


@dataclass
class CompileOptions:
    """What one ``kgopt compile`` run does (everything but the connection); checked on creation."""

    task: str
    lang: str
    source: str | None = None
    optimizer: str | None = None  # a registered optimiser (optimizer_names()); None: the study chooses among DEFAULT_OPTIMIZERS
    trials: int = 8
    storage: str | None = field(default=None, repr=False)  # an SQLAlchemy URL (may hold a password); None: SQLite in compiled_dir
    study_name: str | None = None  # None: <TASK>_<lang>
    max_calls: int | None = None  # LLM requests this run may send
    out: str | Path | None = None  # None: compiled_dir/<TASK>_<lang>.json
    data_dir: str | Path | DataLayout | None = None  # a data root, a folder of your own data, or UserData(...)
    augmented: bool = True
    augmented_dir: str | Path | None = None
    train_limit: int | None = 40
    dev_limit: int | None = 8
    max_demos: int = 4
    instruction_proposals: int = 2
    seed: int = 0
    threads: int = 1
    compiled_dir: str | Path = "compiled"
    new_study: bool = False  # name the study after this run's fingerprint (<name>-<8 hex>)
    force: bool = False  # replace an existing program even if its dev F1 on the same fingerprint is higher
    max_failed_share: float = 0.2  # a trial (or the baseline) with more failed calls than this is FAIL
    halving: bool = True  # successive halving over dev (single objective only)
    objective: str = "f1"  # "f1", or "pareto": also minimise prompt tokens per dev record
    max_tokens_per_record: float | None = None  # pareto: write the best dev F1 among trials within this
    sampler: str = "tpe"  # one of SAMPLERS
    instructzero_trials: int = 0  # InstructZero-style instructions written by the embedded model (0: none)
    reflections: int = 0  # after the trials: instructions written from the best trial's dev errors, each one more trial
    continuous: bool = True  # the float parameters (temperature, demonstration weights); False: categorical only (an ablation)

    def __post_init__(self) -> None:
        self.task = get_task(self.task).name
        check_lang(self.lang)
        if self.optimizer is not None and self.optimizer not in optimizer_names():
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(optimizer_names())}")
        if self.trials < 1 or self.max_demos < 0:
            raise ConfigError("--trials must be >= 1 and --max-demos >= 0")
        if not 0 <= self.max_failed_share < 1:
            raise ConfigError("max_failed_share must be at least 0 and below 1")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.sampler == "cmaes" and not self.continuous:
            raise ConfigError("--sampler cmaes searches the float parameters, which --no-continuous removes")
        if self.sampler == "cmaes" and self.objective == "pareto":
            raise ConfigError("--sampler cmaes searches one objective: use the default sampler with --objective pareto")
        if self.instructzero_trials < 0:
            raise ConfigError("--instructzero must be >= 0")
        if self.reflections < 0:
            raise ConfigError("--reflect must be >= 0")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.max_tokens_per_record is not None:
            if self.objective != "pareto":
                # A single-objective study stops trials on F1 alone: the best within a cap may be among them.
                raise ConfigError("--max-tokens-per-record chooses on the Pareto front: pass --objective pareto")
            if self.max_tokens_per_record <= 0:
                raise ConfigError("--max-tokens-per-record must be above 0")
        self.compiled_dir = Path(self.compiled_dir)

    @property
    def optimizers(self) -> tuple[str, ...]:
        return (self.optimizer,) if self.optimizer else DEFAULT_OPTIMIZERS

    @property
    def out_path(self) -> Path:
        return Path(self.out) if self.out else self.compiled_dir / f"{self.task}_{self.lang}.json"

    @property
    def name(self) -> str:
        return self.study_name or f"{self.task}_{self.lang}"

    @property
    def url(self) -> str:
        return self.storage or default_storage(self.compiled_dir)


def compile_program(task: str, lang: str, connection: Connection | None = None, **options: Any) -> CompileResult:
    """Run (or resume) the study for one task/language and write the best program; ``options``
    are ``CompileOptions``' fields. See the module doc."""
    return run_compile(CompileOptions(task, lang, **options), connection)


def run_compile(options: CompileOptions, connection: Connection | None = None) -> CompileResult:
    """The compile as steps: data, connection, study, set-up, baseline, trials, the best written."""
    o = options
    data = _load_data(o)  # a bad file fails before any LLM call
    connection = as_connection(connection)
    lm = connection.lm
    if o.max_calls is not None:
        lm.max_calls = lm.requests_sent + o.max_calls
    spent = UsageSpan(lm.usage)  # this run's calls (a resumed study's earlier runs are in its trials)
    files = data.files(o.task, o.lang)  # hashed once: for the fingerprint and the manifest
    fp = fingerprint_of(o, files, sorted({ex.record.source for ex in data.dev}), connection)
    study, created = _study_for(o, fp)
    comp = Compiler(o.task, o.lang, connection, data.train + data.augmented, data.dev, o.optimizers, o.max_demos, o.seed, o.threads,
                    Path("runs") / "compile" / study.study_name, max_failed_share=o.max_failed_share, fingerprint=fp.digest,
                    halving=o.halving, objective=o.objective, sampler=o.sampler, continuous=o.continuous)
    comp.trials = o.trials
    _say_halving(o, comp)
    try:
        _set_up(study, created, comp, data.train, data.dev, o.instruction_proposals, o.instructzero_trials)
        _score_baseline(study, comp)
        with _reserve_for_reflection(comp, o):
            _run_trials(study, comp, o.trials, o.url, spent)
        _reflect(study, comp, o, spent)
        if comp.calls_failed is not None:
            raise CallsFailed(f"{comp.calls_failed}; no program was written, finished trials are kept in study {study.study_name}; "
                              "re-run the same command to resume once the endpoint answers")
        if comp.budget_spent:
            logger.warning("the call budget (--max-calls {}) stopped the study; the best trial so far is used", o.max_calls)
        return _write_best(study, comp, o, data, files, spent)
    finally:
        u = spent.counts()
        logger.info("LLM use: {} calls, {} tokens, {} from cache, {} failed", u["calls"], u["total_tokens"], u["cache_hits"], u["failures"])


SETUP_WAIT_SECONDS = 120  # how long a joining worker waits for the creator to set the study up


def _study_for(o: CompileOptions, fp: Fingerprint) -> tuple[optuna.Study, bool]:
    """The options' study, opened or created. One with another fingerprint is refused with what
    differs: its trials were scored on other data, another model or another search space."""
    name = f"{o.name}-{fp.short}" if o.new_study else o.name
    study, created = _open_study(o.url, name, o.seed, fp, o.objective, o.sampler)
    attrs = study.user_attrs
    where = f"study {name!r} in {redact_url(o.url)}"
    remedy = f"pass --new-study to start the study {o.name}-{fp.short} for this run, or --study NAME"
    if attrs.get("task", o.task) != o.task or attrs.get("lang", o.lang) != o.lang:
        raise ConfigError(f"{where} is for {attrs.get('task')}/{attrs.get('lang')}, not {o.task}/{o.lang}; {remedy}")
    recorded = attrs.get("fingerprint")
    if recorded is None:
        if "instructions" in attrs or study.get_trials(deepcopy=False):
            raise ConfigError(f"{where} records no fingerprint of its data and model (an older kgopt made it), "
                              f"so its trials may not score this run; {remedy}")
        _record_fingerprint(study, fp)  # an empty study another worker is creating, or left empty
    elif recorded != fp.digest:
        changed = differences(attrs.get("fingerprint_parts", {}), fp.parts) or ["its fingerprint"]
        raise ConfigError(f"{where} was run on another setting; changed: {'; '.join(changed)}. Its trials do not score this run; {remedy}")
    if study.metric_names is None:  # a study made before kgopt named them
        _name_metrics(study, o.objective)
    return study, created


def _name_metrics(study: optuna.Study, objective: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable in practice since Optuna 3.2
        study.set_metric_names(METRIC_NAMES[objective])


def _say_halving(o: CompileOptions, comp: Compiler) -> None:
    if o.objective == "pareto":
        if o.halving:
            logger.info("--objective pareto: successive halving is off (Optuna stops trials early in single-objective studies only)")
    elif not o.halving:
        logger.info("successive halving is off (--no-halving): every trial scores all {} dev records", len(comp.dev))
    elif len(comp.rungs) == 1:
        logger.info("successive halving: one rung (dev has {} records, {} or fewer): every trial scores all of dev", len(comp.dev), FIRST_RUNG)
    else:
        logger.info("successive halving: trials score dev in rungs of {} records; one below the median at a rung stops there",
                    ", ".join(map(str, comp.rungs)))


def _record_fingerprint(study: optuna.Study, fp: Fingerprint) -> None:
    study.set_user_attr("fingerprint_parts", fp.parts)
    study.set_user_attr("fingerprint", fp.digest)


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The study's sampler. TPE: every parameter, with a constant liar for several workers.
    CMA-ES: the numeric parameters (demonstration weights, temperature, counts) as one
    distribution, TPE for the categorical ones it cannot model."""
    tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, constant_liar=True)
    if name == "tpe":
        return tpe
    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=4, with_margin=True, independent_sampler=tpe, warn_independent_sampling=False)


def _open_study(url: str, name: str, seed: int, fp: Fingerprint, objective: str = "f1", sampler: str = "tpe") -> tuple[optuna.Study, bool]:
    """Create the study, or join it if it exists; True if this process created it. ``objective``
    "pareto": two directions (dev F1 up, prompt tokens per record down), no pruner."""
    storage = open_storage(url)
    pruner = RungPruner() if objective == "f1" else optuna.pruners.NopPruner()
    directions = ["maximize"] if objective == "f1" else ["maximize", "minimize"]
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions, sampler=make_sampler(sampler, seed), pruner=pruner)
        _record_fingerprint(study, fp)  # before setup_started: a joining worker that sees one sees both
        _name_metrics(study, objective)
        study.set_user_attr("setup_started", time.time())
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        # A worker joining (or resuming) a study draws from its own random stream, so that two
        # workers do not propose the same configurations in lockstep.
        return optuna.load_study(storage=storage, study_name=name, sampler=make_sampler(sampler, seed + os.getpid()), pruner=pruner), False


def _set_up(study: optuna.Study, created: bool, comp: Compiler, train: list[AskedRecord], dev: list[AskedRecord], proposals: int,
            instructzero_trials: int = 0) -> None:
    """Fix the study's choices once: instruction candidates and warm starts (by one worker)."""
    if "instructions" not in study.user_attrs and not created:
        _wait_for_set_up(study)
    if "instructions" not in study.user_attrs:
        try:
            _fix_choices(study, comp, train, dev, proposals, instructzero_trials)
        except BaseException:
            study.set_user_attr("setup_started", None)  # nobody is setting it up now: a re-run need not wait
            raise
    comp.instructions = study.user_attrs["instructions"]
    comp.reflections = study.user_attrs.get("reflection", {}).get("instructions", [])
    comp.splits = _study_splits(study, comp.spec)


def _fix_choices(study: optuna.Study, comp: Compiler, train: list[AskedRecord], dev: list[AskedRecord], proposals: int,
                 instructzero_trials: int) -> None:
    """The study's instruction candidates and warm starts, fixed for its life (``_set_up``)."""
    spec, lang = comp.spec, comp.lang
    study.set_user_attr("task", spec.name)
    study.set_user_attr("lang", lang)
    study.set_user_attr("sources", sorted({ex.record.source for ex in dev}))
    shown = chunk_examples(spec, train, spec.split_size)
    instructions, counts = propose_instructions(spec, lang, comp.lm, shown, proposals, comp.seed, schemas=[ex.schema for ex in train])
    if counts["failed"] and counts["failed"] > comp.max_failed_share * counts["asked"]:
        # The instruction choices are fixed for the study's life: never fix them short.
        raise CallsFailed(f"instruction proposals: {counts['failed']} of {counts['asked']} LLM calls failed; the study was not set up")
    study.set_user_attr("instruction_proposals", counts)
    if instructzero_trials:
        instructions += [t for t in _instructzero(study, comp, shown, instructzero_trials) if t not in instructions]
    for cfg in starting_points(spec, comp.optimizers, comp.max_demos):
        study.enqueue_trial(cfg.params(), skip_if_exists=True)
    # Set last: its presence means the study's choices are fixed from now on.
    study.set_user_attr("instructions", instructions)


def _instructzero(study: optuna.Study, comp: Compiler, shown: list, trials: int) -> list[str]:
    """InstructZero-style candidates (``kgopt.compiler.instructzero``): the embedded model writes
    instructions from soft prompts z and three training examples; each is scored zero-shot on dev
    through the target endpoint (on dev's first rung), which only ever sees the text. The best
    joins the candidates."""
    import random

    from kgopt.compiler.instructzero import InstructionWriter, search_instructions

    examples = random.Random(comp.seed).sample(shown, min(3, len(shown)))

    def score(text: str) -> float:
        study.set_user_attr("setup_started", time.time())  # still setting up: joining workers keep waiting
        # On the first rung of dev: the search is a pre-selection, and the candidate it keeps is
        # scored on all of dev as a trial; all of dev per written instruction fits few in a budget.
        program = IEProgram(comp.spec.name, comp.lang, instruction=text)
        return comp.evaluate(program, desc="instructzero dev", records=comp.rungs[0]).total.headline_f1()

    with InstructionWriter(projection_seed=comp.seed, n_threads=1) as writer:
        res = search_instructions(writer, score, n_trials=trials, seed=comp.seed, sampler="gp", examples=examples, lang=comp.lang)
    study.set_user_attr("instructzero", res.to_json())
    logger.info("InstructZero: {} instructions written, best dev F1 {} : {!r}", len(res.trials), res.score, res.instruction)
    return res.candidates(1)


REFLECT_FROM = 3  # dev records the model is shown per reflection: a small model's context stays small


@contextmanager
def _reserve_for_reflection(comp: Compiler, o: CompileOptions) -> Iterator[None]:
    """Under ``--max-calls``, the trials leave ``--reflect``'s share of the budget: per instruction,
    its proposal call and one scoring of all dev, plus the best trial's dev answers again when
    there is no response cache to give them. Without it the trials spend the budget, and the
    study ends before it reflects (seen on KG/zh at B = 150)."""
    lm = comp.lm
    cap = lm.max_calls
    if not o.reflections or cap is None:
        yield
        return
    dev_calls = len(chunk_examples(comp.spec, comp.dev, comp.spec.split_size, False))
    reserve = o.reflections * (1 + dev_calls) + (dev_calls if lm.response_cache is None else 0)
    lm.max_calls = max(lm.requests_sent, cap - reserve)
    logger.info("--reflect: the trials leave {} calls of the budget for the reflective instructions and their trials", cap - lm.max_calls)
    try:
        yield
    finally:
        lm.max_calls = cap
        comp.budget_spent = lm.calls_left == 0  # the lower cap stopping the trials does not spend the budget


def _reflect(study: optuna.Study, comp: Compiler, o: CompileOptions, spent: UsageSpan) -> None:
    """``--reflect``: the reflective instructions proposed (once per study), then their trials run."""
    if not o.reflections or comp.calls_failed is not None or comp.budget_spent:
        return
    _propose_reflections(study, comp, o.reflections)
    comp.trials = o.trials + len(comp.reflections)
    _run_trials(study, comp, comp.trials, o.url, spent)


def _propose_reflections(study: optuna.Study, comp: Compiler, n: int) -> None:
    """Learning from failures, once per study: the best complete trial's dev errors are shown to
    the model (``propose_from_failures``), and each instruction it writes is enqueued as that
    trial's configuration with the new instruction, so dev decides whether it is kept."""
    if "reflection" in study.user_attrs:
        return  # made by an earlier run or another worker: its trials are enqueued or done
    # Not locked: two workers that reach this point together would each write their texts, and
    # the last one's are the study's (docs/compile.md#learning-from-failures).
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.values]
    if not complete:
        logger.info("--reflect: no complete trial to learn from")
        return
    best = max(complete, key=lambda t: (trial_f1(t), -t.number))
    comp.evaluate(_program_of(best, comp), desc=f"reflect: trial {best.number} dev")  # its answers come from the response cache
    failures = dev_failures(comp.spec.name, comp.last_lines)[:REFLECT_FROM]
    if not failures:
        logger.info("--reflect: trial {} made no error on dev; nothing to learn from", best.number)
        return
    current = best.user_attrs.get("instruction_text") or comp.instructions[0]
    texts, counts = propose_from_failures(comp.lang, comp.lm, current, failures, n, comp.seed, known=comp.instructions)
    if counts["failed"] > comp.max_failed_share * counts["asked"]:
        raise CallsFailed(f"reflective proposals: {counts['failed']} of {counts['asked']} LLM calls failed")
    study.set_user_attr("reflection", {"from_trial": best.number, "prompt": REFLECT_PROMPT_VERSION, "counts": counts,
                                       "records_shown": [f["id"] for f in failures], "instructions": texts})
    comp.reflections = texts
    for i in range(len(texts)):
        study.enqueue_trial({**best.params, "reflection": i}, user_attrs={"reflection": i})
    logger.info("--reflect: {} instructions written from {} dev errors of trial {}; each is scored as one more trial",
                len(texts), len(failures), best.number)


def dev_failures(task: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records ``lines`` (evaluator lines) got wrong: id, input, the model's answer and the
    gold labels; records with gold labels missed first, in dev order."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_id.setdefault(line["id"], []).append(line)
    out = []
    for rid, group in by_id.items():
        tp, pred, gold = score_lines(task, group).total.headline()
        if tp == pred == gold:
            continue
        text = ujson.loads(group[0]["instruction"]).get("input", "")
        out.append({"id": rid, "input": text, "output": " ".join(l.get("output") or "" for l in group), "gold": group[0]["label"], "missed": gold - tp})
    return sorted(out, key=lambda f: f["missed"] == 0)


def _wait_for_set_up(study: optuna.Study) -> None:
    """Another worker created the study and is setting it up: wait for it (or take over if it died)."""
    started = study.user_attrs.get("setup_started")
    if started is None:
        return
    logger.info("study {} is being set up by another worker; waiting", study.study_name)
    while started is not None and time.time() - started < SETUP_WAIT_SECONDS:
        time.sleep(1.0)
        attrs = study.user_attrs
        if "instructions" in attrs:
            return
        started = attrs.get("setup_started")  # a long set-up (InstructZero) keeps refreshing it
    logger.warning("study {} was not set up within {} s (its creator died?); setting it up here", study.study_name, SETUP_WAIT_SECONDS)


def _score_baseline(study: optuna.Study, comp: Compiler) -> None:
    if "baseline_dev" not in study.user_attrs:  # stored only when its calls did not fail (evaluate raises)
        logger.info("scoring the zero-shot baseline on dev")
        spent = UsageSpan(comp.lm.usage)
        report = comp.evaluate(IEProgram(comp.spec.name, comp.lang), desc="zero-shot dev")
        study.set_user_attr("baseline_dev", {"f1": report.total.headline_f1(), "by_source": f1_by_source(report), "errors": report.total.errors,
                                             "prompt_tokens_per_record": prompt_tokens_per_record(spent.counts(), len(comp.dev))})


def _run_trials(study: optuna.Study, comp: Compiler, trials: int, url: str, spent: UsageSpan) -> None:
    """Run trials until the study (all workers together) has ``trials`` finished ones.

    One trial at a time: before each, trials of dead workers are failed (heartbeat; a failed
    one is enqueued again) and the trials other workers are running count as taken. When the
    rest are running elsewhere, wait for them, so every worker writes the same best program.
    """
    remaining = trials - len(_done(study))
    if remaining <= 0:
        logger.info("study {} already has {} finished trials; writing its best program", study.study_name, len(_done(study)))
        return
    logger.info("study {}: {} trials done, up to {} more (storage {})", study.study_name, trials - remaining, remaining, redact_url(url))
    with tqdm(total=remaining, desc=f"compile {comp.spec.name}/{comp.lang}", unit="trial", dynamic_ncols=True) as bar:

        def progress(st: optuna.Study, tr: optuna.trial.FrozenTrial) -> None:
            u = spent.counts()
            best = max((trial_f1(t) for t in _done(st) if t.values and t.state.name == "COMPLETE"), default=None)
            bar.set_postfix(best_f1=best, calls=u["calls"], tokens=u["total_tokens"], refresh=False)
            bar.update(1)

        started = 0  # a run starts at most `remaining` trials, failed ones included (they are not retried here)
        while not comp.budget_spent and comp.calls_failed is None:
            fail_dead_trials(study)
            done, running = len(_done(study)), len(_running(study))
            if done >= trials:
                break
            if done + running >= trials:
                time.sleep(1.0)  # the last trials run in other workers
                continue
            if started >= remaining:
                break
            with comp.shield.shielded():
                study.optimize(comp.objective, n_trials=1, catch=(Exception,), callbacks=[progress], gc_after_trial=True)
            started += 1


def _study_splits(study: optuna.Study, spec) -> tuple[int, ...]:
    """The split sizes a study searches, fixed at its creation: Optuna refuses a parameter
    whose choices change within a study, so a study made before the choices changed keeps its own."""
    if "split_choices" not in study.user_attrs:
        old = next((t.distributions["split_size"] for t in study.get_trials(deepcopy=False) if "split_size" in t.distributions), None)
        choices = tuple(old.choices) if old is not None else split_choices(spec)
        study.set_user_attr("split_choices", list(choices))
    return tuple(study.user_attrs["split_choices"])


def _load_data(o: CompileOptions) -> mf.TrainingData:
    """Train, augmented-train and dev examples (the test split is never read)."""
    train = load_examples(o.task, o.lang, "train", data_dir=o.data_dir, source=o.source, limit=o.train_limit)
    aug: list[AskedRecord] = []
    aug_root = Path(o.augmented_dir) if o.augmented_dir else default_data_dir() / "augmented"
    # Augmented samples are of IEPile's and InstructIE's sources: never mixed into your own data.
    if o.augmented and aug_root.is_dir() and not isinstance(layout_of(o.task, o.data_dir), UserData):
        try:
            aug = load_examples(o.task, o.lang, "train", data_dir=aug_root, source=o.source, limit=o.train_limit)
        except DataError as exc:
            if "no " not in exc.reason and "unknown source" not in exc.reason:
                raise  # a malformed augmented file is an error; a missing one is not
    dev = load_examples(o.task, o.lang, "dev", data_dir=o.data_dir, source=o.source, limit=o.dev_limit)
    if not dev:
        raise DataError(f"no {o.task}/{o.lang} dev records to select on")
    logger.info("{} {}: {} train + {} augmented records, {} dev records", o.task, o.lang, len(train), len(aug), len(dev))
    return mf.TrainingData(train, aug, dev, o.data_dir, aug_root, o.source, o.train_limit, o.dev_limit)


def _choose(study: optuna.Study, comp: Compiler, cap: float | None = None) -> tuple[IEProgram, optuna.trial.FrozenTrial | None, str]:
    """The best complete trial's program if it beats the zero-shot baseline on dev. On a tie with
    zero-shot, the first warm start (the obvious few-shot program) if it completed: on small dev
    slices ties are common (all 0), and few-shot beat zero-shot on held-out data where measured
    (BENCHMARKS.md#equal-budget-kgopt-compile-against-plain-dspy-optimisers). Else the baseline.

    Only complete trials count: a trial successive halving stopped saw part of dev. In a pareto
    study a tie on F1 goes to the fewer prompt tokens per record; with ``cap``
    (``--max-tokens-per-record``) only trials within it count, and the baseline only if it is
    within it too (else the best trial within the cap is written even below zero-shot; with none,
    ``ConfigError`` and nothing is written). Returns the program, its trial (None: the baseline)
    and how it was chosen: "trial", "warm start" or "baseline"."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.values]
    pareto = comp.objective_name == "pareto"

    def tokens(t: optuna.trial.FrozenTrial) -> float | None:
        return t.user_attrs.get("prompt_tokens_per_record")

    def within(value: float | None) -> bool:
        return cap is None or (value is not None and value <= cap)

    eligible = [t for t in complete if within(tokens(t))]
    baseline = study.user_attrs["baseline_dev"]
    zero_shot, zero_tokens = baseline["f1"], baseline.get("prompt_tokens_per_record")
    best = max(eligible, key=lambda t: (trial_f1(t), -(tokens(t) or 0) if pareto else 0, -t.number)) if eligible else None
    if not within(zero_tokens):
        if best is None:
            fewest = min((tokens(t) for t in complete if tokens(t) is not None), default=None)
            raise ConfigError(f"no complete trial uses at most {cap:g} prompt tokens per dev record (the fewest: {fewest}), nor does "
                              f"the zero-shot baseline ({zero_tokens}); no program was written. The study's trials are kept: "
                              "re-run with a higher --max-tokens-per-record")
        if trial_f1(best) < zero_shot:
            logger.warning("the zero-shot baseline ({} prompt tokens per record) is over --max-tokens-per-record {:g}; the best trial "
                           "within it is written, below zero-shot on dev ({} < {})", zero_tokens, cap, trial_f1(best), zero_shot)
        return _program_of(best, comp), best, "trial"
    if best is not None and trial_f1(best) == zero_shot:
        first = comp.warm_starts[0]
        best = next((t for t in eligible if trial_f1(t) == zero_shot and _is_warm_start(TrialConfig.from_params(t.params), [first])), None)
        if best is not None:
            logger.warning("no trial beat the zero-shot baseline on dev ({}); the tied first warm start (few-shot) is written", zero_shot)
            return _program_of(best, comp), best, "warm start"
    if best is None or trial_f1(best) < zero_shot:
        if not complete:
            logger.warning("no trial completed; the zero-shot baseline is written")
        else:
            logger.warning("no trial beat the zero-shot baseline on dev ({}); the baseline is written", zero_shot)
        return IEProgram(comp.spec.name, comp.lang), None, "baseline"
    return _program_of(best, comp), best, "trial"


def _halving_record(study: optuna.Study, comp: Compiler) -> dict[str, Any]:
    """What successive halving did over the whole study (every run): the trials it stopped, at
    which rung, and the LLM calls that saved, estimated per stopped trial as its dev calls per
    record scored times the dev records it did not score."""
    n = len(comp.dev)
    stopped = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,)):
        rung = t.user_attrs.get("rung")
        if isinstance(rung, int) and 0 < rung < n:
            calls = t.user_attrs.get("dev_calls", 0)
            stopped.append({"trial": t.number, "rung": rung, "dev_calls": calls, "calls_saved": round(calls / rung * (n - rung))})
    record: dict[str, Any] = {"on": comp.halving, "rungs": comp.rungs if comp.halving else [n], "dev_records": n,
                              "trials_stopped": len(stopped), "calls_saved_estimate": sum(s["calls_saved"] for s in stopped), "stopped": stopped}
    if comp.objective_name == "pareto":
        record["off_because"] = "objective pareto: Optuna stops trials early in single-objective studies only"
    return record


def _say_saved(halving: dict[str, Any]) -> None:
    if halving["trials_stopped"]:
        n = halving["trials_stopped"]
        rungs = ", ".join(str(r) for r in sorted(s["rung"] for s in halving["stopped"]))
        logger.info("early stopping saved ~{} calls ({} trial{} stopped at rungs {} of {} dev records)",
                    halving["calls_saved_estimate"], n, "s" if n > 1 else "", rungs, halving["dev_records"])
    elif halving["on"] and len(halving["rungs"]) > 1:
        logger.info("early stopping saved ~0 calls (no trial stopped at rungs {})", ", ".join(map(str, halving["rungs"][:-1])))


def _pareto_front(study: optuna.Study) -> list[dict[str, Any]]:
    """The complete trials no other beats on both dev F1 and prompt tokens per record, best F1 first."""
    front = sorted(study.best_trials, key=lambda t: (-t.values[0], t.values[1], t.number))
    return [{"trial": t.number, "f1": t.values[0], "prompt_tokens_per_record": t.values[1]} for t in front]


def _program_of(trial: optuna.trial.FrozenTrial, comp: Compiler) -> IEProgram:
    art = comp.trials_dir / f"trial-{trial.number}.json"
    program, saved = load_program(art, comp.spec.name, comp.lang) if art.is_file() else (None, {})
    if program is None or saved.get("params") != trial.params or saved.get("fingerprint") != comp.fingerprint:
        # Another worker ran it, or the file is from an older study of the same name:
        # rebuild from the trial's parameters (deterministic given the response cache).
        program = comp.build(TrialConfig.from_params(trial.params), comp.seed + trial.number)
    return program


def _write_best(study: optuna.Study, comp: Compiler, o: CompileOptions, data: mf.TrainingData, files: dict[str, Any],
                spent: UsageSpan) -> CompileResult:
    program, best, chosen = _choose(study, comp, o.max_tokens_per_record)
    done = _done(study)
    study_record = {
        "name": study.study_name,
        "storage": redact_url(o.url),
        "fingerprint": comp.fingerprint,
        "trials_finished": len(done),
        "instruction_prompt": PROMPT_VERSION,
        # What making this program cost over the whole study (all runs), from the trials' records.
        "llm_calls": sum(t.user_attrs.get("llm_calls", 0) for t in done),
        "llm_tokens": sum(t.user_attrs.get("llm_tokens", 0) for t in done),
        "trial_seconds": round(sum(t.user_attrs.get("seconds", 0) for t in done), 1),
        "objective": o.objective,
        "halving": _halving_record(study, comp),
    }
    if "instructzero" in study.user_attrs:  # z, the projection seed and the texts: what rebuilds its candidate
        study_record["instructzero"] = study.user_attrs["instructzero"]
    if "reflection" in study.user_attrs:  # the reflective instructions, what they were written from, and their trials
        study_record["reflection"] = {**study.user_attrs["reflection"], "trials": _reflection_trials(study)}
    if o.objective == "pareto":
        study_record["pareto_front"] = _pareto_front(study)
        study_record["max_tokens_per_record"] = o.max_tokens_per_record
    _say_saved(study_record["halving"])
    manifest = mf.compiled_manifest(comp.spec.name, comp.lang, comp.connection, data, study.user_attrs["baseline_dev"], best, study_record,
                                    spent.counts(), files=files, chosen=chosen)
    result = CompileResult(o.out_path, manifest, study.study_name, redact_url(o.url), len(done), manifest["llm"])
    kept = None if o.force else _better_existing(o.out_path, manifest)
    if kept:
        logger.warning("{}; pass --force to replace it", kept)
        result.written, result.kept_reason = False, kept
        return result
    program.save_artifact(o.out_path, manifest)
    logger.info("wrote {} (dev F1 {} vs zero-shot {}; {})", o.out_path, manifest["dev"]["f1"], manifest["baseline_dev"]["f1"], manifest["chosen"])
    return result


def _reflection_trials(study: optuna.Study) -> list[dict[str, Any]]:
    return [{"trial": t.number, "reflection": t.params["reflection"], "state": t.state.name, "f1": trial_f1(t)}
            for t in study.get_trials(deepcopy=False) if "reflection" in t.params]


def _better_existing(path: Path, manifest: dict[str, Any]) -> str | None:
    """Why the program already at ``path`` must stay: made on the same fingerprint with a higher
    dev F1. None if it may be replaced (none there, another fingerprint, not higher, unreadable)."""
    if not path.is_file():
        return None
    try:
        _, old = load_program(path)
    except ArtifactError as exc:
        logger.warning("replacing {}, which does not load: {}", path, exc)
        return None
    old_f1, new_f1 = (old.get("dev") or {}).get("f1"), manifest["dev"]["f1"]
    same = (old.get("study") or {}).get("fingerprint") == manifest["study"]["fingerprint"]
    if same and isinstance(old_f1, (int, float)) and old_f1 > new_f1:
        return f"kept {path}: its dev F1 {old_f1:.2f} on the same data and model is higher than this run's {new_f1:.2f}"
    if not same:
        logger.info("replacing {} (compiled on another fingerprint: other data, model or search space)", path)
    return None
