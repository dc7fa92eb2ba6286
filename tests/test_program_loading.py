"""A program file is untrusted input: only known state reaches DSPy, with checked types."""

import json

import dspy
import pytest

from kgopt.errors import ArtifactError
from kgopt.program import IEProgram, load_program


def _saved(tmp_path):
    prog = IEProgram("NER", "en")
    prog.extract.demos = [dspy.Example(text="Ada Lovelace wrote.", chunk=["person"], answer='{"person": ["Ada Lovelace"]}', source="s", record_id="1")]
    path = prog.save_artifact(tmp_path / "p.json", manifest={"dev": {"f1": 1.0}})
    return path, json.loads(path.read_text(encoding="utf-8"))


def _write(tmp_path, art):
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(art), encoding="utf-8")
    return path


def test_a_saved_program_loads_back(tmp_path):
    path, _ = _saved(tmp_path)
    program, manifest = load_program(path)
    assert program.extract.demos[0]["answer"] == '{"person": ["Ada Lovelace"]}' and manifest == {"dev": {"f1": 1.0}}
    assert program.extract.config == {} and program.extract.lm is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: a["state"]["extract"].__setitem__("config", {"n": 64}), r"unknown key\(s\) in state.extract: 'config'"),
        (lambda a: a["state"]["extract"].__setitem__("stage", "x"), r"unknown key\(s\) in state.extract: 'stage'"),
        (lambda a: a["state"].__setitem__("other", {}), r"'state' must be an object with the one key 'extract'"),
        (lambda a: a["state"]["extract"].__setitem__("demos", 5), r"state.extract.demos must be a list"),
        (lambda a: a["state"]["extract"]["demos"][0].__setitem__("answer", {"person": []}), r"demos\[0\].answer must be a string"),
        (lambda a: a["state"]["extract"]["demos"][0].__setitem__("extra", {"deep": 1}), r"demos\[0\].extra must be a string"),
        (lambda a: a["state"]["extract"].__setitem__("signature", {"instructions": 3}), r"state.extract.signature must be"),
        (lambda a: a["config"].__setitem__("demos", 5), r"config: unknown setting\(s\) 'demos'"),
        (lambda a: a["config"].__setitem__("temperature", "hot"), r"config: temperature must be a number from 0 to 2 or null, got 'hot'"),
        (lambda a: a["config"].__setitem__("num_demos", "3"), r"config: num_demos must be a whole number >= 0, got '3'"),
        (lambda a: a["config"].__setitem__("max_tokens", True), r"config: max_tokens must be a whole number >= 1 or null, got True"),
        (lambda a: a["config"].__setitem__("split_size", 0), r"config: split_size must be a whole number >= 1"),
        (lambda a: a["config"].__setitem__("task", "XX"), r"config: .*XX"),
        (lambda a: a.__setitem__("config", [1]), r"'config' must be an object"),
    ],
)
def test_bad_program_files_are_refused_with_the_file_and_key(tmp_path, edit, message):
    _, art = _saved(tmp_path)
    edit(art)
    path = _write(tmp_path, art)
    with pytest.raises(ArtifactError, match=message) as err:
        load_program(path)
    assert str(path) in str(err.value)


def test_a_saved_lm_is_never_used(tmp_path):
    """DSPy would build an LM (any URL, via litellm) from a program's ``lm`` state."""
    _, art = _saved(tmp_path)
    art["state"]["extract"]["lm"] = {"model": "openai/x", "api_base": "http://evil.example/v1"}
    program, _ = load_program(_write(tmp_path, art))
    assert program.extract.lm is None


def test_the_committed_programs_load_with_their_settings():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = sorted((root / "compiled").glob("*.json")) + sorted((root / "programs").glob("*.json"))
    assert len(files) == 24
    for f in files:
        program, _ = load_program(f)
        assert program.extract.config == {} and program.extract.lm is None
