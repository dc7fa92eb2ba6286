"""The LLM client: one DSPy LM over any OpenAI-compatible endpoint.

Why a client of our own rather than ``dspy.LM``: three facts measured with DSPy 3.4.1.
An ``openai/`` model sends ``max_completion_tokens``, which vLLM/llama.cpp servers may
ignore (they then generate until the context is full); DSPy's response cache key ignores
``api_base``, so two endpoints serving the same model name would share answers; and its
disk cache stores pickles, which kgopt never loads. ``EndpointLM`` sends ``max_tokens``
through the official ``openai`` client, retries 429/5xx/timeouts/connection errors with
exponential backoff and jitter, and caches responses as JSON in SQLite keyed by the
endpoint's identity (for the embedded model: the weights' fingerprint, not the port).

An ``api_base`` may carry a password or ``?key=``: the client keeps the real URL inside its HTTP
client only. ``api_base`` and ``identity`` as logged, stored in the cache's identity column,
manifests and provenance are redacted (``kgopt.redaction``); the full URL enters the cache key
only inside its SHA-256, so existing caches keep their keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import dspy
import openai
from loguru import logger
from openai.types.chat import ChatCompletion

from kgopt.clients.config import EndpointConfig
from kgopt.clients.dialects import dialect_names, get_dialect, rejected_request, schema_of
from kgopt.errors import BudgetExceeded, EndpointError
from kgopt.redaction import redact_identity, redact_url

# DSPy 3.4 marks BaseLM.forward subclasses as the legacy plugin path; it is supported
# throughout 3.4, which kgopt pins. The warning says nothing a kgopt user can act on.
warnings.filterwarnings("ignore", message="Implementing custom LMs through BaseLM.forward")

_SENT_PARAMS = ("temperature", "max_tokens", "top_p", "stop", "seed", "n", "response_format", "presence_penalty", "frequency_penalty")


def kgopt_home() -> Path:
    return Path(os.environ.get("KGOPT_HOME", Path.home() / ".cache" / "kgopt"))


class ResponseCache:
    """Chat responses as JSON rows in SQLite (no pickles). Safe across threads."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._set_up()

    def _set_up(self) -> None:
        # Two processes opening a new cache at once (two compile workers): switching to WAL
        # needs the file to itself, and SQLite may refuse it at once instead of waiting.
        for attempt in range(60):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, identity TEXT, response TEXT, created REAL)")
                self._db.commit()
                self._redact_old_rows()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 59:
                    raise
                self._db.rollback()
                time.sleep(0.05 + random.random() * 0.2)

    def _redact_old_rows(self) -> None:
        """Caches written before identities were redacted may hold a password: mask it, once (user_version 1)."""
        with self._lock:
            if self._db.execute("PRAGMA user_version").fetchone()[0] >= 1:
                return
            for (identity,) in self._db.execute("SELECT DISTINCT identity FROM responses").fetchall():
                shown = redact_identity(identity) if isinstance(identity, str) else identity
                if shown != identity:
                    self._db.execute("UPDATE responses SET identity = ? WHERE identity = ?", (shown, identity))
            self._db.execute("PRAGMA user_version = 1")
            self._db.commit()

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except ValueError:
            return None  # a damaged row is a miss, not a crash

    def put(self, key: str, identity: str, response: dict) -> None:
        """Store ``response`` under ``key``; ``identity`` is stored redacted (it is for people to read)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                (key, redact_identity(identity), json.dumps(response, ensure_ascii=False), time.time()),
            )
            self._db.commit()


@dataclass
class Usage:
    """LLM calls and tokens, counted across threads."""

    calls: int = 0  # requests that reached the endpoint and succeeded
    cache_hits: int = 0
    failures: int = 0  # calls that failed after all retries
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # the prompt tokens of answers replayed from the cache (not sent, not spent)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def snapshot(self) -> dict[str, int]:
        names = ("calls", "cache_hits", "failures", "retries", "prompt_tokens", "completion_tokens", "cached_prompt_tokens")
        with self._lock:
            d = {k: getattr(self, k) for k in names}
        d["total_tokens"] = d["prompt_tokens"] + d["completion_tokens"]
        return d

    @contextmanager
    def track(self) -> Iterator["UsageSpan"]:
        """The usage of one block of work: ``with lm.usage.track() as span:``; ``span.counts()``
        while it runs (progress bars), the same frozen when the block ends, even by an error."""
        span = UsageSpan(self)
        try:
            yield span
        finally:
            span.close()


@dataclass
class ServerTimings:
    """What a llama.cpp server says of its own work, summed over the answers that carried it.

    llama.cpp's ``llama-server`` adds ``timings`` to each completion: prompt tokens taken from its
    KV cache (``cache_n``), prompt tokens evaluated and the milliseconds that took, and tokens
    generated and theirs. Other servers send none, and these stay 0. Answers replayed from the
    response cache are not counted (no server did that work now).
    """

    calls: int = 0
    cached_tokens: int = 0
    prompt_eval_tokens: int = 0
    prompt_eval_ms: float = 0.0
    gen_tokens: int = 0
    gen_ms: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, timings: Any) -> None:
        if not isinstance(timings, dict):
            return
        try:  # model output's neighbour, from the wire: a malformed block is skipped, not trusted
            got = (int(timings.get("cache_n") or 0), int(timings["prompt_n"]), float(timings["prompt_ms"]),
                   int(timings["predicted_n"]), float(timings["predicted_ms"]))  # fmt: skip
        except (KeyError, TypeError, ValueError):
            return
        with self._lock:
            self.calls += 1
            self.cached_tokens += got[0]
            self.prompt_eval_tokens += got[1]
            self.prompt_eval_ms += got[2]
            self.gen_tokens += got[3]
            self.gen_ms += got[4]

    def snapshot(self) -> dict[str, Any]:
        names = ("calls", "cached_tokens", "prompt_eval_tokens", "prompt_eval_ms", "gen_tokens", "gen_ms")
        with self._lock:
            return {k: getattr(self, k) for k in names}


class UsageSpan:
    """Counts since a ``Usage.track()`` block began (see there)."""

    def __init__(self, usage: Usage):
        self._usage, self._start, self._final = usage, usage.snapshot(), None

    def counts(self) -> dict[str, int]:
        if self._final is not None:
            return dict(self._final)
        now = self._usage.snapshot()
        return {k: now[k] - self._start[k] for k in now}

    def close(self) -> None:
        self._final = self.counts()


class CallBudget:
    """Requests sent and the cap on them. One object shared by an LM and all its copies: DSPy's
    ``lm.copy()`` is shallow, so a counter held in the LM itself would restart in each copy and
    let an optimiser's proposal model call past the cap."""

    def __init__(self, max_calls: int | None = None):
        self.max_calls = max_calls
        self.sent = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        """Count one request, or raise BudgetExceeded if the cap is reached."""
        with self._lock:
            if self.max_calls is not None and self.sent >= self.max_calls:
                raise BudgetExceeded(f"the call budget of {self.max_calls} LLM requests is spent")
            self.sent += 1

    @property
    def left(self) -> int | None:
        """Requests the cap still allows (None: no cap)."""
        return None if self.max_calls is None else max(0, self.max_calls - self.sent)


class BadResponse(EndpointError):
    """The endpoint answered 200 with a body that is not a chat completion (a proxy's error page, a cut-off body)."""


# What a failed LLM call raises: the openai client's errors, and kgopt's own for a bad body.
# Callers record these on the call; anything else is a bug and propagates. The call budget
# (BudgetExceeded) is not among them, so it still stops a run.
CALL_ERRORS = (openai.APIError, EndpointError)


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, BadResponse):
        return True
    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return not rejected_request(exc) and (exc.status_code >= 500 or exc.status_code in (408, 409, 429))
    return False


def _retry_after(exc: Exception) -> float | None:
    resp = getattr(exc, "response", None)
    try:
        value = resp.headers.get("retry-after") if resp is not None else None
        return min(float(value), 60.0) if value else None
    except (TypeError, ValueError):
        return None


# What "auto" learned per api_base, shared by every client of this process: the dialects tried,
# in order; the last is in use. One lock, as concurrent requests are refused at once.
_learned_dialects: dict[str, list[str]] = {}
_learning = threading.Lock()


class EndpointLM(dspy.BaseLM):
    """A DSPy LM for an OpenAI-compatible chat endpoint, with retries, JSON cache and usage."""

    def __init__(
        self,
        api_base: str,
        model: str,
        api_key: str = "EMPTY",
        identity: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        timeout: float = 120.0,
        max_retries: int = 4,
        cache: ResponseCache | None = None,
        backoff: float = 0.5,
        json_dialect: str = "auto",
        max_calls: int | None = None,
    ):
        super().__init__(model=model, model_type="chat", temperature=temperature, max_tokens=max_tokens, cache=False)
        # api_base and identity are the shown forms (logs, errors, cache rows, dump_state): the
        # real URL lives in self._client only, and the full identity only inside cache keys' hash.
        self.api_base = redact_url(api_base)
        self._key_identity = identity or f"{api_base}|{model}"
        self.identity = redact_identity(self._key_identity)
        self.max_retries = max_retries
        self.backoff = backoff
        self.response_cache = cache
        self.usage = Usage()
        self.server_timings = ServerTimings()
        # How this endpoint takes a JSON schema for constrained decoding (clients.dialects):
        # callers send OpenAI's form; "auto" tries the registered dialects in order, moving on
        # when a schema request is refused as a dialect question, and remembers the endpoint's.
        if json_dialect not in ("auto", *dialect_names()):
            raise ValueError(f"json_dialect must be 'auto' or one of {', '.join(dialect_names())}, got {json_dialect!r}")
        self.json_dialect = json_dialect
        # A hard cap on requests sent (retries included; cache hits are free). None: no cap.
        self._budget = CallBudget(max_calls)
        # openai's own retries are off: ours log, count and honour Retry-After.
        self._client = openai.OpenAI(base_url=api_base, api_key=api_key or "EMPTY", timeout=timeout, max_retries=0)

    def _request(self, messages: list[dict], kwargs: dict[str, Any]) -> dict[str, Any]:
        merged = {**self.kwargs, **kwargs}
        req = {k: merged[k] for k in _SENT_PARAMS if merged.get(k) is not None}
        req["model"] = self.model
        req["messages"] = messages
        return req

    def cache_key(self, req: dict[str, Any]) -> str:
        # The full identity, as before redaction existed: existing caches keep their keys. Only its hash is stored.
        blob = json.dumps({"identity": self._key_identity, "request": req}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def forward(self, prompt=None, messages=None, **kwargs):
        if messages is None:
            messages = [{"role": "user", "content": prompt or ""}]
        use_cache = kwargs.pop("cache", True) and self.response_cache is not None
        for k in ("rollout_id", "num_retries"):
            kwargs.pop(k, None)
        req = self._request(messages, kwargs)
        key = self.cache_key(req) if use_cache else None
        if key:
            hit = self.response_cache.get(key)
            if hit is not None:
                recorded = (hit.get("usage") or {}).get("prompt_tokens") if isinstance(hit, dict) else None
                self.usage.add(cache_hits=1, cached_prompt_tokens=recorded if isinstance(recorded, int) and recorded > 0 else 0)
                resp = ChatCompletion.model_validate(hit)
                resp.usage = None  # a cached answer costs no tokens
                return resp
        resp = self._send(req)
        if key:
            self.response_cache.put(key, self.identity, resp.model_dump(mode="json"))
        return resp

    def _take_call(self) -> None:
        self._budget.take()

    @property
    def max_calls(self) -> int | None:
        return self._budget.max_calls

    @max_calls.setter
    def max_calls(self, value: int | None) -> None:
        self._budget.max_calls = value

    @property
    def requests_sent(self) -> int:
        return self._budget.sent

    @property
    def calls_left(self) -> int | None:
        """Requests the cap still allows, shared with every copy (None: no cap)."""
        return self._budget.left

    @property
    def dialect(self) -> str:
        """The JSON dialect used now: the configured one, or what "auto" learned (else the first registered)."""
        if self.json_dialect != "auto":
            return self.json_dialect
        tried = _learned_dialects.get(self.api_base)
        return tried[-1] if tried else dialect_names()[0]

    def _on_the_wire(self, req: dict[str, Any], dialect: str) -> dict[str, Any]:
        fmt = req.get("response_format")
        schema, d = schema_of(fmt), get_dialect(dialect)
        if schema is None or d.schema_of(fmt) is not None:
            return req  # no schema, or in this dialect's form already: sent as the caller wrote it
        return {**req, "response_format": d.response_format(schema)}

    def _learn_dialect(self, req: dict[str, Any], sent: str, exc: Exception) -> bool:
        """After a schema request sent in dialect ``sent`` is refused in "auto" mode: True to send it
        again, in the next registered dialect not yet tried for this endpoint (each once)."""
        if self.json_dialect != "auto" or schema_of(req.get("response_format")) is None:
            return False
        if not any(get_dialect(n).refuses(exc) for n in dialect_names() if n != sent):
            return False  # refused for another reason (e.g. a prompt too long): not a dialect question
        with _learning:
            tried = _learned_dialects.setdefault(self.api_base, [dialect_names()[0]])
            if tried[-1] != sent:
                return True  # another request moved this endpoint on meanwhile: send this one in its dialect
            untried = [n for n in dialect_names() if n not in tried]
            if not untried:
                return False  # every dialect was refused: this refusal stands
            tried.append(untried[0])
        logger.info("{} refused a JSON schema in the {} dialect (HTTP {}); trying {}", self.api_base, sent, getattr(exc, "status_code", "?"), untried[0])
        return True

    def _send(self, req: dict[str, Any]) -> ChatCompletion:
        attempt = 0
        while True:
            self._take_call()
            dialect = self.dialect
            try:
                try:
                    # post() rather than chat.completions.create(): the request is plain JSON already,
                    # and create()'s parameter transform costs ~3 ms of CPU per call, which caps
                    # throughput at high concurrency (measured in scripts/bench_extract.py).
                    resp = self._client.post("/chat/completions", body=self._on_the_wire(req, dialect), cast_to=ChatCompletion)
                except ValueError as exc:  # the body was not JSON
                    raise BadResponse(f"{self.api_base}: response body is not JSON ({exc})") from None
                if not getattr(resp, "choices", None):
                    raise BadResponse(f"{self.api_base}: response has no choices")
                u = resp.usage
                self.usage.add(
                    calls=1,
                    prompt_tokens=getattr(u, "prompt_tokens", 0) or 0,
                    completion_tokens=getattr(u, "completion_tokens", 0) or 0,
                )
                self.server_timings.add((resp.model_extra or {}).get("timings"))
                return resp
            except Exception as exc:
                if self._learn_dialect(req, dialect, exc):
                    continue
                if not _retryable(exc) or attempt >= self.max_retries:
                    self.usage.add(failures=1)
                    raise
                delay = _retry_after(exc) or min(self.backoff * 2**attempt, 30.0) * (0.5 + random.random())
                attempt += 1
                self.usage.add(retries=1)
                logger.debug("{} on {}; retry {}/{} in {:.1f}s", type(exc).__name__, self.api_base, attempt, self.max_retries, delay)
                time.sleep(delay)

    def __deepcopy__(self, memo):
        # One client shared by every program copy an optimiser makes (its cache, counters and budget too).
        return self

    def dump_state(self) -> dict[str, Any]:
        # Never the key: programs are saved with their LM state in some DSPy paths.
        return {"model": self.model, "api_base": self.api_base, **{k: v for k, v in self.kwargs.items() if k in _SENT_PARAMS}}


@dataclass
class Connection:
    """A ready LM plus what produced it (for manifests and logs)."""

    lm: EndpointLM
    config: EndpointConfig
    identity: str  # redacted: it goes into manifests, provenance and logs
    embedded: bool

    def __post_init__(self) -> None:
        # Whoever built it (scripts, tests, API users), the identity shown is never secret-bearing.
        self.identity = redact_identity(self.identity)

    @property
    def model(self) -> str:
        return self.lm.model


def connect(
    config: EndpointConfig,
    temperature: float = 0.0,
    max_tokens: int = 512,
    cache: bool = True,
    max_calls: int | None = None,
    cache_namespace: str | None = None,
) -> Connection:
    """Build the LM for a config, starting the embedded model if no endpoint is set.

    ``cache_namespace``: answers cached under another namespace are not reused (a benchmark
    gives each method its own, so none gets another's answers for free).

    Call this from the main thread: the embedded server is tied to the thread that starts it.
    """
    if config.embedded:
        from kgopt.clients.embedded import model_fingerprint, shared_embedded_server

        server = shared_embedded_server()
        api_base, model = server.api_base, server.model.served_name
        api_key = server.api_key  # its own random key, not KGOPT_API_KEY (meant for a remote endpoint)
        # The program is part of the identity: two server programs need not answer alike.
        identity = key_identity = f"{server.program.identity}|{model_fingerprint(server.model)}"
        dialect = server.program.dialect
    else:
        dialect = config.json_dialect
        api_base, model, api_key = config.api_base, config.model, config.api_key
        identity = config.identity()  # redacted
        key_identity = f"{api_base}|{model}"  # hashed into cache keys only, as before
        logger.info("using endpoint {} model {}", redact_url(api_base), model)
        logger.debug("endpoint settings: {}", config.redacted())
    rcache = ResponseCache(kgopt_home() / "responses.sqlite") if cache else None
    lm = EndpointLM(
        api_base=api_base,
        model=model,
        api_key=api_key,
        identity=f"{key_identity}|cache:{cache_namespace}" if cache_namespace else key_identity,
        temperature=temperature,
        max_tokens=max_tokens,
        timeout=config.timeout,
        max_retries=config.max_retries,
        cache=rcache,
        json_dialect=dialect,
        max_calls=max_calls,
    )
    return Connection(lm=lm, config=config, identity=identity, embedded=config.embedded)


def default_connection(**kwargs) -> Connection:
    """The configured endpoint (flags aside: env > kgopt.toml > embedded), connected."""
    from kgopt.clients.config import resolve_endpoint

    return connect(resolve_endpoint(), **kwargs)


def as_connection(connection: "Connection | Callable[[], Connection] | None") -> Connection:
    """What every API function accepts as ``connection``: a Connection, a function returning one
    (called only now, e.g. after the input was checked), or None for the configured endpoint."""
    if connection is None:
        return default_connection()
    if callable(connection) and not isinstance(connection, Connection):
        return connection()
    return connection


def complete_text(lm: Any, messages: list[dict], **kwargs: Any) -> str:
    """One chat completion's text through a DSPy LM (outputs may be strings or dicts)."""
    out = lm(messages=messages, **kwargs)
    first = out[0] if out else ""
    return (first.get("text") or "") if isinstance(first, dict) else (first or "")
