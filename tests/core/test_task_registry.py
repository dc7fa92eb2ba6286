"""Tasks are data: a new task with an existing answer shape is one ``TaskSpec`` registration
(by keyword) - its chunks, gold answers, parsing and scoring tuples all come from the shape."""

import json

import pytest

from kgopt.core import tasks
from kgopt.core.parsing import parse_answer
from kgopt.core.schema import Record, Schema
from kgopt.core.tasks import TaskSpec, get_task


@pytest.fixture()
def product_ner(monkeypatch):
    """A test-only task: product names, in the NER shape, registered for the test."""
    spec = TaskSpec(name="PNER", dataset="iepile", folder="NER", label_key="entity", split_size=2, shape="entities",
                    templates={"en": "Extract the products named in the input.", "zh": "请抽取input中的产品名称。"})
    monkeypatch.setitem(tasks.TASKS, "PNER", spec)
    return spec


def test_a_task_with_an_existing_shape_is_one_registration(product_ner):
    spec = get_task("pner")
    assert spec is product_ner and spec.answer_shape.name == "entities"
    schema = Schema.make(["phone", "laptop", "tablet"], [], {})
    record = Record(id="1", text="The Nova phone and the Arc laptop.", labels=[{"entity": "Nova", "entity_type": "phone"},
                                                                           {"entity": "Arc", "entity_type": "laptop"}])
    chunks = spec.chunks(schema, record)
    assert chunks == [["phone", "laptop"], ["tablet"]]  # the schema round-robin, two labels per call
    answers = {json.dumps(c): spec.gold_answer(record, c) for c in chunks}
    labels = [lab for c in chunks for lab in parse_answer(spec, json.dumps(answers[json.dumps(c)]), c).labels]
    assert sorted(spec.gold_tuples(labels)) == sorted(spec.gold_tuples(record.labels)) == [("Arc", "laptop"), ("Nova", "phone")]
    assert spec.instruction("en", chunks[0], record.text)["instruction"] == "Extract the products named in the input."


def test_a_task_spec_is_built_by_keyword():
    with pytest.raises(TypeError):
        TaskSpec("X", "iepile", "NER", "entity", 2, "entities", {})  # positional fields could be silently misassigned


def test_every_registered_task_names_a_registered_shape_and_folder():
    from kgopt.core.shapes import SHAPES

    for name, spec in tasks.TASKS.items():
        assert spec.name == name and spec.shape in SHAPES and spec.folder
        for variant in tasks.ANSWER_FORMATS[name].values():
            assert variant.shape in SHAPES
