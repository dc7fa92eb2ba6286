"""The OneKE adapter renders exactly IEPile's instruction strings."""

import json

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
