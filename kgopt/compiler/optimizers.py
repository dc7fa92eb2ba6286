"""The DSPy optimisers a trial can use, behind one function.

Every optimiser ends with the predictor's demo pool (and, for mipro/gepa, possibly a new
instruction); ``apply_demo_choice`` then shapes the pool for how demonstrations are chosen:
``random`` keeps ``num_demos`` of them, ``coverage`` orders them so the first ``num_demos``
cover the most labels, ``similar`` keeps a larger pool and the program picks per input.

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
from typing import Any

import dspy

from kgopt.compiler.trainset import make_feedback_metric, make_metric
from kgopt.core.demos import cover_labels
from kgopt.program import IEProgram, demo_labels

OPTIMIZERS = ("labeled", "bootstrap", "mipro", "gepa")
SELECT_ON_VALSET = ("mipro", "gepa")  # these choose among candidates on held-out training chunks
SIMILAR_POOL = 24  # demonstrations kept for per-input selection


def _pool_size(num_demos: int, demo_choice: str) -> int:
    return max(num_demos, SIMILAR_POOL) if demo_choice == "similar" else num_demos


def apply_demo_choice(program: IEProgram, num_demos: int, demo_choice: str, seed: int) -> None:
    demos = list(program.extract.demos)
    if demo_choice == "coverage":
        demos = cover_labels(demos, len(demos), labels_of=demo_labels, seed=seed)
    program.extract.demos = demos[: _pool_size(num_demos, demo_choice)]
    program.settings.num_demos = num_demos
    program.settings.demo_selection = "similar" if demo_choice == "similar" else "fixed"


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
    """Compile ``program`` with optimiser ``name``; returns the optimised copy."""
    options = options or {}
    trainset = list(trainset)
    random.Random(seed).shuffle(trainset)  # the trial's seed decides which examples are seen
    spec = program.spec
    if num_demos == 0 and name in ("labeled", "bootstrap"):
        compiled = program.deepcopy()
        compiled.extract.demos = []
    elif name == "labeled":
        if demo_choice == "coverage":
            compiled = program.deepcopy()
            compiled.extract.demos = cover_labels(trainset, num_demos, labels_of=demo_labels, seed=seed)
        else:
            compiled = dspy.LabeledFewShot(k=_pool_size(num_demos, demo_choice)).compile(program, trainset=trainset, sample=False)
    elif name == "bootstrap":
        tele = dspy.BootstrapFewShot(
            metric=make_metric(spec),
            max_bootstrapped_demos=int(options.get("bootstrapped", max(1, num_demos))),
            max_labeled_demos=_pool_size(num_demos, demo_choice),
            max_rounds=1,
            max_errors=len(trainset) + 1,  # a failed call is a miss, not the end of the trial
        )
        # Bootstrapping runs the model on examples until enough pass: bound how many it tries.
        budget = int(options.get("bootstrap_examples", 4 * max(1, num_demos)))
        compiled = tele.compile(program, trainset=trainset[:budget])
    elif name == "mipro":
        tele = dspy.MIPROv2(
            metric=make_metric(spec),
            prompt_model=lm,
            task_model=lm,
            auto=None,
            num_candidates=int(options.get("candidates", 3)),
            max_bootstrapped_demos=num_demos,
            max_labeled_demos=num_demos,
            num_threads=1,
            seed=seed,
            verbose=False,
            track_stats=False,
        )
        compiled = tele.compile(
            program,
            trainset=trainset,
            valset=valset or trainset[: max(2, len(trainset) // 3)],
            num_trials=int(options.get("mipro_trials", 4)),
            minibatch=False,
            program_aware_proposer=False,  # kgopt's source says nothing the task text does not
            data_aware_proposer=False,  # a dataset summary costs many calls for little
            requires_permission_to_run=False,
        )
    elif name == "gepa":
        tele = dspy.GEPA(
            metric=make_feedback_metric(spec),
            max_metric_calls=int(options.get("metric_calls", 24)),
            reflection_lm=lm,
            reflection_minibatch_size=2,
            use_merge=False,
            track_stats=False,
            seed=seed,
        )
        # GEPA evolves the instruction only: it starts from gold demonstrations, which it keeps.
        seeded = dspy.LabeledFewShot(k=_pool_size(num_demos, demo_choice)).compile(program, trainset=trainset, sample=False) if num_demos else program
        compiled = tele.compile(seeded, trainset=trainset, valset=valset or trainset[: max(2, len(trainset) // 3)])
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    apply_demo_choice(compiled, num_demos, demo_choice, seed)
    return compiled
