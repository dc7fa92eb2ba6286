"""Build hook: the wheel carries the committed programs (compiled/*.json) and the zero-shot
baselines (programs/*.json) as kgopt/bundled/, where kgopt.locations finds them. Everything
else about the package is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("compiled", "programs")  # kgopt.locations.BUNDLED


class BuildWithPrograms(build_py):
    def run(self):
        super().run()
        for name in BUNDLED:
            target = Path(self.build_lib) / "kgopt" / "bundled" / name
            target.mkdir(parents=True, exist_ok=True)
            for src in sorted((ROOT / name).glob("*.json")):
                shutil.copyfile(src, target / src.name)


setup(cmdclass={"build_py": BuildWithPrograms})
