"""The DSPy optimisers a trial can use: one ``Optimizer`` subclass each, in one registry.

A subclass says what it is (``name``, ``selects_on_valset``, ``demos_only``), which of its own
settings the study searches (``suggest_options``, as Optuna parameters ``<name>_<key>``), their
``defaults`` and how it compiles; ``@register_optimizer`` adds it to the study's and the CLI's
choices. ``run_optimizer`` is what a trial calls.

Every optimiser ends with the predictor's demo pool (and, for mipro/gepa, possibly a new
instruction); ``apply_demo_choice`` then shapes the pool for how demonstrations are chosen:
``random`` keeps ``num_demos`` of them, ``coverage`` orders them so the first ``num_demos``
cover the most labels, ``similar`` and ``weighted`` keep a larger pool and the program picks
per input (``weighted`` by the ``demo_weights`` already in the program's settings).

- ``labeled``: DSPy ``LabeledFewShot`` - gold examples as demonstrations.
- ``bootstrap``: DSPy ``BootstrapFewShot`` - the model's own answers that score > 0 on the
  chunk metric, topped up with gold examples.
- ``mipro``: DSPy ``MIPROv2`` - LLM-proposed instructions x bootstrapped demo sets, searched
  with its own small Bayesian search on the validation chunks.
- ``gepa``: DSPy ``GEPA`` - reflective instruction evolution from textual feedback, starting
  from gold demonstrations.

mipro and gepa talk to the model in DSPy's own structured prompts (proposals, reflection); a
model that cannot follow them (the tiny embedded one) makes their trials fail, and each failed
trial records its error in the study.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Any, ClassVar

import dspy

from kgopt.compiler.trainset import make_feedback_metric, make_metric
from kgopt.core.demos import cover_labels
from kgopt.program import IEProgram, demo_labels

if TYPE_CHECKING:
    import optuna

SIMILAR_POOL = 24  # demonstrations kept for per-input selection
GEPA_MINIBATCH = 2  # examples GEPA's reflection reads per iteration
PER_INPUT_CHOICES = ("similar", "weighted")  # demo choices the program makes per input, from a pool


class Optimizer:
    """One DSPy optimiser as a trial runs it. Stateless: the registry holds one instance."""

    name: ClassVar[str]
    # It chooses among candidates on held-out training chunks (the study holds a quarter out).
    selects_on_valset: ClassVar[bool] = False
    # It only picks demonstrations: with none to show there is nothing to compile (no model call).
    demos_only: ClassVar[bool] = False

    def param(self, key: str) -> str:
        """The Optuna parameter of option ``key`` (``TrialConfig`` reads it back by this prefix)."""
        return f"{self.name}_{key}"

    def suggest_options(self, trial: optuna.Trial, max_demos: int) -> dict[str, Any]:
        """The optimiser's own searched settings for one trial, keyed as ``defaults`` is."""
        return {}

    def defaults(self, max_demos: int) -> dict[str, Any]:
        """The settings used when none are given, for at most ``max_demos`` demonstrations."""
        return {}

    def compile(
        self,
        program: IEProgram,
        trainset: list[dspy.Example],
        valset: list[dspy.Example],
        lm: Any,
        num_demos: int,
        demo_choice: str,
        seed: int,
        options: dict[str, Any],
    ) -> IEProgram:
        """The optimised copy of ``program``. ``options`` holds every key of ``defaults``;
        ``demo_choice`` only sizes the pool here (``run_optimizer`` shapes it afterwards)."""
        raise NotImplementedError


REGISTRY: dict[str, Optimizer] = {}


def register_optimizer(cls: type[Optimizer]) -> type[Optimizer]:
    """Class decorator: make ``cls`` one of the optimisers a study and the CLI offer."""
    name = getattr(cls, "name", None)
    # No underscore: ``TrialConfig.from_params`` finds an optimiser's options by "<name>_",
    # which must not also catch another optimiser's or a base parameter (num_demos, max_len).
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9]*", name):
        raise ValueError(f"optimizer {cls.__name__}: name must be lowercase letters and digits, got {name!r}")
    if name in REGISTRY:
        raise ValueError(f"optimizer {name!r} is already registered ({type(REGISTRY[name]).__name__})")
    REGISTRY[name] = cls()
    return cls


def optimizer_names() -> tuple[str, ...]:
    """The registered optimisers, in registration order (read at call time)."""
    return tuple(REGISTRY)


def get_optimizer(name: str) -> Optimizer:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(REGISTRY)}") from None


def __getattr__(attr: str) -> Any:
    # ``OPTIMIZERS``, kept for importers, is computed on access so it sees later registrations.
    if attr == "OPTIMIZERS":
        return optimizer_names()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _pool_size(num_demos: int, demo_choice: str) -> int:
    return max(num_demos, SIMILAR_POOL) if demo_choice in PER_INPUT_CHOICES else num_demos


def _valset(trainset: list[dspy.Example], valset: list[dspy.Example]) -> list[dspy.Example]:
    return valset or trainset[: max(2, len(trainset) // 3)]


@register_optimizer
class Labeled(Optimizer):
    name = "labeled"
    demos_only = True

    def compile(self, program, trainset, valset, lm, num_demos, demo_choice, seed, options):
        if demo_choice == "coverage":
            compiled = program.deepcopy()
            compiled.extract.demos = cover_labels(trainset, num_demos, labels_of=demo_labels, seed=seed)
            return compiled
        return dspy.LabeledFewShot(k=_pool_size(num_demos, demo_choice)).compile(program, trainset=trainset, sample=False)


@register_optimizer
class Bootstrap(Optimizer):
    name = "bootstrap"
    demos_only = True

    def suggest_options(self, trial, max_demos):
        return {"bootstrapped": trial.suggest_int(self.param("bootstrapped"), 1, max(1, max_demos))}

    def defaults(self, max_demos):
        return {"bootstrapped": max(1, max_demos)}

    def compile(self, program, trainset, valset, lm, num_demos, demo_choice, seed, options):
        tele = dspy.BootstrapFewShot(
            metric=make_metric(program.spec),
            max_bootstrapped_demos=int(options["bootstrapped"]),
            max_labeled_demos=_pool_size(num_demos, demo_choice),
            max_rounds=1,
            max_errors=len(trainset) + 1,  # a failed call is a miss, not the end of the trial
        )
        # Bootstrapping runs the model on examples until enough pass: bound how many it tries.
        return tele.compile(program, trainset=trainset[: 4 * max(1, num_demos)])


@register_optimizer
class Mipro(Optimizer):
    name = "mipro"
    selects_on_valset = True

    def suggest_options(self, trial, max_demos):
        return {"candidates": trial.suggest_int(self.param("candidates"), 2, 4), "trials": trial.suggest_int(self.param("trials"), 2, 6)}

    def defaults(self, max_demos):
        return {"candidates": 3, "trials": 4}

    def compile(self, program, trainset, valset, lm, num_demos, demo_choice, seed, options):
        tele = dspy.MIPROv2(
            metric=make_metric(program.spec),
            prompt_model=lm,
            task_model=lm,
            auto=None,
            num_candidates=int(options["candidates"]),
            max_bootstrapped_demos=num_demos,
            max_labeled_demos=num_demos,
            num_threads=1,
            seed=seed,
            verbose=False,
            track_stats=False,
        )
        return tele.compile(
            program,
            trainset=trainset,
            valset=_valset(trainset, valset),
            num_trials=int(options["trials"]),
            minibatch=False,
            program_aware_proposer=False,  # kgopt's source says nothing the task text does not
            data_aware_proposer=False,  # a dataset summary costs many calls for little
            requires_permission_to_run=False,
        )


@register_optimizer
class Gepa(Optimizer):
    name = "gepa"
    selects_on_valset = True

    def suggest_options(self, trial, max_demos):
        return {"metric_calls": trial.suggest_categorical(self.param("metric_calls"), [12, 24, 48])}

    def defaults(self, max_demos):
        return {"metric_calls": 24}

    def compile(self, program, trainset, valset, lm, num_demos, demo_choice, seed, options):
        # A caller may add GEPA stoppers (``stop_callbacks``, not searched), e.g. to end it when a
        # call budget could not pay for its next reflection call.
        stoppers = options.get("stop_callbacks")
        tele = dspy.GEPA(
            metric=make_feedback_metric(program.spec),
            max_metric_calls=int(options["metric_calls"]),
            reflection_lm=lm,
            reflection_minibatch_size=GEPA_MINIBATCH,
            use_merge=False,
            track_stats=False,
            seed=seed,
            gepa_kwargs={"stop_callbacks": list(stoppers)} if stoppers else None,
        )
        # GEPA evolves the instruction only: it starts from gold demonstrations, which it keeps.
        seeded = dspy.LabeledFewShot(k=_pool_size(num_demos, demo_choice)).compile(program, trainset=trainset, sample=False) if num_demos else program
        return tele.compile(seeded, trainset=trainset, valset=_valset(trainset, valset))


def apply_demo_choice(program: IEProgram, num_demos: int, demo_choice: str, seed: int) -> None:
    demos = list(program.extract.demos)
    if demo_choice == "coverage":
        demos = cover_labels(demos, len(demos), labels_of=demo_labels, seed=seed)
    program.extract.demos = demos[: _pool_size(num_demos, demo_choice)]
    program.settings.num_demos = num_demos
    program.settings.demo_selection = demo_choice if demo_choice in PER_INPUT_CHOICES else "fixed"
    if demo_choice != "weighted":
        program.settings.demo_weights = None  # weights go with weighted selection only (ProgramSettings)


def run_optimizer(
    name: str,
    program: IEProgram,
    trainset: list[dspy.Example],
    valset: list[dspy.Example],
    lm: Any,
    num_demos: int,
    demo_choice: str,
    seed: int,
    options: dict[str, Any] | None = None,
) -> IEProgram:
    """Compile ``program`` with optimiser ``name``; returns the optimised copy. ``options``
    missing a setting take its default for ``num_demos`` demonstrations."""
    optimizer = get_optimizer(name)
    if demo_choice == "weighted" and program.settings.demo_weights is None:  # before any compile call
        raise ValueError("demo choice 'weighted' needs demo_weights in the program's settings (TrialConfig.settings() sets them)")
    options = {**optimizer.defaults(num_demos), **(options or {})}
    trainset = list(trainset)
    random.Random(seed).shuffle(trainset)  # the trial's seed decides which examples are seen
    if num_demos == 0 and optimizer.demos_only:
        compiled = program.deepcopy()
        compiled.extract.demos = []
    else:
        compiled = optimizer.compile(program, trainset, valset, lm, num_demos, demo_choice, seed, options)
    apply_demo_choice(compiled, num_demos, demo_choice, seed)
    return compiled
