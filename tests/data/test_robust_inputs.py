"""Hostile inputs (deep nesting, non-UTF-8, over-long, mistyped) give file:line errors, exit 2, no traceback."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from kgopt.cli.main import app
from kgopt.data import jsonio
from kgopt.data.jsonio import iter_json
from kgopt.data.readers import read_unified
from kgopt.errors import DataError
from kgopt.evaluation import score_file

DEEP = "[" * 100_000 + "]" * 100_000


def _line(**over):
    base = {"id": "1", "source": "s", "instruction": json.dumps({"instruction": "x", "schema": ["person"], "input": "t"}),
            "label": "[]", "output": "{}"}
    return json.dumps({**base, **over})


@pytest.mark.parametrize("layout", ["lines", "array"])
def test_deep_nesting_in_a_data_file(tmp_path, layout):
    path = tmp_path / "train.json"
    body = '{"text": "a", "entity": []}\n{"text": "b", "entity": ' + DEEP + "}\n"
    path.write_text(body if layout == "lines" else "[" + body.replace("\n{", ",\n{") + "]", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.json:2: invalid JSON: nested too deeply"):
        list(iter_json(path))


@pytest.mark.parametrize("field", ["label", "instruction", "output"])
def test_deep_nesting_in_predictions(tmp_path, field):
    path = tmp_path / "pred.jsonl"
    value = DEEP if field != "output" else "{" + '"a":' * 1 + DEEP + "}"
    path.write_text(_line() + "\n" + _line(id="2", **{field: value}) + "\n", encoding="utf-8")
    if field == "output":  # model output is never an error: it is an unparsable answer
        assert score_file("NER", path).total.errors == 1
        assert score_file("NER", path, lenient=True).total.errors == 1
        return
    with pytest.raises(DataError, match=rf"pred.jsonl:2: field '{field}'"):
        score_file("NER", path)
    res = CliRunner().invoke(app, ["score", "--task", "NER", "--input", str(path)])
    assert res.exit_code == 2 and "pred.jsonl:2" in res.output and "Traceback" not in res.output


def test_not_utf8_and_over_long_lines(tmp_path, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "ok", "entity": []}\n{"text": "\xff\xfe", "entity": []}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not UTF-8"):
        list(read_unified(bad, "entity"))
    monkeypatch.setattr(jsonio, "MAX_RECORD_BYTES", 100)
    long = tmp_path / "long.jsonl"
    long.write_text('{"text": "ok", "entity": []}\n{"text": "' + "x" * 500 + '", "entity": []}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"long.jsonl:2: line longer than 100 bytes"):
        list(read_unified(long, "entity"))
    arr = tmp_path / "long.json"
    arr.write_text('[{"text": "ok", "entity": []},\n{"text": "' + "x" * 500 + '", "entity": []}]', encoding="utf-8")
    monkeypatch.setattr(jsonio, "_CHUNK", 64)
    with pytest.raises(DataError, match=r"long.json:2: array element longer than 100 bytes"):
        list(iter_json(arr))


def test_mistyped_prediction_lines(tmp_path):
    path = tmp_path / "pred.jsonl"
    path.write_text(_line() + "\n" + '["not", "an", "object"]\n', encoding="utf-8")
    res = CliRunner().invoke(app, ["score", "--task", "NER", "--input", str(path)])
    assert res.exit_code == 2 and "pred.jsonl:2: a prediction line must be a JSON object" in res.output


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3), max_leaves=20),
       st.sampled_from(["label", "output", "instruction"]), st.sampled_from(["NER", "RE", "EE", "KG"]))
def test_fuzzed_prediction_fields_never_crash_the_scorer(tmp_path_factory, value, field, task):
    """Any JSON in any field: a score or a DataError naming the line, never another exception."""
    path = tmp_path_factory.mktemp("fuzz") / "pred.jsonl"
    path.write_text(_line(**{field: json.dumps(value) if field != "output" or not isinstance(value, str) else value}) + "\n", encoding="utf-8")
    for lenient in (False, True):
        try:
            score_file(task, path, lenient=lenient)
        except DataError as exc:
            assert "pred.jsonl" in str(exc)


@pytest.mark.parametrize("body, message", [
    (b'["person"]\n[]\n' + b"[" * 50_000 + b"]" * 50_000 + b"\n", r"schema.json:3: invalid JSON: nested too deeply"),
    (b'["person"]\n["\xff"]\n{}\n', r"schema.json:2: not UTF-8"),
])
def test_bad_iepile_schema_files(tmp_path, body, message):
    from kgopt.data.readers import read_iepile_schema

    path = tmp_path / "schema.json"
    path.write_bytes(body)
    with pytest.raises(DataError, match=message):
        read_iepile_schema(path)


def test_deep_nesting_in_an_instructie_schema_and_an_instruction_file(tmp_path):
    from kgopt.data.readers import read_instruction_file, read_instructie_schema

    schema = tmp_path / "schema_en.json"
    schema.write_text(DEEP, encoding="utf-8")
    with pytest.raises(DataError, match="schema_en.json: invalid JSON: nested too deeply"):
        read_instructie_schema(schema)
    lines = tmp_path / "train.json"
    lines.write_text(json.dumps({"task": "NER", "instruction": DEEP, "output": ""}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="train.json:1: field 'instruction' is not a JSON string: nested too deeply"):
        list(read_instruction_file(lines))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.sampled_from([b"[" * 5000, b'{"text": "a", "entity": [', b"\xff\xfe", b'{"text": 1}']),
                max_size=6))
def test_fuzzed_data_files_give_records_or_a_data_error(tmp_path_factory, chunks):
    """Any bytes in a data file: records, or a DataError naming the file, never another exception."""
    path = tmp_path_factory.mktemp("fuzz") / "train.json"
    path.write_bytes(b"\n".join(chunks))
    try:
        list(read_unified(path, "entity"))
    except DataError as exc:
        assert "train.json" in str(exc)
