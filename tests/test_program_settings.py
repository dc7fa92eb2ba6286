"""Answer JSON schemas, demonstration choice, and program settings through save/load."""


import dspy
import jsonschema
import pytest

from kgopt.clients.dialects import response_format
from kgopt.core.answer_schema import answer_json_schema
from kgopt.core.demos import cover_labels, most_similar, similarity
from kgopt.core.tasks import LANGS, TASKS
from kgopt.data.readers import load_examples
from kgopt.program import IEProgram, ProgramSettings, load_program

CASES = [(t, l) for t in TASKS for l in LANGS if not (t == "KG" and l not in LANGS)]


@pytest.mark.parametrize("task,lang", CASES)
def test_gold_answers_satisfy_the_answer_schema(task, lang, shared_data):
    """Constrained decoding never forbids a correct answer (multi-valued roles: their first value)."""
    spec = TASKS[task]
    n = 0
    for ex in load_examples(task, lang, "dev", data_dir=shared_data, limit=15):
        for chunk in spec.chunks(ex.schema, ex.record):
            schema = answer_json_schema(spec, chunk)
            answer = spec.gold_answer(ex.record, chunk)
            if spec.shape in ("events", "arguments"):  # json mode: one value per role (see answer_schema)
                for evs in answer.values():
                    for ev in evs:
                        args = ev.get("arguments", ev) if isinstance(ev, dict) else {}
                        for k, v in list(args.items()):
                            if isinstance(v, list):
                                args[k] = v[0]
            if spec.shape == "entity_attributes":  # json mode: every attribute a list (see answer_schema)
                for heads in answer.values():
                    for attrs in heads.values():
                        for k, v in list(attrs.items()):
                            attrs[k] = v if isinstance(v, list) else [v]
            jsonschema.validate(answer, schema)
            n += 1
            # ...and a wrong key is rejected.
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate({**answer, "not a label": []}, schema)
    assert n > 0


def test_caps_and_dialects():
    spec = TASKS["NER"]
    s = answer_json_schema(spec, ["person", "location"], max_items=2, max_len=8)
    jsonschema.validate({"person": ["Ann", "Bob"], "location": []}, s)
    for bad in ({"person": ["a", "b", "c"], "location": []}, {"person": ["much too long"], "location": []}, {"person": []}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, s)
    assert response_format(s, "openai")["json_schema"]["schema"] == s
    assert response_format(s, "llama-cpp") == {"type": "json_object", "schema": s}
    with pytest.raises(ValueError):
        response_format(s, "other")


def test_similarity_and_selection():
    assert similarity("北京是中国的首都", "北京是中国的首都") == 1.0
    assert similarity("Paris is in France", "the cat sat") == 0.0
    pool = ["Obama visited Paris in 2009", "The cat sat on the mat", "Obama met Merkel in Berlin"]
    assert most_similar("Obama went to Berlin", pool, 2, key=str) == ["Obama visited Paris in 2009", "Obama met Merkel in Berlin"]
    labels = {"a": {"x"}, "b": {"x", "y"}, "c": {"z"}}
    assert sorted(cover_labels(list(labels), 2, labels_of=labels.get)) == ["b", "c"]


def test_program_picks_demos_and_sends_settings(tmp_path):
    prog = IEProgram("NER", "en", settings=ProgramSettings(num_demos=1, demo_selection="similar", output="json", temperature=0.3, max_tokens=99, max_items=2))
    prog.extract.demos = [
        dspy.Example(text="The cat sat on the mat", chunk=["animal"], answer='{"animal": ["cat"]}'),
        dspy.Example(text="Obama visited Paris", chunk=["person"], answer='{"person": ["Obama"]}'),
    ]
    assert [d["text"] for d in prog.select_demos("Obama visited Berlin", ["person"])] == ["Obama visited Paris"]
    cfg = prog.call_config(["person"])
    assert cfg["temperature"] == 0.3 and cfg["seed"] == 0 and cfg["max_tokens"] == 99
    assert cfg["response_format"]["json_schema"]["schema"]["properties"]["person"]["maxItems"] == 2
    path = prog.save_artifact(tmp_path / "p.json", {"kind": "test"})
    loaded, manifest = load_program(path, "NER", "en")
    assert loaded.settings == prog.settings and len(loaded.extract.demos) == 2 and manifest == {"kind": "test"}
    with pytest.raises(ValueError):
        ProgramSettings(output="xml")


# --- demo_order: the chosen demonstrations as selected, or sorted by text (prefix reuse) -------------

ORDER_POOL = [
    dspy.Example(text="Obama met Merkel in Berlin", chunk=["person"], answer='{"person": ["Obama", "Merkel"]}'),
    dspy.Example(text="Obama visited Paris", chunk=["person"], answer='{"person": ["Obama"]}'),
    dspy.Example(text="An apple fell", chunk=["person"], answer='{"person": []}'),
]


def _ordered(order: str) -> IEProgram:
    prog = IEProgram("NER", "en", settings=ProgramSettings(num_demos=2, demo_selection="similar", demo_order=order))
    prog.extract.demos = list(ORDER_POOL)
    return prog


def test_sorted_order_shows_the_same_demonstrations_sorted_by_text():
    selected, ordered = _ordered("selected"), _ordered("sorted")
    for text in ("Obama visited Berlin", "Merkel met Obama in Paris", "apple"):
        chosen = selected.select_demos(text, ["person"])
        shown = ordered.select_demos(text, ["person"])
        assert sorted(d["text"] for d in chosen) == [d["text"] for d in shown]  # the same set, sorted
    # Where the choice's order (most similar last) is not the text order, the two differ.
    assert [d["text"] for d in selected.select_demos("Obama visited Paris in Berlin", ["person"])] == ["Obama met Merkel in Berlin", "Obama visited Paris"]
    assert [d["text"] for d in selected.select_demos("Obama met Merkel", ["person"])] == ["Obama visited Paris", "Obama met Merkel in Berlin"]
    assert [d["text"] for d in ordered.select_demos("Obama met Merkel", ["person"])] == ["Obama met Merkel in Berlin", "Obama visited Paris"]


@pytest.mark.parametrize("layout", ["oneke", "compact"])
def test_two_inputs_shown_the_same_demonstrations_send_the_same_prefix_when_sorted(layout):
    """The point of ``sorted``: the prompt differs only in the query turn, which a prefix cache needs."""
    from kgopt.adapters.oneke import adapter_for

    def prompt(prog, text):
        prog.settings.layout = layout
        return adapter_for(layout).format(prog.extract.signature, prog.select_demos(text, ["person"]), {"text": text, "chunk": ["person"]})

    a, b = "Obama visited Paris in Berlin", "Obama met Merkel"
    assert prompt(_ordered("selected"), a)[:-1] != prompt(_ordered("selected"), b)[:-1]
    assert prompt(_ordered("sorted"), a)[:-1] == prompt(_ordered("sorted"), b)[:-1]
    assert prompt(_ordered("sorted"), a)[-1] != prompt(_ordered("sorted"), b)[-1]


def test_demo_order_is_saved_only_when_not_the_default_and_checked_on_load(tmp_path):
    import json

    from kgopt.errors import ArtifactError

    assert "demo_order" not in _ordered("selected").config()  # committed programs stay byte-identical
    path = _ordered("sorted").save_artifact(tmp_path / "sorted.json", {"kind": "test"})
    loaded, _ = load_program(path, "NER", "en")
    assert loaded.settings.demo_order == "sorted"
    art = json.loads(path.read_text(encoding="utf-8"))
    for bad in ("shuffled", None, ["sorted"]):
        art["config"]["demo_order"] = bad
        path.write_text(json.dumps(art), encoding="utf-8")
        with pytest.raises(ArtifactError, match=r"config: demo_order must be one of \('selected', 'sorted'\)") as err:
            load_program(path)
        assert str(path) in str(err.value)
