"""Option types shared by the command modules (``main`` and its sub-apps)."""

from __future__ import annotations

from enum import Enum

from kgopt.core.tasks import LANGS, TASKS

Task = Enum("Task", {name: name for name in TASKS}, type=str)  # the registry's tasks, as --task choices
Lang = Enum("Lang", {name: name for name in LANGS}, type=str)
# kgopt.augmentation's ways of showing the real samples (AugmentOptions.show), named here so that
# --help need not import the augmentation code; tests/cli checks the two agree.
Show = Enum("Show", {name: name for name in ("sentences", "annotations")}, type=str)
