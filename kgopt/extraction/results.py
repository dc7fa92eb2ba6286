"""The append-only results log of an extraction job (``OUT/results.jsonl``).

One JSON line per finished unit (one LLM call), written with a single ``write`` and
flushed as it arrives, so a killed process loses at most the calls in flight. On open,
a torn last line (the process died mid-write) is cut off; any other damaged line is an
error naming the file and line, because it means someone else wrote to the file.
The last line for a key wins: a failed unit retried on a later run is superseded.
A lock file keeps two processes from writing one job at once.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import ujson
from loguru import logger

from kgopt.data.jsonio import dumps
from kgopt.errors import ConfigError, DataError

FAILED = "failed"  # the call failed after retries; retried on the next run


class ResultLog:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.path.with_name(self.path.name + ".lock"), "w")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_fh.close()
            raise ConfigError(f"{self.path.parent}: another kgopt extract is writing this output directory") from None
        self.rows: dict[str, dict[str, Any]] = {}
        self.repaired = False
        self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _load(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            # A write cut short by a kill: drop the partial line, keep everything before it.
            logger.warning("{}: dropping a partial last line ({} bytes) left by an interrupted run", self.path, len(data) - end)
            os.truncate(self.path, end)
            self.repaired = True
        for lineno, raw in enumerate(data[:end].split(b"\n")[:-1], 1):
            if not raw.strip():
                continue
            try:
                row = ujson.loads(raw)
            except ValueError:
                raise DataError("damaged results line (not JSON); remove it or use a new --out", str(self.path), lineno) from None
            if not isinstance(row, dict) or "key" not in row or "status" not in row:
                raise DataError("damaged results line (no key/status)", str(self.path), lineno)
            self._keep(row)

    def _keep(self, row: dict[str, Any]) -> None:
        # The raw model output stays on disk only: millions of units must fit in memory.
        self.rows[row["key"]] = {k: v for k, v in row.items() if k != "output"}

    def done(self, key: str) -> bool:
        row = self.rows.get(key)
        return row is not None and row["status"] != FAILED

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def append(self, row: dict[str, Any]) -> None:
        os.write(self._fd, (dumps(row) + "\n").encode("utf-8"))
        self._keep(row)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._lock_fh.close()

    def __enter__(self) -> "ResultLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
