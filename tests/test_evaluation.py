"""`kgopt evaluate` end to end against a deterministic OpenAI-compatible server, and programs
saved/loaded as JSON."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kgopt.cli.main import app
from kgopt.core.tasks import get_task
from kgopt.data.readers import load_examples
from kgopt.errors import ArtifactError
from kgopt.program import IEProgram, load_program
from kgopt.testing.fake_endpoint import FakeEndpoint, chat_response

PROGRAMS = Path(__file__).resolve().parents[1] / "programs"


def _oracle(task, lang, data_dir, split="test", limit=4, fail_on=None):
    """A server that answers every instruction with the gold answer (or fails on some texts)."""
    spec = get_task(task)
    answers = {}
    for ex in load_examples(task, lang, split, data_dir=data_dir, limit=limit):
        for chunk in spec.chunks(ex.schema, ex.record):
            answers[(ex.record.text, json.dumps(chunk, ensure_ascii=False))] = json.dumps(spec.gold_answer(ex.record, chunk), ensure_ascii=False)

    def handler(req):
        instr = json.loads(req["messages"][-1]["content"])
        if fail_on and fail_on in instr["input"]:
            return 500, {"error": "injected"}
        return 200, chat_response(answers[(instr["input"], json.dumps(instr["schema"], ensure_ascii=False))])

    return handler


@pytest.mark.parametrize("task,lang", [("NER", "en"), ("RE", "zh"), ("EE", "zh"), ("EEA", "en"), ("KG", "zh")])
def test_evaluate_with_a_configured_endpoint(task, lang, shared_data, tmp_path, monkeypatch):
    with FakeEndpoint(respond=_oracle(task, lang, shared_data)) as srv:
        monkeypatch.setenv("KGOPT_API_BASE", srv.url)
        monkeypatch.setenv("KGOPT_MODEL", "novel")
        program = ["--program", str(PROGRAMS / f"{task}_{lang}.json")] if task == "NER" else []
        res = CliRunner().invoke(app, ["evaluate", "--task", task, "--lang", lang, "--limit", "4", "--threads", "3",
                                       "--data-dir", str(shared_data), "--out", str(tmp_path), "--json", "--no-cache", *program])
        assert res.exit_code == 0, res.output
        data = json.loads(res.stdout)
        assert all(r["model"] == "novel" and r["max_tokens"] == 512 for r in srv.requests)
    total = data["total"]["argument"] if task in ("EE", "EEA") else data["total"]
    assert data["errors"] == 0 and total == {"P": 100.0, "R": 100.0, "F1": 100.0}
    assert data["llm"]["calls"] == len(srv.requests) > 0
    # the prediction file is the official evaluator's format, and `kgopt score` agrees
    lines = [json.loads(l) for l in (tmp_path / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {"id", "source", "instruction", "label", "output"} <= set(lines[0])
    assert json.loads(lines[0]["instruction"])["instruction"] == get_task(task).template(lang)
    res = CliRunner().invoke(app, ["score", "--task", task, "--input", str(tmp_path / "predictions.jsonl"), "--json"])
    assert json.loads(res.output)["total"] == data["total"]


def test_llm_failures_are_recorded_not_fatal(shared_data, tmp_path, monkeypatch):
    ex = load_examples("NER", "en", "test", data_dir=shared_data, source="CrossNER_AI", limit=4)
    victim = ex[1].record.text
    with FakeEndpoint(respond=_oracle("NER", "en", shared_data, limit=4, fail_on=victim)) as srv:
        monkeypatch.setenv("KGOPT_API_BASE", srv.url)
        monkeypatch.setenv("KGOPT_MODEL", "novel")
        monkeypatch.setenv("KGOPT_MAX_RETRIES", "1")
        res = CliRunner().invoke(app, ["evaluate", "--task", "NER", "--lang", "en", "--source", "CrossNER_AI", "--limit", "4",
                                       "--data-dir", str(shared_data), "--out", str(tmp_path), "--json", "--no-cache", "--max-failures", "10"])
    assert res.exit_code == 0, res.output  # within --max-failures (by default 0 failures exit 1: tests/test_failures.py)
    data = json.loads(res.stdout)
    lines = [json.loads(l) for l in (tmp_path / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    failed = [l for l in lines if l["status"] == "error"]
    assert failed and all(json.loads(l["instruction"])["input"] == victim and "InternalServerError" in l["error"] for l in failed)
    assert data["llm"]["failed_calls"] == len(failed) and data["errors"] == len(failed)
    assert data["instances"] == 4  # the failed record still counts, with its gold unmatched
    assert data["total"]["P"] == 100.0 and data["total"]["R"] < 100.0


def test_evaluate_skip_measures_a_later_part(shared_data, tmp_path, monkeypatch):
    later = load_examples("NER", "en", "test", data_dir=shared_data, source="CrossNER_AI", limit=4)[2:]
    with FakeEndpoint(respond=_oracle("NER", "en", shared_data, limit=4)) as srv:
        monkeypatch.setenv("KGOPT_API_BASE", srv.url)
        monkeypatch.setenv("KGOPT_MODEL", "novel")
        res = CliRunner().invoke(app, ["evaluate", "--task", "NER", "--lang", "en", "--source", "CrossNER_AI", "--skip", "2", "--limit", "2",
                                       "--data-dir", str(shared_data), "--out", str(tmp_path), "--json", "--no-cache"])
        asked = {json.loads(r["messages"][-1]["content"])["input"] for r in srv.requests}
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["instances"] == 2
    assert asked == {ex.record.text for ex in later}  # records 3 and 4, and only they
    res = CliRunner().invoke(app, ["evaluate", "--task", "NER", "--lang", "en", "--skip", "-1"])
    assert res.exit_code == 2 and "--skip" in res.output


def test_program_json_roundtrip_and_checks(tmp_path):
    import dspy

    prog = IEProgram("RE", "zh", split_size=2, instruction="自定义指令")
    prog.extract.demos = [dspy.Example(text="甲是乙的父亲", chunk=["父母"], answer='{"父母": []}').with_inputs("text", "chunk")]
    path = prog.save_artifact(tmp_path / "re.json", manifest={"dev_f1": 1.5})
    raw = path.read_text(encoding="utf-8")
    assert "自定义指令" in raw  # plain, readable JSON
    loaded, manifest = load_program(path, task="RE", lang="zh")
    assert manifest == {"dev_f1": 1.5}
    assert loaded.split_size == 2 and loaded.instruction == "自定义指令"
    assert loaded.extract.demos[0]["answer"] == '{"父母": []}'
    with pytest.raises(ArtifactError, match="a RE program, not NER"):
        load_program(path, task="NER")
    art = json.loads(raw)
    art["dspy_version"] = "2.6.0"
    (tmp_path / "old.json").write_text(json.dumps(art), encoding="utf-8")
    with pytest.raises(ArtifactError, match="DSPy 2.6.0"):
        load_program(tmp_path / "old.json")
    (tmp_path / "junk.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(ArtifactError, match="junk.json"):
        load_program(tmp_path / "junk.json")


def test_program_with_dummy_lm_merges_chunks(shared_data):
    import dspy
    from dspy.utils.dummies import DummyLM

    from kgopt.adapters.oneke import OneKEAdapter

    ex = load_examples("NER", "en", "test", data_dir=shared_data, source="CrossNER_AI", limit=1)[0]
    prog = IEProgram("NER", "en")
    chunks = prog.chunks(ex.schema)
    assert len(chunks) > 1
    replies = [{"answer": json.dumps({chunks[0][0]: ["X"]})}] + [{"answer": "not json"}] * (len(chunks) - 1)
    with dspy.context(lm=DummyLM(replies, adapter=OneKEAdapter())):
        pred = prog(text=ex.record.text, schema=ex.schema)
    assert pred.result == [{"entity": "X", "entity_type": chunks[0][0]}]
    assert [c["status"] for c in pred.calls][0] == "ok"


def test_cli_help_and_bad_input(tmp_path):
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0 and "evaluate" in res.output and "score" in res.output
    res = CliRunner().invoke(app, ["evaluate", "--task", "NER", "--lang", "en", "--data-dir", str(tmp_path), "--api-base", "http://127.0.0.1:9/v1", "--model", "m"])
    assert res.exit_code == 2 and "no IEPile data" in res.output
    res = CliRunner().invoke(app, ["evaluate", "--task", "NER", "--lang", "fr"])
    assert res.exit_code == 2


def test_tasks_and_score_table(tmp_path):
    res = CliRunner().invoke(app, ["tasks"])
    assert res.exit_code == 0 and "KG" in res.stdout and "instructie" in res.stdout
    gold = [{"entity": "Ann", "entity_type": "person"}]
    line = {"id": "1", "source": "S", "instruction": json.dumps({"instruction": "x", "schema": ["person"], "input": "Ann"}),
            "label": json.dumps(gold), "output": json.dumps({"person": ["Ann"]})}
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps(line) + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["score", "--task", "NER", "--input", str(p), "--sort-by", "source"])
    assert res.exit_code == 0 and "F1 100.00" in res.stdout and "S " in res.stdout
    res = CliRunner().invoke(app, ["score", "--task", "NER", "--input", str(p), "--sort-by", "id"])
    assert res.exit_code == 2 and "source" in res.output


def _ner_lines(outputs: dict[str, list[str]]) -> str:
    """Evaluator-format NER lines: record id -> the persons predicted (gold: Ann, Bob, Cy)."""
    gold = [{"entity": n, "entity_type": "person"} for n in ("Ann", "Bob", "Cy")]
    return "".join(json.dumps({"id": i, "source": "S", "instruction": json.dumps({"instruction": "x", "schema": ["person"], "input": "Ann Bob Cy"}),
                               "label": json.dumps(gold), "output": json.dumps({"person": names})}) + "\n" for i, names in outputs.items())


def test_score_vs_compares_two_programs_on_the_same_records(tmp_path):
    """`kgopt score --vs`: F1(input) - F1(other) with the paired interval of core.stats, in the
    table and the JSON; files of other records are refused, naming the file."""
    from kgopt.core.stats import RecordCount, paired_bootstrap

    ids = [str(i) for i in range(8)]
    new, old = tmp_path / "new.jsonl", tmp_path / "old.jsonl"
    new.write_text(_ner_lines({i: ["Ann", "Bob"] for i in ids}), encoding="utf-8")  # 2 of 3 right on every record
    old.write_text(_ner_lines({i: ["Ann", "Zed"] if int(i) % 2 else [] for i in ids}), encoding="utf-8")
    want = paired_bootstrap([RecordCount(f"S/{i}", int(i) % 2, 2 * (int(i) % 2), 3) for i in ids],
                            [RecordCount(f"S/{i}", 2, 2, 3) for i in ids])
    res = CliRunner().invoke(app, ["score", "--task", "NER", "--input", str(new), "--vs", str(old)])
    assert res.exit_code == 0, res.output
    assert f"vs {old}: {want.line()}" in res.output and want.significant and want.delta == 80.0 - 25.0
    data = json.loads(CliRunner().invoke(app, ["score", "--task", "NER", "--input", str(new), "--vs", str(old), "--json"]).stdout)
    assert data["vs"] == {"other": str(old), "difference": want.to_json()} and data["total"]["F1"] == 80.0
    res = CliRunner().invoke(app, ["score", "--task", "NER", "--input", str(new), "--vs", str(new)])
    assert "ΔF1 +0.00 [95% CI +0.00, +0.00], 8 records  (not significant at n = 8)" in res.output
    other = tmp_path / "other.jsonl"
    other.write_text(_ner_lines({"0": ["Ann"], "99": ["Ann"]}), encoding="utf-8")
    res = CliRunner().invoke(app, ["score", "--task", "NER", "--input", str(new), "--vs", str(other)])
    assert res.exit_code == 2 and f"error: {new}: not the records of {other}: records only here 7 (e.g. S/1, S/2, S/3), only there 1 (e.g. S/99)" in res.output


def test_vs_zero_shot_scores_three_baselines_and_the_program_on_the_same_records(shared_data, tmp_path, monkeypatch):
    """Strict and lenient parses of the plain zero-shot answers, constrained zero-shot, and the
    program against the strongest of them with its paired interval, printed and in scores.json."""
    gold = _oracle("NER", "en", shared_data, limit=4)

    def handler(req):
        last = req["messages"][-1]["content"]
        if "Custom instruction" in last:  # the saved program: the gold answer
            return gold(req)
        if req.get("response_format"):  # constrained zero-shot: an empty (valid) answer
            return 200, chat_response(json.dumps({label: [] for label in json.loads(last)["schema"]}))
        status, body = gold(req)  # plain zero-shot: the gold answer, but fenced (strict rejects, lenient repairs)
        return status, chat_response("```json\n" + body["choices"][0]["message"]["content"] + "\n```")

    program = IEProgram("NER", "en", instruction="Custom instruction: extract the entities.").save_artifact(tmp_path / "p.json")
    with FakeEndpoint(respond=handler) as srv:
        monkeypatch.setenv("KGOPT_API_BASE", srv.url)
        monkeypatch.setenv("KGOPT_MODEL", "novel")
        args = ["evaluate", "--task", "NER", "--lang", "en", "--source", "CrossNER_AI", "--limit", "4",
                "--data-dir", str(shared_data), "--out", str(tmp_path / "out"), "--no-cache", "--program", str(program), "--vs-zero-shot"]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        assert "zero-shot F1: strict 0.00  lenient 100.00  constrained 0.00  (strongest: lenient)" in res.output
        assert f"NER/en test, 4 records: strongest zero-shot (lenient) F1 100.00  vs  {program} F1 100.00" in res.output
        assert "ΔF1 +0.00 [95% CI +0.00, +0.00], 4 records  (not significant at n = 4)" in res.output
        assert any(r.get("response_format") for r in srv.requests)
        data = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)
    assert data["zero_shot_f1"] == {"strict": 0.0, "lenient": 100.0, "constrained": 0.0} and data["strongest"] == "lenient"
    assert data["difference"]["records"] == 4 and data["difference"]["ci95"] == [0.0, 0.0]
    saved = json.loads((tmp_path / "out" / "scores.json").read_text(encoding="utf-8"))
    assert saved["difference"] == data["difference"] and saved["program_f1"] == 100.0
    for run in ("zero-shot", "zero-shot-constrained", "program"):
        assert (tmp_path / "out" / run / "predictions.jsonl").is_file() and (tmp_path / "out" / run / "scores.json").is_file()
    res = CliRunner().invoke(app, ["evaluate", "--task", "NER", "--lang", "en", "--vs-zero-shot"])
    assert res.exit_code == 2 and "--vs-zero-shot compares a saved program with the baseline: give --program FILE" in res.output
