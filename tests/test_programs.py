"""The committed baseline programs load, and are exactly what the task registry builds."""

import json
from pathlib import Path

import pytest

from kgopt.core.tasks import LANGS, TASKS
from kgopt.program import IEProgram, load_program

PROGRAMS = Path(__file__).resolve().parents[1] / "programs"


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("lang", LANGS)
def test_baseline_program_in_sync(task, lang):
    path = PROGRAMS / f"{task}_{lang}.json"
    program, manifest = load_program(path, task=task, lang=lang)
    assert manifest["kind"] == "zero-shot baseline"
    assert program.instruction == TASKS[task].template(lang)
    assert program.extract.demos == []
    saved = json.loads(path.read_text(encoding="utf-8"))
    fresh = IEProgram(task, lang).to_artifact({"kind": "zero-shot baseline"})
    assert saved["state"] == json.loads(json.dumps(fresh["state"], ensure_ascii=False))
    assert saved["config"] == fresh["config"]
