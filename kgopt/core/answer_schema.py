"""The JSON schema of a chunk's answer, for server-side constrained decoding.

vLLM and llama.cpp servers can restrict generation to a JSON schema. The schema here is
exactly the answer shape the parser accepts for a chunk (every label asked, in order, as a
key; nothing else), with optional caps on list lengths and string lengths. The caps are a
search-space knob: a small model that rambles spends its token budget on one key and
truncates the JSON, which the official scorer counts as an error for the whole chunk.
How a server takes the schema (its dialect) is the client's business: ``kgopt.clients.dialects``.
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

