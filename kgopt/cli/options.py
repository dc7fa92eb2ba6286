"""Option types shared by the command modules (``main`` and its sub-apps)."""

from __future__ import annotations

from enum import Enum

from kgopt.core.tasks import LANGS, TASKS

Task = Enum("Task", {name: name for name in TASKS}, type=str)  # the registry's tasks, as --task choices
Lang = Enum("Lang", {name: name for name in LANGS}, type=str)
