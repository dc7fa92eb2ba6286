"""The output parser: official vs lenient, schema validation, and fuzzing (never raises)."""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgopt.core.parsing import EMPTY, INVALID, OK, PARTIAL, REPAIRED, parse_answer
from kgopt.core.schema import Record, Schema
from kgopt.core.tasks import TASKS, get_task
from kgopt.data.readers import load_examples

NER = get_task("NER")
RE = get_task("RE")
EE = get_task("EE")
EEA = get_task("EEA")
KG = get_task("KG")


def test_official_mode_is_bare_json_loads():
    assert parse_answer(NER, '{"person": ["Ann"]}', ["person"], mode="official").status == OK
    fenced = '```json\n{"person": ["Ann"]}\n```'
    assert parse_answer(NER, fenced, ["person"], mode="official").status == INVALID
    res = parse_answer(NER, fenced, ["person"], mode="lenient")
    assert res.status == REPAIRED and res.labels == [{"entity": "Ann", "entity_type": "person"}]


@pytest.mark.parametrize(
    "raw",
    [
        "Here you go: {'person': ['Ann'],}",  # prose, single quotes, trailing comma
        '{"person": ["Ann"',  # truncated
        '```\n{"person": "Ann"}\n```',  # string instead of list, fence without language
    ],
)
def test_lenient_repairs(raw):
    res = parse_answer(NER, raw, ["person"])
    assert res.ok
    assert res.labels == [{"entity": "Ann", "entity_type": "person"}]


def test_drops_labels_not_asked_and_nan():
    res = parse_answer(NER, '{"person": ["Ann", "NAN", ""], "city": ["Rome"]}', ["person"])
    assert res.status == PARTIAL
    assert res.labels == [{"entity": "Ann", "entity_type": "person"}]
    assert any("city" in p for p in res.problems)


def test_re_accepts_subject_object_and_head_tail():
    raw = json.dumps({"work for": [{"subject": "A", "object": "B"}, {"head": "C", "tail": "D"}, {"subject": "E"}]})
    res = parse_answer(RE, raw, ["work for"])
    assert res.labels == [{"head": "A", "relation": "work for", "tail": "B"}, {"head": "C", "relation": "work for", "tail": "D"}]
    assert res.status == PARTIAL  # the incomplete triple was dropped and reported


def test_ee_arguments_coerced_and_validated():
    chunk = [{"event_type": "质押", "trigger": True, "arguments": ["主体个人", "数量"]}]
    raw = json.dumps({"质押": {"trigger": "质押", "arguments": {"主体个人": "黄立", "数量": ["1100万", "NAN"], "颜色": "红"}}}, ensure_ascii=False)
    res = parse_answer(EE, raw, chunk)
    assert res.labels == [{"event_trigger": "质押", "event_type": "质押",
                           "arguments": [{"argument": "黄立", "role": "主体个人"}, {"argument": "1100万", "role": "数量"}]}]
    assert any("颜色" in p for p in res.problems)


def test_eea_takes_the_given_trigger():
    rec = Record("1", "x", [{"event_type": "投资", "event_trigger": "入股", "arguments": []}])
    schema = Schema.make(["投资"], ["主体"], {"投资": ["主体", "金额"]})
    chunk = EEA.chunks(schema, rec)[0]
    res = parse_answer(EEA, json.dumps({"投资": [{"主体": "腾讯", "金额": "NAN"}]}, ensure_ascii=False), chunk)
    assert res.labels == [{"event_trigger": "入股", "event_type": "投资", "arguments": [{"argument": "腾讯", "role": "主体"}]}]


def test_kg_typed_triples_and_instructie_list_style():
    chunk = [{"topic": "人物", "relations": ["父母"]}]
    raw = json.dumps([{"head": "A", "head_type": "人物", "relation": "父母", "tail": "B", "tail_type": "人物"}], ensure_ascii=False)
    res = parse_answer(get_task("KG", "typed_triples"), raw, chunk)
    assert res.labels == [{"head": "A", "head_type": "人物", "relation": "父母", "tail": "B", "tail_type": "人物"}]


def test_kg_oneke_entity_attributes():
    """OneKE's KG answer: entity type -> head -> attribute -> tail or list of tails."""
    chunk = [{"entity_type": "人物", "attributes": ["出生地点", "职业"]}]
    raw = json.dumps({"人物": {"张三": {"出生地点": "北京", "职业": ["警察", "作家"], "身高": "1米8"}, "李四": {}}}, ensure_ascii=False)
    res = parse_answer(KG, raw, chunk)
    assert [(l["head"], l["relation"], l["tail"], l["head_type"]) for l in res.labels] == [
        ("张三", "出生地点", "北京", "人物"), ("张三", "职业", "警察", "人物"), ("张三", "职业", "作家", "人物")]
    assert any("身高" in p for p in res.problems) and res.status == PARTIAL


def test_kg_gold_answer_is_what_iepile_kgconverter_writes():
    rec = Record("1", "张三生于北京，是作家，也是警察。王五是他的朋友。", [
        {"head": "张三", "relation": "职业", "tail": "警察"}, {"head": "张三", "relation": "职业", "tail": "作家"},
        {"head": "张三", "relation": "出生地点", "tail": "北京"}, {"head": "王五", "relation": "朋友", "tail": "张三"}])
    chunk = KG.chunks(Schema.make(["人物"], ["出生地点", "职业", "朋友"]), rec)
    assert chunk == [[{"entity_type": "人物", "attributes": ["出生地点", "职业", "朋友"]}]]
    # heads and tails in order of first position; one tail a string, several a list
    assert KG.gold_answer(rec, chunk[0]) == {"人物": {"张三": {"出生地点": "北京", "职业": ["作家", "警察"]}, "王五": {"朋友": "张三"}}}


def test_empty_and_non_object():
    assert parse_answer(NER, "", ["person"]).status == EMPTY
    assert parse_answer(NER, "   ", ["person"]).status == EMPTY
    assert parse_answer(NER, "42", ["person"]).status == INVALID
    assert parse_answer(NER, None, ["person"]).status == INVALID


# --- fuzzing: thousands of outputs, none may raise ------------------------------------------


def _real_outputs(data_dir):
    """Gold answers of real records for every task, as the model should write them."""
    outs = []
    for task, lang in [("NER", "en"), ("NER", "zh"), ("RE", "zh"), ("RE", "en"), ("EE", "zh"), ("EE", "en"), ("EEA", "zh"), ("EET", "en"), ("KG", "zh"), ("KG", "en")]:
        spec = get_task(task)
        for ex in load_examples(task, lang, "dev", data_dir=data_dir, limit=8):
            for chunk in spec.chunks(ex.schema, ex.record):
                outs.append((spec, chunk, json.dumps(spec.gold_answer(ex.record, chunk), ensure_ascii=False)))
    return outs


def _mutate(rng, s):
    ops = rng.randint(1, 4)
    for _ in range(ops):
        op = rng.randrange(7)
        if not s:
            s = "{"
        i = rng.randrange(len(s) + 1)
        if op == 0:
            s = s[:i]  # truncate
        elif op == 1:
            s = s[:i] + rng.choice(['"', "{", "}", "[", "]", ",", ":", "\\", "'", "NAN", "null", "\n", "```"]) + s[i:]
        elif op == 2:
            j = rng.randrange(len(s) + 1)
            s = s[: min(i, j)] + s[max(i, j):]  # delete a span
        elif op == 3:
            s = "Sure, the answer is " + s + " Hope this helps."
        elif op == 4:
            s = s.replace('"', "'")
        elif op == 5:
            s = s[:i] + s[i:] * rng.randint(1, 3)  # repetition, as tiny models do
        else:
            s = "```json\n" + s
    return s


def test_fuzz_real_outputs_never_raise(shared_data):
    rng = random.Random(20261121)
    base = _real_outputs(shared_data)
    assert len(base) > 50
    statuses = set()
    for n in range(3000):
        spec, chunk, s = base[n % len(base)]
        for mode in ("lenient", "official"):
            res = parse_answer(spec, _mutate(rng, s), chunk, mode=mode)
            statuses.add(res.status)
            assert isinstance(res.labels, list)
            for item in res.labels:  # everything returned is valid for the chunk
                if spec.shape == "entities":
                    assert item["entity_type"] in chunk and isinstance(item["entity"], str)
    assert {OK, REPAIRED, INVALID} <= statuses


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=1500, deadline=None)
@given(value=json_values, task=st.sampled_from(sorted(TASKS)))
def test_fuzz_arbitrary_json_never_raises(value, task):
    spec = get_task(task)
    chunks = {
        "entities": ["person"], "triggers": ["person"], "triples": ["person"],
        "typed_triples": [{"topic": "t", "relations": ["person"]}],
        "entity_attributes": [{"entity_type": "person", "attributes": ["a"]}],
        "events": [{"event_type": "person", "trigger": True, "arguments": ["a"]}],
        "arguments": [{"event_type": "person", "trigger": ["x"], "arguments": ["a"]}],
    }
    raw = json.dumps({"person": value}) if isinstance(value, (list, dict)) else json.dumps(value)
    res = parse_answer(spec, raw, chunks[spec.shape])
    assert isinstance(res.labels, list)
