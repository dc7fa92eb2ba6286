"""Endpoint configuration and the LLM client, against a local OpenAI-compatible fake server."""

import json

import dspy
import openai
import pytest

from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import EndpointLM, ResponseCache, connect
from kgopt.errors import ConfigError
from kgopt.testing.fake_endpoint import FakeEndpoint, chat_completion, chat_response


def test_precedence_flags_env_toml(tmp_path, monkeypatch):
    toml = tmp_path / "kgopt.toml"
    toml.write_text('[endpoint]\napi_base = "http://file:1/v1"\nmodel = "filemodel"\ntimeout = 7\n', encoding="utf-8")
    cfg = resolve_endpoint(config_path=toml)
    assert (cfg.api_base, cfg.model, cfg.api_key, cfg.timeout) == ("http://file:1/v1", "filemodel", "EMPTY", 7.0)
    monkeypatch.setenv("KGOPT_API_BASE", "http://env:2/v1")
    monkeypatch.setenv("KGOPT_MODEL", "novel")
    cfg = resolve_endpoint(config_path=toml)
    assert (cfg.api_base, cfg.model) == ("http://env:2/v1", "novel")
    cfg = resolve_endpoint(api_base="http://flag:3/v1", config_path=toml)
    assert cfg.api_base == "http://flag:3/v1" and not cfg.embedded


def test_no_configuration_means_embedded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_endpoint().embedded


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"api_base": "localhost:8192"}, "http"),
        ({"api_base": "http://h:1/v1"}, "model"),
        ({"api_base": "http://h:1/v1", "model": "m", "timeout": -1}, "timeout"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        resolve_endpoint(**kwargs)


def test_bad_toml_names_the_file(tmp_path):
    p = tmp_path / "kgopt.toml"
    p.write_text("[endpoint]\nmodle = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"kgopt.toml: unknown key"):
        resolve_endpoint(config_path=p)


def test_sends_max_tokens_and_parses(tmp_path):
    with FakeEndpoint(respond=lambda req: (200, chat_response('{"person": []}'))) as srv:
        lm = EndpointLM(srv.url, "novel", api_key="sk-secret", max_tokens=77, cache=None)
        out = lm(messages=[{"role": "user", "content": "hi"}])
        assert out == ['{"person": []}']
        req = srv.requests[0]
        assert req["max_tokens"] == 77 and "max_completion_tokens" not in req
        assert req["model"] == "novel" and req["temperature"] == 0.0
        assert srv.headers[0]["Authorization"] == "Bearer sk-secret"
        assert lm.usage.snapshot()["calls"] == 1 and lm.usage.snapshot()["total_tokens"] == 15
        assert "sk-secret" not in json.dumps(lm.dump_state())


def test_retries_429_and_5xx_then_succeeds():
    answers = [(429, {"error": "slow down"}), (500, {"error": "boom"}), (503, "bad gateway"), (200, chat_response("{}"))]
    with FakeEndpoint(respond=lambda req: answers.pop(0)) as srv:
        lm = EndpointLM(srv.url, "m", cache=None, backoff=0.01, max_retries=4)
        assert lm(messages=[{"role": "user", "content": "x"}]) == ["{}"]
        assert lm.usage.snapshot()["retries"] == 3 and len(srv.requests) == 4


def test_gives_up_after_max_retries_and_counts_failure():
    with FakeEndpoint(respond=lambda req: (500, {"error": "down"})) as srv:
        lm = EndpointLM(srv.url, "m", cache=None, backoff=0.01, max_retries=2)
        with pytest.raises(openai.InternalServerError):
            lm(messages=[{"role": "user", "content": "x"}])
        assert len(srv.requests) == 3 and lm.usage.snapshot()["failures"] == 1


def test_400_is_not_retried():
    with FakeEndpoint(respond=lambda req: (400, {"error": "bad request"})) as srv:
        lm = EndpointLM(srv.url, "m", cache=None, backoff=0.01)
        with pytest.raises(openai.BadRequestError):
            lm(messages=[{"role": "user", "content": "x"}])
        assert len(srv.requests) == 1


def test_cache_is_per_endpoint(tmp_path):
    cache = ResponseCache(tmp_path / "r.sqlite")
    with FakeEndpoint(respond=lambda req: (200, chat_response("A"))) as a, FakeEndpoint(respond=lambda req: (200, chat_response("B"))) as b:
        msgs = [{"role": "user", "content": "same question"}]
        lm_a = EndpointLM(a.url, "same-model", cache=cache)
        lm_b = EndpointLM(b.url, "same-model", cache=cache)
        assert lm_a(messages=msgs) == ["A"]
        assert lm_b(messages=msgs) == ["B"]  # same model name, other endpoint: not A's answer
        assert lm_a(messages=msgs) == ["A"] and len(a.requests) == 1  # answered from the cache
        assert lm_a.usage.snapshot()["cache_hits"] == 1
    # a new process (new LM object) reads the same JSON cache
    assert EndpointLM(a.url, "same-model", cache=ResponseCache(tmp_path / "r.sqlite"))(messages=msgs) == ["A"]


def test_a_cached_answer_spends_nothing_but_keeps_its_prompt_tokens(tmp_path):
    """Cost measures (--objective pareto) need a replayed answer's prompt size; spending needs it free."""
    with FakeEndpoint(respond=lambda req: (200, chat_completion("A", prompt_tokens=137, completion_tokens=5))) as srv:
        lm = EndpointLM(srv.url, "m", cache=ResponseCache(tmp_path / "r.sqlite"))
        msgs = [{"role": "user", "content": "q"}]
        lm(messages=msgs)
        lm(messages=msgs)
        u = lm.usage.snapshot()
        assert len(srv.requests) == 1 and u["cache_hits"] == 1
        assert u["prompt_tokens"] == 137 and u["cached_prompt_tokens"] == 137


def test_server_timings_are_summed_from_answers_but_not_from_the_cache_or_a_malformed_block(tmp_path):
    """llama-server's per-answer timings (bench_inference's server figures); others send none."""
    blocks = iter([
        {"cache_n": 30, "prompt_n": 70, "prompt_ms": 500.0, "predicted_n": 9, "predicted_ms": 200.0},
        {"cache_n": "lots", "prompt_n": 1, "prompt_ms": 1.0, "predicted_n": 1, "predicted_ms": 1.0},  # malformed: skipped
        {"prompt_n": 10, "prompt_ms": 100.0, "predicted_n": 1, "predicted_ms": 20.0},  # no cache_n: none reused
        None,  # a server that sends no timings
    ])

    def respond(req):
        body, t = chat_completion("A"), next(blocks)
        return 200, ({**body, "timings": t} if t is not None else body)

    with FakeEndpoint(respond=respond) as srv:
        lm = EndpointLM(srv.url, "m", cache=ResponseCache(tmp_path / "r.sqlite"))
        for q in ("a", "b", "c", "d", "a"):  # the last is replayed from the cache: no server work now
            lm(messages=[{"role": "user", "content": q}])
        assert len(srv.requests) == 4
    t = lm.server_timings.snapshot()
    assert t == {"calls": 2, "cached_tokens": 30, "prompt_eval_tokens": 80, "prompt_eval_ms": 600.0, "gen_tokens": 10, "gen_ms": 220.0}


def test_connect_uses_configured_endpoint(monkeypatch):
    with FakeEndpoint(respond=lambda req: (200, chat_response("{}"))) as srv:
        monkeypatch.setenv("KGOPT_API_BASE", srv.url)
        monkeypatch.setenv("KGOPT_MODEL", "novel")
        conn = connect(resolve_endpoint(), cache=False)
        assert not conn.embedded and conn.model == "novel"
        with dspy.context(lm=conn.lm):
            assert conn.lm("hello") == ["{}"]


# --- JSON dialect: found by the client, never configured --------------------------------------

SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}


def _llama_cpp_like(req):
    """llama-cpp-python's server: json_schema is refused with a 500 validation error."""
    fmt = req.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return 500, {"error": {"message": "1 validation error for CreateChatCompletionRequest response_format.type: Input should be 'text' or 'json_object'"}}
    return 200, chat_response('{"ok": true}')


def test_auto_dialect_switches_once_after_a_rejected_schema_and_remembers_it():
    from kgopt.clients import lm as lm_module

    with FakeEndpoint(respond=_llama_cpp_like) as srv:
        lm_module._learned_dialects.pop(srv.url, None)
        lm = EndpointLM(srv.url, "m", max_retries=4, backoff=0.01)
        assert lm.json_dialect == "auto" and lm.dialect == "openai"
        assert lm(messages=[{"role": "user", "content": "a"}], response_format=SCHEMA_FORMAT) == ['{"ok": true}']
        # one refused request (not retried four times), then the same request in llama.cpp's dialect
        assert [r["response_format"]["type"] for r in srv.requests] == ["json_schema", "json_object"]
        assert srv.requests[1]["response_format"]["schema"] == {"type": "object"}
        assert lm.dialect == "llama-cpp" and lm.usage.snapshot()["retries"] == 0
        # a new client of the same endpoint speaks its dialect from the first request
        EndpointLM(srv.url, "m")(messages=[{"role": "user", "content": "b"}], response_format=SCHEMA_FORMAT)
        assert srv.requests[2]["response_format"]["type"] == "json_object" and len(srv.requests) == 3


def test_a_schema_request_refused_for_another_reason_is_not_a_dialect_question():
    from kgopt.clients import lm as lm_module

    too_long = {"error": {"message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens."}}
    with FakeEndpoint(respond=lambda req: (400, too_long)) as srv:
        lm_module._learned_dialects.pop(srv.url, None)
        lm = EndpointLM(srv.url, "m", cache=None, max_retries=4, backoff=0.01)
        with pytest.raises(openai.BadRequestError):
            lm(messages=[{"role": "user", "content": "a"}], response_format=SCHEMA_FORMAT)
        assert len(srv.requests) == 1 and lm.dialect == "openai" and srv.url not in lm_module._learned_dialects


def test_every_dialect_refused_tries_each_once_then_fails():
    from kgopt.clients import lm as lm_module
    from kgopt.clients.dialects import dialect_names

    refusal = (500, {"error": {"message": "1 validation error for CreateChatCompletionRequest response_format: Extra inputs are not permitted"}})
    with FakeEndpoint(respond=lambda req: refusal) as srv:
        lm_module._learned_dialects.pop(srv.url, None)
        lm = EndpointLM(srv.url, "m", cache=None, max_retries=4, backoff=0.01)
        with pytest.raises(openai.InternalServerError):
            lm(messages=[{"role": "user", "content": "a"}], response_format=SCHEMA_FORMAT)
        assert [r["response_format"]["type"] for r in srv.requests] == ["json_schema", "json_object"]
        assert len(dialect_names()) == 2 and lm.dialect == "llama-cpp"
        assert lm.usage.snapshot()["retries"] == 0 and lm.usage.snapshot()["failures"] == 1


def test_a_request_refused_after_another_moved_the_endpoint_on_is_sent_again_without_skipping_a_dialect():
    """Concurrent requests are refused at once: only the first moves the endpoint on; the others
    are sent again in its new dialect, so no dialect is skipped."""
    from kgopt.clients import lm as lm_module

    with FakeEndpoint(respond=_llama_cpp_like) as srv:
        lm_module._learned_dialects.pop(srv.url, None)
        lm = EndpointLM(srv.url, "m", cache=None)
        with pytest.raises(openai.InternalServerError) as refused:
            EndpointLM(srv.url, "m", cache=None, json_dialect="openai")(messages=[{"role": "user", "content": "a"}], response_format=SCHEMA_FORMAT)
        req = {"messages": [], "response_format": SCHEMA_FORMAT}
        assert lm._learn_dialect(req, "openai", refused.value) and lm.dialect == "llama-cpp"  # the first refusal
        assert lm._learn_dialect(req, "openai", refused.value) and lm.dialect == "llama-cpp"  # a second, sent before
        assert lm_module._learned_dialects[srv.url] == ["openai", "llama-cpp"]
        assert not lm._learn_dialect(req, "llama-cpp", refused.value)  # the last dialect refused too: that stands


def test_a_configured_dialect_is_sent_from_the_first_request_and_never_changed():
    with FakeEndpoint(respond=_llama_cpp_like) as srv:
        lm = EndpointLM(srv.url, "m", cache=None, json_dialect="llama-cpp")
        assert lm(messages=[{"role": "user", "content": "a"}], response_format=SCHEMA_FORMAT) == ['{"ok": true}']
        assert srv.requests[0]["response_format"] == {"type": "json_object", "schema": {"type": "object"}}
    with FakeEndpoint(respond=_llama_cpp_like) as srv:
        lm = EndpointLM(srv.url, "m", cache=None, json_dialect="openai", max_retries=4, backoff=0.01)
        with pytest.raises(openai.InternalServerError):
            lm(messages=[{"role": "user", "content": "a"}], response_format=SCHEMA_FORMAT)
        assert len(srv.requests) == 1 and lm.dialect == "openai"


def test_json_dialect_must_be_auto_or_registered(monkeypatch):
    with pytest.raises(ValueError, match="'auto' or one of openai, llama-cpp"):
        EndpointLM("http://127.0.0.1:1/v1", "m", json_dialect="vllm")
    monkeypatch.setenv("KGOPT_JSON_DIALECT", "vllm")
    with pytest.raises(ConfigError, match="auto, openai, llama-cpp"):
        resolve_endpoint(api_base="http://h:1/v1", model="m")
    monkeypatch.setenv("KGOPT_JSON_DIALECT", "llama-cpp")
    assert resolve_endpoint(api_base="http://h:1/v1", model="m").json_dialect == "llama-cpp"


def test_openai_dialect_server_keeps_json_schema():
    from kgopt.testing.fake_endpoint import FakeEndpoint

    with FakeEndpoint() as srv:
        seen = []
        lm = EndpointLM(srv.url, "fake")
        original = lm._client.post

        def spy(path, body, cast_to):
            seen.append(body)
            return original(path, body=body, cast_to=cast_to)

        lm._client.post = spy
        lm(messages=[{"role": "user", "content": "{}"}], response_format=SCHEMA_FORMAT)
        assert seen[0]["response_format"] == SCHEMA_FORMAT and lm.dialect == "openai"


def test_a_rejected_request_is_not_retried_but_a_server_fault_is():
    calls = {"n": 0}

    def bad_request(req):
        calls["n"] += 1
        return 400, {"error": {"message": "max_tokens is too large"}}

    with FakeEndpoint(respond=bad_request) as srv:
        with pytest.raises(openai.BadRequestError):
            EndpointLM(srv.url, "m", max_retries=4, backoff=0.01)(messages=[{"role": "user", "content": "x"}])
    assert calls["n"] == 1
    with FakeEndpoint(respond=lambda req: (500, {"error": {"message": "CUDA out of memory"}})) as srv:
        with pytest.raises(openai.InternalServerError):
            EndpointLM(srv.url, "m", max_retries=2, backoff=0.01)(messages=[{"role": "user", "content": "x"}])
        assert len(srv.requests) == 3  # a plain 500 is a fault worth retrying


def test_usage_track_counts_only_its_block_and_freezes_at_the_end():
    from kgopt.clients.lm import Usage

    usage = Usage()
    usage.add(calls=5, prompt_tokens=100)
    with usage.track() as span:
        usage.add(calls=2, prompt_tokens=10, completion_tokens=5)
        assert span.counts()["calls"] == 2  # live, for progress bars
    usage.add(calls=7)
    assert span.counts() == {"calls": 2, "cache_hits": 0, "failures": 0, "retries": 0, "prompt_tokens": 10, "completion_tokens": 5, "cached_prompt_tokens": 0, "total_tokens": 15}
    try:
        with usage.track() as failed:
            usage.add(failures=1)
            raise RuntimeError("stopped")
    except RuntimeError:
        pass
    assert failed.counts()["failures"] == 1


def test_as_connection_takes_a_connection_a_factory_or_nothing(monkeypatch):
    import kgopt.clients.lm as lm_module

    made = []
    conn = lm_module.Connection(lm=None, config=None, identity="x", embedded=False)
    assert lm_module.as_connection(conn) is conn
    assert lm_module.as_connection(lambda: made.append(1) or conn) is conn and made == [1]
    monkeypatch.setattr(lm_module, "default_connection", lambda: conn)
    assert lm_module.as_connection(None) is conn


def test_the_call_budget_holds_across_copies_of_the_lm():
    """DSPy optimisers call ``lm.copy(...)`` (a shallow copy) for their proposal models: a copy
    spends the same budget, so no optimiser calls past --max-calls."""
    from kgopt.errors import BudgetExceeded

    with FakeEndpoint(respond=lambda req: (200, chat_response("ok"))) as server:
        lm = EndpointLM(server.url, "fake", cache=None, backoff=0.01, max_calls=3)
        proposer = lm.copy(temperature=1.0, rollout_id=1)
        lm("a")
        proposer("b")
        assert lm.requests_sent == proposer.requests_sent == 2 and lm.calls_left == proposer.calls_left == 1
        proposer("c")
        with pytest.raises(BudgetExceeded):
            lm("d")
        with pytest.raises(BudgetExceeded):
            proposer("e")
        assert len(server.requests) == 3 and lm.usage.calls == 3 and lm.calls_left == 0
        lm.max_calls = None  # lifting the cap lifts it for the copies too
        proposer("f")
        assert lm.requests_sent == 4 and proposer.calls_left is None
