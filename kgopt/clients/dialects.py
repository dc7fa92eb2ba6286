"""How a server takes a JSON schema for constrained decoding: its dialect.

A dialect is one ``Dialect`` subclass registered with ``@register_dialect``: its server's form of
a schema constraint (``response_format``), recognising that form (``schema_of``), and
recognising how its server refuses a schema sent in another dialect's form (``refuses``).
Callers build OpenAI's form (``response_format(schema)``); ``clients.lm.EndpointLM`` sends each
endpoint its own, and in "auto" mode tries the registered dialects in registration order.
"""

from __future__ import annotations

from typing import Any

import openai


class Dialect:
    """One server's form of a JSON-schema constraint. A subclass sets ``name`` and implements all three methods."""

    name: str = ""

    def response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The request's ``response_format`` that constrains the answer to ``schema``."""
        raise NotImplementedError

    def schema_of(self, fmt: Any) -> dict[str, Any] | None:
        """The schema inside ``fmt`` if it is this dialect's form, else None."""
        raise NotImplementedError

    def refuses(self, exc: Exception) -> bool:
        """``exc`` is how this dialect's server refuses a schema request in another dialect's form."""
        raise NotImplementedError


# By name, in registration order: the order "auto" tries them.
_DIALECTS: dict[str, Dialect] = {}


def register_dialect(cls: type[Dialect]) -> type[Dialect]:
    """Class decorator: make ``cls`` a dialect that configs, clients and "auto" know by its name."""
    if not cls.name or cls.name == "auto" or cls.name in _DIALECTS:
        raise ValueError(f"a dialect needs a name of its own (not 'auto', not taken), got {cls.name!r}")
    _DIALECTS[cls.name] = cls()
    return cls


def dialect_names() -> tuple[str, ...]:
    return tuple(_DIALECTS)


def get_dialect(name: str) -> Dialect:
    try:
        return _DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown JSON dialect {name!r}; choose one of {', '.join(_DIALECTS)}") from None


def response_format(schema: dict[str, Any], dialect: str = "openai") -> dict[str, Any]:
    """``schema`` as a response_format: OpenAI's form unless another dialect is named."""
    return get_dialect(dialect).response_format(schema)


def schema_of(fmt: Any) -> dict[str, Any] | None:
    """The JSON schema inside a response_format of any registered dialect (None: not a schema request)."""
    for d in _DIALECTS.values():
        schema = d.schema_of(fmt)
        if schema is not None:
            return schema
    return None


# --- how servers refuse a request (for ``refuses``; clients.lm decides retries by it too) ----------

# Words of a server's reply that rejects the request itself rather than failing to serve it.
# llama-cpp-python answers an unknown response_format with HTTP 500 and a validation error.
_INVALID_REQUEST_WORDS = ("validation error", "validationerror", "invalid request", "invalid_request", "unprocessable", "response_format", "json_schema")


def error_text(exc: Exception) -> str:
    """An API error's message and body, lower-cased."""
    return f"{getattr(exc, 'message', '')} {getattr(exc, 'body', '')}".lower()


def rejected_request(exc: Exception) -> bool:
    """The server refused this request as invalid: asking again cannot help."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code in (408, 409, 429):
        return False
    if exc.status_code < 500:
        return True
    return any(w in error_text(exc) for w in _INVALID_REQUEST_WORDS)


# --- the built-in dialects, in the order "auto" tries them -------------------------------------


@register_dialect
class OpenAIDialect(Dialect):
    """OpenAI's ``json_schema`` (vLLM, OpenAI, most servers): tried first."""

    name = "openai"

    def response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}

    def schema_of(self, fmt: Any) -> dict[str, Any] | None:
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
            return fmt["json_schema"].get("schema")
        return None

    def refuses(self, exc: Exception) -> bool:
        # OpenAI's API answers a response_format it does not know with HTTP 400 naming the
        # parameter, e.g. "Unknown parameter: 'response_format.schema'" for llama.cpp's form.
        return isinstance(exc, openai.APIStatusError) and exc.status_code == 400 and "response_format." in error_text(exc)


@register_dialect
class LlamaCppDialect(Dialect):
    """llama-cpp-python's ``json_object`` + ``schema`` (its server rejects ``json_schema``)."""

    name = "llama-cpp"

    def response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {"type": "json_object", "schema": schema}

    def schema_of(self, fmt: Any) -> dict[str, Any] | None:
        # A json_object without a schema is plain JSON mode, not a schema request.
        if isinstance(fmt, dict) and fmt.get("type") == "json_object" and isinstance(fmt.get("schema"), dict):
            return fmt["schema"]
        return None

    def refuses(self, exc: Exception) -> bool:
        # llama-cpp-python answers json_schema with HTTP 500 and a validation error on
        # response_format.type. Any refusal as invalid that names the format counts (4xx too); one
        # that does not (e.g. a prompt too long) is not a dialect question.
        return rejected_request(exc) and any(w in error_text(exc) for w in ("response_format", "json_schema", "json_object", "schema"))
