"""Learning from failures (``--reflect``): the best trial's dev errors are shown to the model, each
instruction it writes is scored as one more trial, and it is written only if dev prefers it.

The oracle below answers with demonstrations, but right only on every other dev record, unless
the instruction says "EXACT SPANS"; asked to reflect, it writes ``REPLY`` (set per test)."""

from __future__ import annotations

import json

import pytest

from kgopt.compiler import compile_program
from kgopt.compiler.instructions import FAILURE_CHARS, failure_text
from kgopt.compiler.space import TrialConfig
from kgopt.compiler.study import dev_failures
from kgopt.program import load_program
from kgopt.testing.fake_endpoint import asked, fake_connection
from tests.oracle import Oracle

TASK, LANG, SOURCE = "NER", "en", "CrossNER_AI"
MAGIC = "Copy EXACT SPANS from the input for every label of the schema, and leave a label empty when the text has none."
MARKER = "Records where the model answered wrongly"


class HalfRight(Oracle):
    reply = MAGIC

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.reflect_prompts: list[str] = []

    def answer(self, req: dict) -> str:
        last = req["messages"][-1]["content"]
        if MARKER in last:
            self.reflect_prompts.append(last)
            return self.reply
        try:
            instr = asked(req["messages"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return super().answer(req)
        gold = super().answer(req)
        if "EXACT SPANS" in instr.get("instruction", "") or gold == last:
            return gold
        rec = self.records.get(instr.get("input"))
        if rec is not None and sorted(self.records).index(rec.text) % 2:
            return json.dumps({label: [] for label in instr["schema"]})  # misses every entity
        return gold


@pytest.fixture()
def oracle(shared_data):
    with HalfRight(TASK, LANG, shared_data, SOURCE) as o:
        yield o


def _compile(oracle, shared_data, tmp_path, **kw):
    return compile_program(TASK, LANG, fake_connection(oracle.server.url), source=SOURCE, trials=2, data_dir=shared_data, compiled_dir=tmp_path / "compiled",
                           train_limit=12, dev_limit=6, instruction_proposals=0, augmented=False, halving=False, **kw)


def test_a_reflection_dev_prefers_is_written(oracle, shared_data, tmp_path):
    res = _compile(oracle, shared_data, tmp_path, reflections=1)
    reflection = res.manifest["study"]["reflection"]
    assert reflection["instructions"] == [MAGIC] and reflection["records_shown"]
    assert len(oracle.reflect_prompts) == 1
    prompt = oracle.reflect_prompts[0]
    assert "model's answer:" in prompt and "correct labels:" in prompt
    shown = [t for t in oracle.records if t[:60] in prompt]
    assert shown  # a real dev record's text, with what the model said about it
    [trial] = reflection["trials"]
    assert trial["state"] == "COMPLETE" and trial["f1"] == 100.0
    program, manifest = load_program(res.path)
    assert program.instruction == MAGIC and manifest["dev"]["f1"] == 100.0


def test_a_reflection_that_does_not_help_is_not_written(oracle, shared_data, tmp_path):
    oracle.reply = "Extract the entities of the schema from the input text and answer with a JSON object."
    res = _compile(oracle, shared_data, tmp_path, reflections=1)
    [trial] = res.manifest["study"]["reflection"]["trials"]
    assert trial["f1"] < 100.0
    program, manifest = load_program(res.path)
    assert program.instruction != oracle.reply and manifest["dev"]["f1"] == trial["f1"]  # a tie keeps the earlier trial


def test_a_resumed_study_reflects_once(oracle, shared_data, tmp_path):
    _compile(oracle, shared_data, tmp_path, reflections=1)
    res = _compile(oracle, shared_data, tmp_path, reflections=1)
    assert len(oracle.reflect_prompts) == 1
    assert len(res.manifest["study"]["reflection"]["trials"]) == 1


def test_under_a_call_budget_the_trials_leave_reflection_its_share(oracle, shared_data, tmp_path):
    """With --max-calls and more trials than the budget pays for, the trials stop short of the
    budget, so the study still reflects (before, the trials spent it and reflection never ran)."""
    conn = fake_connection(oracle.server.url, cache_dir=tmp_path)  # kgopt compile's default: a response cache
    budget = 60
    res = compile_program(TASK, LANG, conn, source=SOURCE, trials=100, max_calls=budget, data_dir=shared_data, compiled_dir=tmp_path / "compiled",
                          train_limit=12, dev_limit=6, instruction_proposals=0, augmented=False, halving=False, reflections=1)
    [trial] = res.manifest["study"]["reflection"]["trials"]
    assert len(oracle.reflect_prompts) == 1 and trial["state"] == "COMPLETE" and trial["f1"] == 100.0
    assert conn.lm.requests_sent <= budget and conn.lm.max_calls == budget  # the budget holds, and is the budget again after
    assert load_program(res.path)[0].instruction == MAGIC


def test_without_reflect_nothing_is_asked(oracle, shared_data, tmp_path):
    res = _compile(oracle, shared_data, tmp_path)
    assert not oracle.reflect_prompts and "reflection" not in res.manifest["study"]


def _line(rid, output, labels, text="t"):
    return {"id": rid, "source": "s", "instruction": json.dumps({"instruction": "i", "schema": ["person"], "input": text}),
            "label": json.dumps(labels), "output": output, "status": "ok"}


def test_dev_failures_skip_perfect_records_and_put_misses_first():
    gold = [{"entity": "Ada", "entity_type": "person"}]
    lines = [
        _line("right", json.dumps({"person": ["Ada"]}), gold, "Ada wrote."),
        _line("extra", json.dumps({"person": ["Bob"]}), [], "Bob and nobody."),
        _line("missed", json.dumps({"person": []}), gold, "Ada again."),
    ]
    failures = dev_failures("NER", lines)
    assert [f["id"] for f in failures] == ["missed", "extra"]
    assert failures[0]["input"] == "Ada again." and failures[0]["missed"] == 1


def test_failure_text_is_cut_per_field():
    text = failure_text("en", [{"input": "x" * 1000, "output": "o", "gold": "g"}])
    assert "x" * FAILURE_CHARS in text and "x" * (FAILURE_CHARS + 1) not in text
    assert "模型的回答" in failure_text("zh", [{"input": "a", "output": "b", "gold": "c"}])


def test_a_reflection_trial_keeps_its_index_in_its_parameters():
    cfg = TrialConfig(num_demos=2, reflection=1)
    assert cfg.params()["reflection"] == 1 and TrialConfig.from_params(cfg.params()).reflection == 1
    assert "reflection" not in TrialConfig(num_demos=2).params()


@pytest.mark.llm
def test_the_embedded_model_writes_reflective_instructions(shared_data):
    """On the real model: a reflective prompt built from a real dev record the zero-shot program got
    wrong; every reply is either a cleaned instruction or counted as rejected, none failed."""
    from kgopt.clients.config import resolve_endpoint
    from kgopt.clients.lm import connect
    from kgopt.compiler.instructions import clean_proposal, propose_from_failures
    from kgopt.core.tasks import get_task
    from kgopt.data.readers import load_examples

    spec = get_task("NER")
    ex = load_examples("NER", "en", "dev", data_dir=shared_data, source=SOURCE, limit=1)[0]
    gold = json.dumps(ex.record.labels, ensure_ascii=False)
    failures = [{"input": ex.record.text, "output": '["' + ex.record.text.split()[0] + '"]', "gold": gold}]
    conn = connect(resolve_endpoint(), max_tokens=256, cache=False)
    texts, counts = propose_from_failures("en", conn.lm, spec.template("en"), failures, 2, seed=0, known=[spec.template("en")])
    assert counts["asked"] == 2 and counts["failed"] == 0 and counts["accepted"] + counts["rejected"] == 2
    assert conn.lm.usage.calls >= 2  # the model itself answered
    for text in texts:
        assert clean_proposal(text, "en") == text and text != spec.template("en")
