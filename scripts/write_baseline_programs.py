"""Write programs/<TASK>_<lang>.json: the zero-shot OneKE baseline of every task and language.

These are the starting points the compiler optimises and the reference it is compared
against; edit a copy by hand (instruction, split_size) and pass it to `kgopt evaluate --program`.
Re-run after changing the task registry: tests/test_programs.py checks the files are in sync.
"""

import argparse
from pathlib import Path

from kgopt.core.tasks import LANGS, TASKS
from kgopt.program import IEProgram

OUT = Path(__file__).resolve().parents[1] / "programs"


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help writes nothing
    for task in TASKS:
        for lang in LANGS:
            path = IEProgram(task, lang).save_artifact(OUT / f"{task}_{lang}.json", manifest={"kind": "zero-shot baseline"})
            print(path.relative_to(OUT.parent))


if __name__ == "__main__":
    main()
