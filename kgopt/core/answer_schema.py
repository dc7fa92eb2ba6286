"""The JSON schema of a chunk's answer, for server-side constrained decoding.

vLLM and llama.cpp servers can restrict generation to a JSON schema. The schema here is
exactly the answer shape the parser accepts for a chunk (every label asked, in order, as a
key; nothing else), with optional caps on list lengths and string lengths. The caps are a
search-space knob: a small model that rambles spends its token budget on one key and
truncates the JSON, which the official scorer counts as an error for the whole chunk.
"""

from __future__ import annotations

from typing import Any

from kgopt.core.tasks import TaskSpec


def _string(max_len: int | None) -> dict[str, Any]:
    return {"type": "string", **({"maxLength": max_len} if max_len else {})}


def _array(items: dict[str, Any], max_items: int | None) -> dict[str, Any]:
    return {"type": "array", "items": items, **({"maxItems": max_items} if max_items else {})}


def _object(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def answer_json_schema(spec: TaskSpec, chunk: list[Any], max_items: int | None = None, max_len: int | None = None) -> dict[str, Any]:
    """A JSON schema that every valid answer to ``chunk`` satisfies (and only those)."""
    s = _string(max_len)
    # One string per role ("NAN" when absent). IEPile also allows a list for a multi-valued role,
    # but an anyOf makes llama-cpp-python's grammar sampler crawl (measured: calls timing out at
    # 120 s that take ~10 s unconstrained), so json mode gives each role one value; plain mode
    # keeps lists.
    role = s
    props: dict[str, Any] = {}
    for item in chunk:
        if spec.shape in ("entities", "triggers"):
            props[spec.item_label(item)] = _array(s, max_items)
        elif spec.shape == "triples":
            props[item] = _array(_object({"subject": s, "object": s}), max_items)
        elif spec.shape == "events":
            args = _object({r: role for r in item["arguments"]})
            props[item["event_type"]] = _array(_object({"trigger": s, "arguments": args}), max_items)
        elif spec.shape == "arguments":
            props[item["event_type"]] = _array(_object({r: role for r in item["arguments"]}), max_items)
        elif spec.shape == "entity_attributes":
            # Heads are the model's own keys; attributes are optional (absent ones are not output).
            # Always a list of values (OneKE writes one value as a string): an anyOf of the two
            # would slow the grammar sampler, and multi-valued attributes are common in InstructIE.
            attrs = {"type": "object", "properties": {a: _array(s, None) for a in item["attributes"]}, "additionalProperties": False}
            props[item["entity_type"]] = {"type": "object", "additionalProperties": attrs, **({"maxProperties": max_items} if max_items else {})}
        elif spec.shape == "typed_triples":
            triple = _object({"head": s, "head_type": s, "tail": s, "tail_type": s})
            for rel in item["relations"]:
                props[rel] = _array(triple, max_items)
        else:  # a new shape must say how it is constrained
            raise ValueError(f"no answer schema for shape {spec.shape!r}")
    return _object(props)


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
