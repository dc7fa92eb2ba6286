"""The OneKE adapter renders exactly IEPile's instruction strings."""

import json

import pytest

from kgopt.adapters.oneke import SYSTEM_PROMPT, OneKEAdapter
from kgopt.data.readers import iepile_root, read_instruction_file
from kgopt.program import IEProgram


def test_user_turn_is_byte_identical_to_iepile_instruction_lines(shared_data):
    adapter = OneKEAdapter()
    path = iepile_root(shared_data) / "dev.json"
    originals = [json.loads(l)["instruction"] for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    lines = list(read_instruction_file(path))
    assert len(lines) == len(originals) == 211
    for line, original in zip(lines, originals):
        instr = line.instruction
        lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in instr["instruction"]) else "en"
        program = IEProgram(line.task, lang)
        msgs = adapter.format(program.extract.signature, [], {"text": instr["input"], "chunk": instr["schema"]})
        assert msgs[-1]["content"] == original  # the file's own string, byte for byte


def test_demos_become_user_assistant_turns():
    program = IEProgram("NER", "en")
    demos = [{"text": "Ann met Bob.", "chunk": ["person"], "answer": '{"person": ["Ann", "Bob"]}'}]
    msgs = OneKEAdapter().format(program.extract.signature, demos, {"text": "Cy.", "chunk": ["person"]})
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"] == SYSTEM_PROMPT
    assert json.loads(msgs[1]["content"])["input"] == "Ann met Bob."
    assert msgs[2]["content"] == '{"person": ["Ann", "Bob"]}'


def test_layouts_are_registered_and_a_program_setting_names_one():
    from kgopt.adapters.oneke import LAYOUTS, CompactAdapter, adapter_for
    from kgopt.program import ProgramSettings

    assert {"oneke": OneKEAdapter, "compact": CompactAdapter}.items() <= LAYOUTS.items()
    assert type(adapter_for(None)) is OneKEAdapter and type(adapter_for("compact")) is CompactAdapter
    with pytest.raises(ValueError, match="layout must be one of"):
        adapter_for("fancy")
    with pytest.raises(ValueError, match="layout must be one of"):
        ProgramSettings(layout="fancy")


def test_a_program_in_the_default_layout_is_saved_without_the_field():
    program = IEProgram("NER", "en")
    assert "layout" not in program.config()  # so committed programs stay byte-identical
    program.settings.layout = "compact"
    assert program.config()["layout"] == "compact"


DEMOS = [
    {"text": "Ann met Bob.", "chunk": ["person"], "answer": '{"person": ["Ann", "Bob"]}'},
    {"text": "Rome is old.", "chunk": ["location"], "answer": '{"location": ["Rome"]}'},  # another chunk
]


def test_compact_says_instruction_and_schema_once_first():
    from kgopt.adapters.oneke import CompactAdapter

    program = IEProgram("NER", "en")
    msgs = CompactAdapter().format(program.extract.signature, DEMOS, {"text": "Cy.", "chunk": ["person"]})
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    system, head = msgs[0]["content"].split("\n", 1)
    assert system == SYSTEM_PROMPT
    assert json.loads(head) == {"instruction": program.instruction, "schema": ["person"]}
    assert json.loads(msgs[1]["content"]) == {"input": "Ann met Bob."}  # same chunk: no schema, no instruction
    assert json.loads(msgs[3]["content"]) == {"schema": ["location"], "input": "Rome is old."}  # another chunk keeps its own
    assert json.loads(msgs[5]["content"]) == {"input": "Cy."}
    assert program.instruction not in "".join(m["content"] for m in msgs[1:])


def test_compact_prompts_of_two_records_share_their_system_turn():
    from kgopt.adapters.oneke import CompactAdapter

    sig = IEProgram("NER", "en").extract.signature
    one = CompactAdapter().format(sig, DEMOS[:1], {"text": "Cy.", "chunk": ["person"]})
    two = CompactAdapter().format(sig, DEMOS[1:], {"text": "Di.", "chunk": ["person"]})
    assert one[0] == two[0]  # the prefix a server's cache can skip


def test_a_program_asks_in_its_layout():
    import dspy
    from dspy.utils.dummies import DummyLM

    program = IEProgram("NER", "en")
    program.settings.layout, program.settings.num_demos = "compact", 1
    program.extract.demos = DEMOS[:1]
    lm = DummyLM([{"answer": '{"person": ["Cy"]}'}], adapter=OneKEAdapter())
    with dspy.context(lm=lm):
        pred = program(text="Cy.", chunk=["person"])
    assert pred.result == [{"entity": "Cy", "entity_type": "person"}]
    sent = lm.history[-1]["messages"]
    assert json.loads(sent[-1]["content"]) == {"input": "Cy."}


def test_a_test_only_layout_is_one_class_plus_its_registration(monkeypatch):
    from kgopt.adapters import oneke
    from kgopt.program import ProgramSettings

    monkeypatch.setattr(oneke, "LAYOUTS", dict(oneke.LAYOUTS))  # registered for this test only

    @oneke.register_layout("shouting")
    class Shouting(OneKEAdapter):
        def format(self, signature, demos, inputs):
            return [{"role": "user", "content": inputs["text"].upper()}]

    assert ProgramSettings(layout="shouting").layout == "shouting"
    sig = IEProgram("NER", "en").extract.signature
    assert oneke.adapter_for("shouting").format(sig, [], {"text": "cy", "chunk": []}) == [{"role": "user", "content": "CY"}]
    with pytest.raises(ValueError, match="already registered"):
        oneke.register_layout("shouting")(Shouting)


@pytest.mark.parametrize("layout", ["fancy", ["compact"], None])
def test_a_program_file_with_an_unknown_layout_is_refused_with_the_file(tmp_path, layout):
    from kgopt.errors import ArtifactError
    from kgopt.program import load_program

    program = IEProgram("NER", "en")
    program.settings.layout = "compact"
    art = program.to_artifact()
    art["config"]["layout"] = layout
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(art), encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"config: layout must be one of \['compact', 'oneke'\]") as err:
        load_program(path)
    assert str(path) in str(err.value)
