"""A deterministic OpenAI-compatible endpoint and a fault-injecting proxy, for tests and benchmarks.

Like DSPy's ``DummyLM``, these are tools for checking kgopt's plumbing, not models:

- ``FakeEndpoint``: answers every OneKE instruction with a fixed function of its input
  (spans cut from the input text, so they are found in it), after an optional fixed
  delay. HTTP/1.1 keep-alive, one thread per connection: it does not limit concurrency.
- ``FaultProxy``: sits in front of an endpoint and makes a set share of requests fail
  their first attempts with a 500, a 429, a stall longer than the client's timeout, a
  dropped connection or a garbage 200 body. Which requests fail, and how, is a function
  of the request body, so two runs see the same faults.

Both bind 127.0.0.1. ``python -m kgopt.testing.fake_endpoint --delay 0.5`` serves one in
its own process (the extraction benchmark does this, so the server's threads do not share
the client's interpreter).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

_SEGMENT = re.compile(r"[^\s,.;:!?，。；：！？、（）()《》“”\"']+")


def _segments(text: str) -> list[str]:
    return [m.group(0)[:6] for m in _SEGMENT.finditer(text)] or [text[:6]]


def asked(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The OneKE instruction a prompt asks, ``{"instruction", "schema", "input"}``, in any
    registered layout (compact: the instruction and schema head the system turn). Raises
    ValueError/KeyError/TypeError when the last turn is no OneKE instruction."""
    ins = json.loads(messages[-1]["content"])
    if isinstance(ins, dict) and "instruction" not in ins and messages[0]["role"] == "system":
        ins = {**json.loads(messages[0]["content"].splitlines()[-1]), **ins}
    return ins


def oneke_answer(request: dict[str, Any]) -> str:
    """A deterministic OneKE answer to the request's last user turn (in any registered layout):
    one item per label among the first two of the schema chunk, spans taken from the input text."""
    try:
        ins = asked(request["messages"])
        text, schema = ins["input"], ins["schema"]
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return "{}"
    segs = _segments(text)

    def seg(i: int) -> str:
        return segs[i % len(segs)]

    out: dict[str, Any] = {}
    if schema and isinstance(schema[0], dict) and "attributes" in schema[0]:  # KG, OneKE's format
        attrs = {a: seg(i + 1) for i, a in enumerate(schema[0]["attributes"][:2])}
        return json.dumps({schema[0]["entity_type"]: {seg(0): attrs}}, ensure_ascii=False)
    if schema and isinstance(schema[0], dict) and "relations" in schema[0]:  # KG, typed triples
        for i, rel in enumerate(schema[0]["relations"][:2]):
            out[rel] = [{"head": seg(i), "head_type": schema[0]["topic"], "tail": seg(i + 1), "tail_type": "thing"}]
        return json.dumps(out, ensure_ascii=False)
    for i, item in enumerate(schema[:2]):
        if isinstance(item, dict):  # an event type
            roles = item.get("arguments") or []
            out[item["event_type"]] = [{"trigger": seg(i), "arguments": {r: seg(i + 1) for r in roles[:1]}}]
        elif "relation" in ins["instruction"] or "关系" in ins["instruction"]:
            out[item] = [{"subject": seg(i), "object": seg(i + 2)}]
        else:
            out[item] = [seg(i)]
    return json.dumps(out, ensure_ascii=False)


def chat_completion(content: str, model: str = "fake", prompt_tokens: int = 100, completion_tokens: int = 20) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }


def chat_response(content: str, model: str = "fake") -> dict[str, Any]:
    """A chat completion with small fixed token counts (tests add them up)."""
    return chat_completion(content, model, prompt_tokens=10, completion_tokens=5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class _Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, *a):
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_GET(self):  # /v1/models, which some clients ask first
        self._send(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode())


class _Serving:
    httpd: _Server

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


class FakeEndpoint(_Serving):
    """``/v1/chat/completions`` answering ``answer(request)`` after ``delay`` seconds.

    ``respond(request) -> (status, body)`` (a dict or text) takes full control of the reply
    instead, for tests of errors and dialects. Every request body and its headers are kept
    in ``requests`` and ``headers``, in arrival order.
    """

    def __init__(
        self,
        delay: float = 0.0,
        answer: Callable[[dict], str] = oneke_answer,
        port: int = 0,
        respond: Callable[[dict], tuple[int, Any]] | None = None,
    ):
        self.delay = delay
        self.answer = answer
        self.respond = respond
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        outer = self

        class H(_Base):
            def do_POST(self):
                req = json.loads(self._body())
                with outer._lock:
                    outer.requests.append(req)
                    outer.headers.append(dict(self.headers))
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.respond is None:
                    self._send(200, json.dumps(chat_completion(outer.answer(req), req.get("model", "fake"))).encode())
                    return
                status, body = outer.respond(req)
                self._send(status, body.encode() if isinstance(body, str) else json.dumps(body).encode())

        self.httpd = _Server(("127.0.0.1", port), H)


FAULTS = ("500", "429", "stall", "drop", "garbage")


class FaultProxy(_Serving):
    """Forwards to ``upstream``; a ``share`` of distinct requests fail their first ``attempts`` tries.

    ``always`` makes the chosen requests fail every time (for the "still fails" path).
    ``stall`` seconds must exceed the client's timeout. ``injected`` counts faults by kind.
    """

    def __init__(self, upstream: str, share: float = 0.3, attempts: int = 2, faults=FAULTS, stall: float = 3.0, always: bool = False):
        self.upstream = urlsplit(upstream)
        self.share, self.attempts, self.faults, self.stall, self.always = share, attempts, tuple(faults), stall, always
        self.injected: dict[str, int] = {f: 0 for f in self.faults}
        self.forwarded = 0
        self._tries: dict[str, int] = {}
        self._lock = threading.Lock()
        outer = self

        class H(_Base):
            def do_POST(self):
                body = self._body()
                fault = outer._fault_for(body)
                if fault == "500":
                    return self._send(500, b'{"error": {"message": "injected server error"}}')
                if fault == "429":
                    return self._send(429, b'{"error": {"message": "injected rate limit"}}', {"Retry-After": "0"})
                if fault == "garbage":
                    return self._send(200, b"<html>upstream hiccup</html>")
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)  # no response at all: a reset connection
                    return
                if fault == "stall":
                    time.sleep(outer.stall)
                    self.close_connection = True
                    return
                self._send(*outer._forward(self.path, body))

        self.httpd = _Server(("127.0.0.1", 0), H)

    def _fault_for(self, body: bytes) -> str | None:
        h = hashlib.sha256(body).digest()
        if h[0] / 256 >= self.share:
            return None
        key = h.hex()
        with self._lock:
            n = self._tries.get(key, 0)
            self._tries[key] = n + 1
            if not self.always and n >= self.attempts:
                return None
            fault = self.faults[(h[1] + n) % len(self.faults)]
            self.injected[fault] += 1
        return fault

    def _forward(self, path: str, body: bytes) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        with self._lock:
            self.forwarded += 1
        return resp.status, data


def fake_connection(url: str, *, model: str = "fake", timeout: float = 30.0, retries: int = 4, backoff: float = 0.01,
                    cache_dir=None, max_calls: int | None = None):
    """A ``Connection`` to a test endpoint (a ``FakeEndpoint`` or ``FaultProxy``): the identity
    ``connect`` gives it, retries with a short backoff, and no response cache unless ``cache_dir``."""
    from pathlib import Path

    from kgopt.clients.config import EndpointConfig
    from kgopt.clients.lm import Connection, EndpointLM, ResponseCache

    config = EndpointConfig(api_base=url, model=model, timeout=timeout, max_retries=retries)
    cache = ResponseCache(Path(cache_dir) / "responses.sqlite") if cache_dir else None
    lm = EndpointLM(url, model, timeout=timeout, max_retries=retries, backoff=backoff, cache=cache, max_calls=max_calls)
    return Connection(lm=lm, config=config, identity=config.identity(), embedded=False)


def main() -> None:  # pragma: no cover - used by scripts/bench_extract.py in a subprocess
    import argparse
    import signal

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay", type=float, default=0.5, help="seconds before each answer")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    server = FakeEndpoint(args.delay, port=args.port).start()
    print(server.url, flush=True)
    signal.signal(signal.SIGTERM, lambda *a: (server.close(), exit(0)))
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":  # pragma: no cover
    main()
