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
            files = sorted((ROOT / name).glob("*.json"))
            if not files:  # e.g. an sdist without them (MANIFEST.in lists them): a wheel without programs is broken
                raise RuntimeError(f"no {name}/*.json to bundle in {ROOT}")
            for src in files:
                shutil.copyfile(src, target / src.name)


setup(cmdclass={"build_py": BuildWithPrograms})
