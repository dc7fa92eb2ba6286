"""The prompt search space: what one Optuna trial decides.

Parameter names are what a person reads in optuna-dashboard, so they say what they are.
Conditional parameters (the JSON caps, the optimiser's own settings) exist only in trials
where they apply, which Optuna's TPE sampler handles natively.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

from kgopt.core.tasks import TaskSpec
from kgopt.program import ProgramSettings

DEMO_CHOICES = ("random", "coverage", "similar")
TEMPERATURES = (0.0, 0.3, 0.7)
MAX_TOKENS = (128, 256, 512)
MAX_ITEMS = (0, 1, 2, 4)  # 0: no cap
# No longer caps: llama.cpp's grammar engine slows down badly with long string repetitions
# (measured: maxLength 32 made NER calls ~10x slower than 16; scripts/README).
MAX_LEN = (0, 8, 16)


def split_choices(spec: TaskSpec) -> tuple[int, ...]:
    """Schema items per call: the task's default and its neighbours (KG asks one topic).

    Down to one label per call: a small model that cannot keep several labels apart may
    still fill one (measured on EE/zh: the tiny model put right arguments under wrong event types).
    """
    if spec.name == "KG":
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
    options: dict[str, Any] = field(default_factory=dict)  # the optimiser's own settings

    def settings(self) -> ProgramSettings:
        return ProgramSettings(
            split_size=self.split_size,
            num_demos=self.num_demos,
            demo_selection="similar" if self.demo_choice == "similar" else "fixed",
            output=self.output,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            max_items=self.max_items or None,
            max_len=self.max_len or None,
        )

    def params(self) -> dict[str, Any]:
        """Flat Optuna parameters (for ``enqueue_trial`` and for reading a trial back)."""
        d = asdict(self)
        opts = d.pop("options")
        if self.output != "json":
            d.pop("max_items"), d.pop("max_len")
        return {**d, **{f"{self.optimizer}_{k}": v for k, v in opts.items()}}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "TrialConfig":
        opt = params.get("optimizer", "labeled")
        known = set(cls.__dataclass_fields__) - {"options"}
        options = {k[len(opt) + 1 :]: v for k, v in params.items() if k.startswith(opt + "_")}
        return cls(**{k: v for k, v in params.items() if k in known}, options=options)


def suggest(
    trial: optuna.Trial, spec: TaskSpec, optimizers: tuple[str, ...], n_instructions: int, max_demos: int, splits: tuple[int, ...] | None = None
) -> TrialConfig:
    """One trial's configuration. ``splits``: the study's split sizes (fixed when it was created)."""
    opt = trial.suggest_categorical("optimizer", list(optimizers))
    cfg = TrialConfig(
        optimizer=opt,
        instruction=trial.suggest_categorical("instruction", list(range(n_instructions))),
        num_demos=trial.suggest_int("num_demos", 0, max_demos),
        demo_choice=trial.suggest_categorical("demo_choice", list(DEMO_CHOICES)),
        split_size=trial.suggest_categorical("split_size", list(splits or split_choices(spec))),
        temperature=trial.suggest_categorical("temperature", list(TEMPERATURES)),
        output=trial.suggest_categorical("output", ["plain", "json"]),
        max_tokens=trial.suggest_categorical("max_tokens", list(MAX_TOKENS)),
    )
    if cfg.output == "json":
        cfg.max_items = trial.suggest_categorical("max_items", list(MAX_ITEMS))
        cfg.max_len = trial.suggest_categorical("max_len", list(MAX_LEN))
    if opt == "bootstrap":
        cfg.options = {"bootstrapped": trial.suggest_int("bootstrap_bootstrapped", 1, max(1, max_demos))}
    elif opt == "mipro":
        cfg.options = {"candidates": trial.suggest_int("mipro_candidates", 2, 4), "mipro_trials": trial.suggest_int("mipro_mipro_trials", 2, 6)}
    elif opt == "gepa":
        cfg.options = {"metric_calls": trial.suggest_categorical("gepa_metric_calls", [12, 24, 48])}
    return cfg


def starting_points(spec: TaskSpec, optimizers: tuple[str, ...], max_demos: int) -> list[TrialConfig]:
    """Trials enqueued first in a new study: a few demonstrations with constrained JSON output.

    A warm start, as with any black-box search: the sampler learns from them, it is not bound by them.
    """
    opt = "labeled" if "labeled" in optimizers else optimizers[0]
    k = min(3, max_demos)
    # Twice the default chunk: half the calls per record, which matters most with long schemas.
    split = max(split_choices(spec)[: split_choices(spec).index(spec.split_size) + 2]) if spec.name != "KG" else 1
    base = dict(optimizer=opt, num_demos=k, split_size=split, temperature=0.0, output="json", max_tokens=256)
    points = [
        TrialConfig(**base, demo_choice="similar", max_items=2, max_len=16),
        TrialConfig(**base, demo_choice="coverage", max_items=1, max_len=8),
    ]
    if spec.name != "KG" and max_demos >= 1:
        # One label per call with one similar demonstration: the only setting in which the tiny
        # embedded model scored above zero on EE/zh and RE/zh dev (it files answers under the
        # wrong label when a call asks several). Costlier per record, so it comes last.
        one = {**base, "num_demos": 1, "split_size": 1, "max_tokens": 128}
        points.append(TrialConfig(**one, demo_choice="similar", max_items=1, max_len=8))
    return points
