"""The contract every registered JSON dialect keeps, and a third dialect added by one class."""

import json

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion

from kgopt.clients import dialects
from kgopt.clients import lm as lm_module
from kgopt.clients.config import resolve_endpoint
from kgopt.clients.dialects import Dialect, dialect_names, error_text, get_dialect, register_dialect, response_format
from kgopt.clients.lm import BadResponse, EndpointLM
from kgopt.core.answer_schema import answer_json_schema
from kgopt.core.tasks import TASKS
from kgopt.testing.fake_endpoint import FakeEndpoint, chat_response

SCHEMAS = [
    {"type": "object"},
    answer_json_schema(TASKS["NER"], ["person", "location"], max_items=2, max_len=8),
    answer_json_schema(TASKS["NER"], ["人物", "地点"]),
]
BUILT_IN = dialect_names()  # collected before any test registers another


@pytest.fixture(scope="module")
def api_error():
    """``api_error(status, body)``: the exception the openai client raises for that reply of a server."""
    with FakeEndpoint(respond=lambda req: tuple(json.loads(req["messages"][0]["content"]))) as srv:
        client = openai.OpenAI(base_url=srv.url, api_key="EMPTY", max_retries=0)

        def make(status: int, body) -> openai.APIStatusError:
            ask = {"model": "m", "messages": [{"role": "user", "content": json.dumps([status, body])}]}
            with pytest.raises(openai.APIStatusError) as info:
                client.post("/chat/completions", body=ask, cast_to=ChatCompletion)
            return info.value

        yield make


# What unrelated failures look like: a prompt too long, a server fault, a rate limit, a proxy's page.
UNRELATED = [
    (400, {"error": {"message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens. Please reduce the length of the messages.", "type": "BadRequestError"}}),
    (400, {"error": {"message": "max_tokens is too large"}}),
    (500, {"error": {"message": "CUDA out of memory"}}),
    (429, {"error": {"message": "rate limit reached"}}),
    (503, "bad gateway"),
]
# Each built-in server's refusal of another dialect's schema form.
KNOWN_REFUSALS = {
    "openai": (400, {"error": {"message": "Unknown parameter: 'response_format.schema'.", "type": "invalid_request_error", "param": "response_format.schema", "code": "unknown_parameter"}}),
    "llama-cpp": (500, {"error": {"message": "1 validation error for CreateChatCompletionRequest response_format.type: Input should be 'text' or 'json_object'"}}),
}


def check_contract(d: Dialect, api_error) -> None:
    """What "auto" and every caller rely on, for any dialect."""
    assert get_dialect(d.name) is d and d.name != "auto"
    for s in SCHEMAS:
        fmt = d.response_format(s)
        assert d.schema_of(fmt) == s and dialects.schema_of(fmt) == s  # round trip
        for other in dialect_names():
            if other != d.name:  # no dialect claims another's form
                assert d.schema_of(get_dialect(other).response_format(s)) is None
                assert get_dialect(other).schema_of(fmt) is None
    for not_a_schema in (None, "json", {}, {"type": "text"}, {"type": "json_object"}):
        assert d.schema_of(not_a_schema) is None
    for status, body in UNRELATED:
        assert not d.refuses(api_error(status, body)), (d.name, status, body)
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    for exc in (openai.APIConnectionError(request=request), openai.APITimeoutError(request), BadResponse("no choices"), ValueError("x")):
        assert not d.refuses(exc)


@pytest.mark.parametrize("name", BUILT_IN)
def test_contract(name, api_error):
    check_contract(get_dialect(name), api_error)


@pytest.mark.parametrize("name", BUILT_IN)
def test_refuses_recognises_its_servers_refusal(name, api_error):
    assert get_dialect(name).refuses(api_error(*KNOWN_REFUSALS[name]))


def test_built_in_forms_are_unchanged_on_the_wire():
    s = SCHEMAS[1]
    assert BUILT_IN == ("openai", "llama-cpp")  # "auto" tries them in this order
    assert json.dumps(response_format(s)) == json.dumps({"type": "json_schema", "json_schema": {"name": "answer", "schema": s}})
    assert json.dumps(get_dialect("openai").response_format(s)) == json.dumps(response_format(s))
    assert json.dumps(get_dialect("llama-cpp").response_format(s)) == json.dumps({"type": "json_object", "schema": s})


def test_unknown_dialect_names_the_choices():
    with pytest.raises(ValueError, match="openai, llama-cpp"):
        get_dialect("vllm")
    with pytest.raises(ValueError, match="taken"):

        @register_dialect
        class Again(Dialect):
            name = "openai"


# --- a third dialect: one class and its registration ---------------------------------------------

GUIDED_REFUSAL = (422, {"error": {"message": "unsupported constraint; use guided_json"}})


@pytest.fixture
def guided(monkeypatch):
    """A test-only dialect, registered for one test; the registry and what "auto" learned are restored after."""
    monkeypatch.setattr(dialects, "_DIALECTS", dict(dialects._DIALECTS))
    monkeypatch.setattr(lm_module, "_learned_dialects", {})

    @register_dialect
    class GuidedDialect(Dialect):
        name = "guided"

        def response_format(self, schema):
            return {"type": "guided_json", "guided_json": schema}

        def schema_of(self, fmt):
            if isinstance(fmt, dict) and fmt.get("type") == "guided_json" and isinstance(fmt.get("guided_json"), dict):
                return fmt["guided_json"]
            return None

        def refuses(self, exc):
            return isinstance(exc, openai.APIStatusError) and exc.status_code == 422 and "use guided_json" in error_text(exc)

    yield get_dialect("guided")


def _serving_only(d: Dialect):
    """A server that takes a schema only in ``d``'s form and refuses any other form as ``guided`` does."""

    def respond(req):
        fmt = req.get("response_format")
        if fmt is not None and d.schema_of(fmt) is None:
            return GUIDED_REFUSAL
        return 200, chat_response('{"ok": true}')

    return respond


def test_a_third_dialect_keeps_the_contract(guided, api_error):
    assert dialect_names() == (*BUILT_IN, "guided")
    check_contract(guided, api_error)
    assert guided.refuses(api_error(*GUIDED_REFUSAL))
    assert not any(get_dialect(n).refuses(api_error(*GUIDED_REFUSAL)) for n in BUILT_IN)  # only its own class knows it


def test_auto_learns_a_third_dialect_after_both_built_in_forms_are_refused(guided):
    s = SCHEMAS[1]
    with FakeEndpoint(respond=_serving_only(guided)) as srv:
        lm = EndpointLM(srv.url, "m", cache=None, max_retries=4, backoff=0.01)
        assert lm(messages=[{"role": "user", "content": "a"}], response_format=response_format(s)) == ['{"ok": true}']
        assert [r["response_format"] for r in srv.requests] == [response_format(s, n) for n in ("openai", "llama-cpp", "guided")]
        u = lm.usage.snapshot()
        assert lm.dialect == "guided" and u["retries"] == 0 and u["failures"] == 0 and u["calls"] == 1
        # a new client of the same endpoint speaks it from the first request; plain requests are untouched
        other = EndpointLM(srv.url, "m", cache=None)
        other(messages=[{"role": "user", "content": "b"}], response_format=response_format(s))
        other(messages=[{"role": "user", "content": "c"}])
        assert srv.requests[3]["response_format"] == {"type": "guided_json", "guided_json": s}
        assert "response_format" not in srv.requests[4] and len(srv.requests) == 5


def test_a_third_dialect_can_be_configured_by_name(guided, monkeypatch):
    monkeypatch.setenv("KGOPT_JSON_DIALECT", "guided")
    assert resolve_endpoint(api_base="http://h:1/v1", model="m").json_dialect == "guided"
    with FakeEndpoint(respond=_serving_only(guided)) as srv:
        lm = EndpointLM(srv.url, "m", cache=None, json_dialect="guided")
        lm(messages=[{"role": "user", "content": "a"}], response_format=response_format({"type": "object"}))
        assert [r["response_format"]["type"] for r in srv.requests] == ["guided_json"]
