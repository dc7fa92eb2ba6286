"""The embedded server's grammar-checked sampling, on the real embedded model: the same greedy
answers as llama-cpp-python's grammar-in-the-chain sampling (the speed is a benchmark's:
scripts/bench_grammar.py)."""

import json

import pytest

from kgopt.clients import embedded

pytestmark = pytest.mark.llm

SCHEMA = {
    "type": "object",
    "properties": {"person": {"type": "array", "items": {"type": "string"}}, "location": {"type": "array", "items": {"type": "string"}}},
    "required": ["person", "location"],
    "additionalProperties": False,
}
PROMPTS = [
    "Extract persons and locations as JSON from: Ernest Hemingway lived in Oak Park, Chicago, and later in Key West with Pauline.",
    "从下面的句子中抽取人物和地点，用JSON回答：鲁迅出生于浙江绍兴，后来在北京和上海生活。",
    "Say hello.",  # an answer the model would not give as JSON unasked: the grammar must refuse tokens
]


@pytest.fixture(scope="module")
def llama():
    from llama_cpp import Llama

    from kgopt.clients.weights import ensure_gguf, selected_model

    return Llama(str(ensure_gguf(selected_model())), n_ctx=2048, n_threads=2, verbose=False)


def _answer(llm, prompt: str) -> str:
    from llama_cpp import LlamaGrammar

    llm.reset()
    llm._ctx.kv_cache_clear()  # the same starting state: llama.cpp's logits depend on what the cache held
    grammar = LlamaGrammar.from_json_schema(json.dumps(SCHEMA), verbose=False)
    out = llm.create_chat_completion([{"role": "user", "content": prompt}], grammar=grammar, temperature=0, max_tokens=96)
    return out["choices"][0]["message"]["content"]


def test_checked_sampling_gives_the_grammar_in_the_chain_answers(llama, monkeypatch):
    from llama_cpp.llama import Llama

    from kgopt.clients.llama_child import CheckedGrammarSampler, install

    plain = [_answer(llama, p) for p in PROMPTS]
    monkeypatch.setattr(Llama, "_init_sampler", Llama._init_sampler)  # undone after the test
    install()
    checked = []
    refused = 0
    for p in PROMPTS:
        checked.append(_answer(llama, p))
        sampler = llama._sampler
        assert isinstance(sampler, CheckedGrammarSampler) and sampler.checked > 0
        refused += sampler.refused
    assert checked == plain
    assert refused > 0  # the fall-back path (the whole vocabulary filtered) ran, and agreed
    for text in checked:
        obj = json.loads(text)
        assert set(obj) == {"person", "location"}


def test_the_embedded_server_runs_the_checked_child(monkeypatch, tmp_path):
    launched = []

    class FakeProc:
        def __init__(self, cmd, **kw):
            launched.append(cmd)

        def poll(self):
            return 0

    monkeypatch.setattr(embedded.subprocess, "Popen", FakeProc)
    monkeypatch.setattr(embedded.EmbeddedServer, "_wait_ready", lambda self: None)
    monkeypatch.setenv("KGOPT_HOME", str(tmp_path))
    embedded.EmbeddedServer().start()
    assert launched and launched[0][1:3] == ["-m", "kgopt.clients.llama_child"]
