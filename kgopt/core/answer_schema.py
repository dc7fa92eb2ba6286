"""The JSON schema of a chunk's answer, for server-side constrained decoding.

vLLM and llama.cpp servers can restrict generation to a JSON schema. The schema here is
exactly the answer shape the parser accepts for a chunk (every label asked, in order, as a
key; nothing else), with optional caps on list lengths and string lengths. The caps are a
search-space knob: a small model that rambles spends its token budget on one key and
truncates the JSON, which the official scorer counts as an error for the whole chunk.
"""

from __future__ import annotations

from typing import Any

from kgopt.core.shapes import json_object, json_string, shape_named
from kgopt.core.tasks import TaskSpec


def answer_json_schema(spec: TaskSpec, chunk: list[Any], max_items: int | None = None, max_len: int | None = None) -> dict[str, Any]:
    """A JSON schema that every valid answer to ``chunk`` satisfies (and only those)."""
    shape, s = shape_named(spec.shape), json_string(max_len)
    props: dict[str, Any] = {}
    for item in chunk:
        props.update(shape.properties(item, spec.item_label, s, max_items))
    return json_object(props)


# How an endpoint wants the schema: OpenAI's ``json_schema`` (vLLM, OpenAI, most servers) or
# llama-cpp-python's ``json_object`` + ``schema`` (its server rejects ``json_schema``). Callers
# always build OpenAI's form; the client (``clients.lm.EndpointLM``) translates it per endpoint.
JSON_DIALECTS = ("openai", "llama-cpp")


def schema_of(fmt: Any) -> dict[str, Any] | None:
    """The JSON schema inside a response_format of either dialect (None: not a schema request)."""
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        return fmt["json_schema"].get("schema")
    if fmt.get("type") == "json_object" and isinstance(fmt.get("schema"), dict):
        return fmt["schema"]
    return None


def response_format(schema: dict[str, Any], dialect: str = "openai") -> dict[str, Any]:
    if dialect == "llama-cpp":
        return {"type": "json_object", "schema": schema}
    if dialect == "openai":
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    raise ValueError(f"unknown JSON dialect {dialect!r}; choose one of {', '.join(JSON_DIALECTS)}")
