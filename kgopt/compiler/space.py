"""The prompt search space: what one Optuna trial decides.

Parameter names are what a person reads in optuna-dashboard, so they say what they are.
Conditional parameters (the JSON caps, the demonstration weights, the optimiser's own settings
from its ``suggest_options``) exist only in trials where they apply, which Optuna's TPE sampler
handles natively. Most parameters are categorical or whole numbers; ``temperature`` and, with
``demo_choice`` "weighted", the four ``demo_w_*`` weights are floats from 0 to 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

from kgopt.compiler.optimizers import get_optimizer, optimizer_names
from kgopt.core.demos import DEMO_WEIGHT_KEYS, DemoWeights
from kgopt.core.tasks import TaskSpec, answer_formats
from kgopt.adapters.oneke import DEFAULT_LAYOUT, layout_names
from kgopt.program import DEFAULT_DEMO_ORDER, DEMO_ORDERS, ProgramSettings

# Bumped whenever a parameter, its choices or the warm starts change: a study records it in
# its fingerprint (study.py), so trials of another search space are never mixed with these.
# space-v2: optimisers' settings come from their registry class; mipro_mipro_trials is
# mipro_trials; a warm start of bootstrap/mipro/gepa carries that optimiser's defaults.
# space-v3: demo_choice "weighted" with the float weights demo_w_*; temperature a float in [0, 1]
# (was one of 0, 0.3, 0.7).
# space-v4: the prompt layout (kgopt.adapters.oneke.LAYOUTS), "oneke" in the warm starts.
# space-v5: demo_order ("selected" or "sorted": kgopt.program.DEMO_ORDERS), "selected" in the warm starts.
SEARCH_SPACE_VERSION = "space-v5"

DEMO_CHOICES = ("random", "coverage", "similar", "weighted")
TEMPERATURE_RANGE = (0.0, 1.0)
# Without the continuous part (``continuous=False``, the benchmark's ablation): space-v2's
# temperatures and no weighted demonstration choice.
DISCRETE_TEMPERATURES = (0.0, 0.3, 0.7)
# demo_choice "weighted": the Optuna parameter of each weight of kgopt.core.demos.DemoWeights.
DEMO_WEIGHT_PARAMS = {f"demo_w_{k}": k for k in DEMO_WEIGHT_KEYS}
MAX_TOKENS = (128, 256, 512)
MAX_ITEMS = (0, 1, 2, 4)  # 0: no cap
# No longer caps: llama.cpp's grammar engine slows down badly with long string repetitions
# (measured: maxLength 32 made NER calls ~10x slower than 16; BENCHMARKS.md#priors-the-first-trials-of-a-new-study).
MAX_LEN = (0, 8, 16)


def split_choices(spec: TaskSpec) -> tuple[int, ...]:
    """Schema items per call: the task's default and its neighbours (KG asks one topic).

    Down to one label per call: a small model that cannot keep several labels apart may
    still fill one (measured on EE/zh with SmolLM2-135M: it put right arguments under wrong event types).
    """
    if spec.asks_topics:
        return (1,)
    d = spec.split_size
    return tuple(sorted({max(1, d // 4), max(1, d // 2), d, d * 2, d * 4}))


@dataclass
class TrialConfig:
    optimizer: str = "labeled"
    instruction: int = 0  # index into the study's instruction candidates
    num_demos: int = 0
    demo_choice: str = "random"
    split_size: int = 4
    temperature: float = 0.0
    output: str = "plain"
    max_tokens: int = 512
    max_items: int = 0
    max_len: int = 0
    answer_format: str = "oneke"  # searched only for tasks with several formats (KG)
    layout: str = DEFAULT_LAYOUT  # how the prompt is laid out (kgopt.adapters.oneke)
    demo_order: str = DEFAULT_DEMO_ORDER  # the chosen demonstrations as selected, or sorted (prefix reuse)
    # demo_choice "weighted" only: the score's weights (kgopt.core.demos.weighted_demos)
    demo_w_similarity: float = 0.0
    demo_w_coverage: float = 0.0
    demo_w_diversity: float = 0.0
    demo_w_length: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)  # the optimiser's own settings
    # A reflection trial only (``kgopt compile --reflect``): the index of its instruction among the
    # study's reflective proposals, which replaces ``instruction``'s candidate.
    reflection: int | None = None

    def demo_weights(self) -> DemoWeights | None:
        if self.demo_choice != "weighted":
            return None
        return DemoWeights(**{key: getattr(self, param) for param, key in DEMO_WEIGHT_PARAMS.items()})

    def settings(self) -> ProgramSettings:
        return ProgramSettings(
            split_size=self.split_size,
            num_demos=self.num_demos,
            demo_selection=self.demo_choice if self.demo_choice in ("similar", "weighted") else "fixed",
            demo_weights=self.demo_weights(),
            output=self.output,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            max_items=self.max_items or None,
            max_len=self.max_len or None,
            answer_format=None if self.answer_format == "oneke" else self.answer_format,
            layout=self.layout,
            demo_order=self.demo_order,
        )

    def params(self) -> dict[str, Any]:
        """Flat Optuna parameters (for ``enqueue_trial`` and for reading a trial back)."""
        d = asdict(self)
        opts = d.pop("options")
        if self.output != "json":
            d.pop("max_items"), d.pop("max_len")
        if self.demo_choice != "weighted":
            for param in DEMO_WEIGHT_PARAMS:
                d.pop(param)
        if self.reflection is None:
            d.pop("reflection")
        return {**d, **{f"{self.optimizer}_{k}": v for k, v in opts.items()}}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "TrialConfig":
        opt = params.get("optimizer", "labeled")
        known = set(cls.__dataclass_fields__) - {"options"}
        options = {k[len(opt) + 1 :]: v for k, v in params.items() if k.startswith(opt + "_")}
        return cls(**{k: v for k, v in params.items() if k in known}, options=options)


def suggest(
    trial: optuna.Trial,
    spec: TaskSpec,
    optimizers: tuple[str, ...] | None,
    n_instructions: int,
    max_demos: int,
    splits: tuple[int, ...] | None = None,
    fixed_space: bool = False,
    continuous: bool = True,
) -> TrialConfig:
    """One trial's configuration. ``optimizers``: the study's choice (None: every registered
    one); ``splits``: the study's split sizes (fixed when it was created). ``fixed_space``: ask
    the demonstration weights in every trial (used only by "weighted" ones), because CMA-ES
    models only the parameters every trial has. ``continuous`` False: no float parameter (the
    temperature one of ``DISCRETE_TEMPERATURES``, no "weighted" demonstration choice)."""
    opt = trial.suggest_categorical("optimizer", list(optimizers or optimizer_names()))
    cfg = TrialConfig(
        optimizer=opt,
        instruction=trial.suggest_categorical("instruction", list(range(n_instructions))),
        num_demos=trial.suggest_int("num_demos", 0, max_demos),
        demo_choice=trial.suggest_categorical("demo_choice", [c for c in DEMO_CHOICES if continuous or c != "weighted"]),
        split_size=trial.suggest_categorical("split_size", list(splits or split_choices(spec))),
        temperature=(trial.suggest_float("temperature", *TEMPERATURE_RANGE) if continuous
                     else trial.suggest_categorical("temperature", list(DISCRETE_TEMPERATURES))),
        output=trial.suggest_categorical("output", ["plain", "json"]),
        max_tokens=trial.suggest_categorical("max_tokens", list(MAX_TOKENS)),
        layout=trial.suggest_categorical("layout", layout_names()),
        demo_order=trial.suggest_categorical("demo_order", list(DEMO_ORDERS)),
    )
    formats = answer_formats(spec.name)
    if len(formats) > 1:
        cfg.answer_format = trial.suggest_categorical("answer_format", list(formats))
    if cfg.demo_choice == "weighted" or (fixed_space and continuous):
        for param in DEMO_WEIGHT_PARAMS:
            setattr(cfg, param, trial.suggest_float(param, 0.0, 1.0))
    if cfg.output == "json":
        cfg.max_items = trial.suggest_categorical("max_items", list(MAX_ITEMS))
        cfg.max_len = trial.suggest_categorical("max_len", list(MAX_LEN))
    cfg.options = get_optimizer(opt).suggest_options(trial, max_demos)
    return cfg


def starting_points(spec: TaskSpec, optimizers: tuple[str, ...], max_demos: int) -> list[TrialConfig]:
    """Trials enqueued first in a new study: the strong, obvious few-shot settings.

    A few demonstrations similar to the input, at the task's default schema split, temperature
    0, once in plain JSON and once with constrained JSON without caps. Measured on the embedded
    Qwen2.5-Coder-0.5B (BENCHMARKS.md#priors-the-first-trials-of-a-new-study): this is what a competent model does best with, while
    string caps cut long names and one label per call costs many calls for little. Caps and
    other splits stay in the search space. A warm start, as with any black-box search: the
    sampler learns from these trials, it is not bound by them.
    """
    opt = "labeled" if "labeled" in optimizers else optimizers[0]
    num_demos = min(3, max_demos)
    # The optimiser's own settings fixed too, so a warm start is one configuration, not a sample.
    options = get_optimizer(opt).defaults(num_demos)
    base = dict(optimizer=opt, num_demos=num_demos, demo_choice="similar", split_size=spec.split_size, temperature=0.0, max_tokens=512)
    points = [TrialConfig(**base, output="plain", options=dict(options)), TrialConfig(**base, output="json", options=dict(options))]
    # A task with several answer formats (KG) starts with each, in plain JSON, so dev decides.
    points += [TrialConfig(**base, output="plain", answer_format=f, options=dict(options)) for f in answer_formats(spec.name)[1:]]
    return points
