"""Answer shapes: one contract every shape keeps, run on every registered shape (as Optuna runs
one storage suite on every storage), and a test-only shape added without touching other code."""

import json

import jsonschema
import pytest

from kgopt.core import shapes
from kgopt.core.answer_schema import answer_json_schema
from kgopt.core.parsing import OK, parse_answer
from kgopt.core.scoring import extract_official
from kgopt.core.shapes import SHAPES, AnswerShape, Collector, EntityItems, json_array, shape_named
from kgopt.core.tasks import get_task
from kgopt.graph.build import mentions_from_labels

TEXT = "张三在北京创立了星光公司。"

# One valid answer per shape: (task, answer format, chunk asked, answer, labels it holds).
CASES = {
    "entities": ("NER", None, ["人物", "地点"], {"人物": ["张三"], "地点": ["北京"]}, 2),
    "triggers": ("EET", None, ["成立"], {"成立": ["创立"]}, 1),
    "triples": ("RE", None, ["创始人"], {"创始人": [{"subject": "星光公司", "object": "张三"}]}, 1),
    "typed_triples": ("KG", "typed_triples", [{"topic": "组织", "relations": ["创始人"]}],
                      {"创始人": [{"head": "星光公司", "head_type": "组织", "tail": "张三", "tail_type": "人物"}]}, 1),
    "events": ("EE", None, [{"event_type": "成立", "trigger": True, "arguments": ["创始人", "地点"]}],
               {"成立": [{"trigger": "创立", "arguments": {"创始人": "张三", "地点": "北京"}}]}, 1),
    "arguments": ("EEA", None, [{"event_type": "成立", "trigger": ["创立"], "arguments": ["创始人", "地点"]}],
                  {"成立": [{"创始人": "张三", "地点": "北京"}]}, 1),
    "entity_attributes": ("KG", None, [{"entity_type": "组织", "attributes": ["创始人", "总部地点"]}],
                          {"组织": {"星光公司": {"创始人": ["张三"], "总部地点": ["北京"]}}}, 2),
}


def test_every_registered_shape_has_a_contract_case():
    assert set(CASES) == set(SHAPES)


@pytest.fixture(params=sorted(CASES))
def case(request):
    task, fmt, chunk, answer, n = CASES[request.param]
    spec = get_task(task, fmt)
    assert spec.shape == request.param
    return spec, chunk, answer, n


def test_a_valid_answer_parses_whole(case):
    spec, chunk, answer, n = case
    res = parse_answer(spec, json.dumps(answer, ensure_ascii=False), chunk, mode="official")
    assert res.status == OK and not res.problems and len(res.labels) == n


def test_labels_outside_the_chunk_are_dropped_with_a_reason(case):
    spec, chunk, answer, n = case
    res = parse_answer(spec, json.dumps({"不在schema里": answer[next(iter(answer))]}, ensure_ascii=False), chunk)
    assert res.labels == [] and res.problems


def test_untrusted_output_never_raises(case):
    spec, chunk, answer, n = case
    for raw in ("", "null", "[1, 2]", '{"a": {"b": [null, 3, {"c": []}]}}', "```json\n{" + '"x": [' * 50, "\x00"):
        res = parse_answer(spec, raw, chunk)
        assert res.labels == [] or res.status != OK


def test_the_official_extraction_counts_every_label(case):
    spec, chunk, answer, n = case
    ok, tuples = extract_official(spec, json.dumps(answer, ensure_ascii=False))
    assert ok and len(tuples) == n


def test_the_constrained_decoding_schema_accepts_the_answer_and_refuses_extra_keys(case):
    spec, chunk, answer, n = case
    schema = answer_json_schema(spec, chunk)
    jsonschema.validate(answer, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**answer, "不在schema里": []}, schema)


def test_graph_mentions_point_into_the_text(case):
    spec, chunk, answer, n = case
    shape = shape_named(spec.shape)
    labels = parse_answer(spec, json.dumps(answer, ensure_ascii=False), chunk).labels
    if not shape.builds_graph:
        with pytest.raises(ValueError, match="cannot build a graph"):
            mentions_from_labels(spec.name, labels, TEXT)
        return
    m = shape.mentions(labels, lambda s: [TEXT.find(s), TEXT.find(s) + len(s)] if s in TEXT else None)
    spans = [e["span"] for e in m["entities"]] + [t[k] for t in m["triples"] for k in ("head_span", "tail_span")]
    assert spans and all(sp is not None and TEXT[sp[0]:sp[1]] for sp in spans)


def test_record_items_check_a_gold_label(case):
    spec, chunk, answer, n = case
    items = shape_named(spec.shape).record
    assert items.key == spec.label_key
    labels = parse_answer(spec, json.dumps(answer, ensure_ascii=False), chunk).labels
    assert all(items.well_formed(it) for it in labels if items.key != "event" or "arguments" in it)


class Keyphrases(AnswerShape):
    """A test-only shape: ``{"keyphrases": [phrase, ...]}``, whatever the schema."""

    name = "keyphrases"
    record = EntityItems()

    def parse(self, obj, chunk, col: Collector):
        for v in obj.get("keyphrases", []):
            if isinstance(v, str) and v.strip():
                col.labels.append({"entity": v, "entity_type": "keyphrase"})
            else:
                col.drop(f"not a phrase: {v!r}")

    def official(self, obj):
        return [(v, "keyphrase") for v in obj.get("keyphrases", []) if isinstance(v, str)]

    def properties(self, item, label, s, max_items):
        return {"keyphrases": json_array(s, max_items)}

    def mentions(self, labels, span):
        return {"triples": [], "entities": [{"name": it["entity"], "type": "keyphrase", "span": span(it["entity"])} for it in labels]}


def test_a_new_shape_is_one_class_and_one_registration(monkeypatch):
    import dataclasses

    monkeypatch.setitem(shapes.SHAPES, "keyphrases", Keyphrases())
    spec = dataclasses.replace(get_task("NER"), shape="keyphrases")
    raw = '{"keyphrases": ["星光公司", 7]}'
    res = parse_answer(spec, raw, ["keyphrase"])
    assert [it["entity"] for it in res.labels] == ["星光公司"] and res.problems == ["not a phrase: 7"]
    assert extract_official(spec, raw) == (True, [("星光公司", "keyphrase")])
    jsonschema.validate({"keyphrases": ["a"]}, answer_json_schema(spec, ["keyphrase"]))
    assert shape_named("keyphrases").mentions(res.labels, lambda s: [0, len(s)])["entities"][0]["span"] == [0, 4]
