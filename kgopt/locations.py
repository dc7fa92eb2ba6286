"""Where kgopt finds its programs and data, in a checkout and in an installed wheel.

The committed programs (``compiled/``) and the zero-shot baselines (``programs/``) ship inside
the wheel as ``kgopt/bundled/<name>/`` (``setup.py`` copies them at build time); in a checkout
they are the repository's own folders. A ``compiled/`` folder in the current directory (what
``kgopt compile`` writes) is looked at first.
"""

from __future__ import annotations

import os
from pathlib import Path

from kgopt.core.tasks import check_lang, get_task
from kgopt.errors import ArtifactError

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent  # the repository root, when kgopt runs from a checkout
BUNDLED = ("compiled", "programs")  # the folders the wheel carries
DATA_DIR_ENV = "KGOPT_DATA_DIR"


def bundled_dir(name: str) -> Path:
    """The shipped folder ``name`` (one of ``BUNDLED``): the wheel's copy, else the checkout's."""
    if name not in BUNDLED:
        raise ValueError(f"{name!r} is not bundled; choose one of {', '.join(BUNDLED)}")
    for d in (PACKAGE / "bundled" / name, CHECKOUT / name):
        if d.is_dir():
            return d
    return PACKAGE / "bundled" / name


def default_data_dir() -> Path:
    """``KGOPT_DATA_DIR``, else the checkout's ``dataset/`` (an installed kgopt has no data of its own)."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else CHECKOUT / "dataset"


def find_program(task: str, lang: str, compiled_dir: str | os.PathLike | None = None) -> Path:
    """The compiled program for a task: in ``compiled_dir``, else ``./compiled``, else the bundled one."""
    name = f"{get_task(task).name}_{check_lang(lang)}.json"
    dirs = [Path(compiled_dir)] if compiled_dir else [Path.cwd() / "compiled", bundled_dir("compiled")]
    for d in dirs:
        if (d / name).is_file():
            return d / name
    raise ArtifactError(f"no compiled program {name} in {' or '.join(str(d) for d in dirs)}; run `kgopt compile --task {task} --lang {lang}`")


def baseline_program(task: str, lang: str) -> Path:
    """The zero-shot baseline program of a task (``programs/<TASK>_<lang>.json``)."""
    return bundled_dir("programs") / f"{get_task(task).name}_{check_lang(lang)}.json"
