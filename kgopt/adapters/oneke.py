"""The OneKE/IEPile prompt as a DSPy adapter.

A prompt is the system line OneKE was trained with, then each demonstration as a
user/assistant turn pair, then the query. Every user turn is the instruction JSON
``{"instruction", "schema", "input"}`` (``instruction`` = the predictor's signature
instructions, so optimisers that rewrite instructions rewrite exactly this text); every
assistant turn is the JSON answer. Parsing returns the raw answer text untouched: the
task-aware parser (``kgopt.core.parsing``) validates it against the chunk's schema, and
the scorer needs the raw text for the official, strict numbers.

A prompt *layout* is one adapter class plus its registration (``@register_layout``); a
program's ``layout`` setting names it. ``oneke`` (the default) is the format above. ``compact``
says the instruction and the query's schema once, in the system turn, and each demonstration
and the query as ``{"input": ...}`` only (a demonstration asked about another schema chunk
keeps its ``schema``). It sends fewer tokens, and its system turn is the same for every record
asked the same chunk, so a server's prefix cache skips it (docs/embedded-model.md#prompt-layouts).
To add a layout, subclass ``OneKEAdapter``, override ``format`` and register it.
"""

from __future__ import annotations

import json
from typing import Any

import dspy
from dspy.clients._deprecation import adapter_message_call  # marks the LM call as adapter-owned

SYSTEM_PROMPT = "You are a helpful assistant. 你是一个乐于助人的助手。"
DEFAULT_LAYOUT = "oneke"
LAYOUTS: dict[str, type["OneKEAdapter"]] = {}


def register_layout(name: str):
    """Class decorator: make an adapter the prompt layout ``name`` of a program's settings."""

    def add(cls: type["OneKEAdapter"]) -> type["OneKEAdapter"]:
        if name in LAYOUTS:
            raise ValueError(f"layout {name!r} is already registered ({LAYOUTS[name].__name__})")
        LAYOUTS[name] = cls
        return cls

    return add


def layout_names() -> list[str]:
    """The registered layouts' names, sorted."""
    return sorted(LAYOUTS)


def adapter_for(layout: str | None) -> "OneKEAdapter":
    """A new adapter of the registered layout (``None``: the default)."""
    try:
        return LAYOUTS[layout or DEFAULT_LAYOUT]()
    except KeyError:
        raise ValueError(f"layout must be one of {layout_names()}, got {layout!r}") from None


def instruction_json(instruction: str, schema: Any, text: str) -> str:
    # stdlib json with ensure_ascii=False: byte-for-byte the format IEPile's converter writes.
    return json.dumps({"instruction": instruction, "schema": schema, "input": text}, ensure_ascii=False)


@register_layout("oneke")
class OneKEAdapter(dspy.Adapter):
    """Renders ``text`` + ``chunk`` (schema chunk) inputs as OneKE instruction JSON; the answer is raw text."""

    def __init__(self, system_prompt: str = SYSTEM_PROMPT):
        super().__init__()
        self.system_prompt = system_prompt

    def format(self, signature, demos, inputs):
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        for demo in self.shown(demos):
            messages.append({"role": "user", "content": instruction_json(signature.instructions, demo.get("chunk", []), demo["text"])})
            messages.append({"role": "assistant", "content": demo["answer"]})
        messages.append({"role": "user", "content": instruction_json(signature.instructions, inputs.get("chunk", []), inputs["text"])})
        return messages

    @staticmethod
    def shown(demos):
        """The demonstrations a prompt shows: a demo without an answer teaches nothing."""
        return [d for d in demos if d.get("text") is not None and d.get("answer") is not None]

    def format_field_with_value(self, fields_with_values, role: str = "assistant") -> str:
        """An assistant turn is the bare answer text (what DummyLM uses to mimic this format)."""
        return "\n".join(str(v) for v in fields_with_values.values())

    def parse(self, signature, completion):
        return {"answer": completion if isinstance(completion, str) else ""}

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):
        messages = self.format(signature, demos, inputs)
        with adapter_message_call(lm, messages):
            outputs = lm(messages=messages, **lm_kwargs)
        # Unlike DSPy's base adapter, an empty answer is not an exception: it is an answer
        # (the parser reports it as "empty"), so one silent chunk does not lose a record.
        return [self.parse(signature, out.get("text") if isinstance(out, dict) else out) for out in outputs]

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):
        messages = self.format(signature, demos, inputs)
        with adapter_message_call(lm, messages):
            outputs = await lm.acall(messages=messages, **lm_kwargs)
        return [self.parse(signature, out.get("text") if isinstance(out, dict) else out) for out in outputs]


@register_layout("compact")
class CompactAdapter(OneKEAdapter):
    """The instruction and schema once, first; then ``{"input"}`` turns (see module doc)."""

    def format(self, signature, demos, inputs):
        chunk = inputs.get("chunk", [])
        head = json.dumps({"instruction": signature.instructions, "schema": chunk}, ensure_ascii=False)
        messages = [{"role": "system", "content": f"{self.system_prompt}\n{head}" if self.system_prompt else head}]
        for demo in self.shown(demos):
            asked = {"input": demo["text"]}
            if demo.get("chunk", []) != chunk:  # its answer answers another schema: say which
                asked = {"schema": demo.get("chunk", []), "input": demo["text"]}
            messages.append({"role": "user", "content": json.dumps(asked, ensure_ascii=False)})
            messages.append({"role": "assistant", "content": demo["answer"]})
        messages.append({"role": "user", "content": json.dumps({"input": inputs["text"]}, ensure_ascii=False)})
        return messages
