"""Ctrl-C during a study: stop the trial that is running, never Optuna's bookkeeping.

A KeyboardInterrupt that lands while Optuna asks for, records or reports a trial leaves that
trial RUNNING in the study; a resumed run then waits out the heartbeat grace before it can
finish (and the interrupt surfaces as Optuna's "Should not reach" AssertionError). Inside
``TrialShield.shielded()`` a SIGINT or SIGTERM is held back; it is delivered as soon as the
shield lifts, or as soon as the objective opens ``unshielded()`` (where Optuna catches it and
marks the trial FAIL). Signals can only be handled in the main thread; elsewhere the shield
does nothing.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrialShield:
    def __init__(self) -> None:
        self._held: int | None = None  # the signal that arrived while shielded
        self._shielded = False
        self._previous: dict[int, object] = {}

    @contextmanager
    def shielded(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
        for sig in SIGNALS:
            signal.signal(sig, self._on_signal)
        self._shielded = True
        try:
            yield
        finally:
            self._shielded = False
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._deliver_held()

    @contextmanager
    def unshielded(self) -> Iterator[None]:
        """The objective's body: a signal stops it at once (one held back is delivered now)."""
        was = self._shielded
        self._shielded = False
        try:
            self._deliver_held()
            yield
        finally:
            self._shielded = was

    def _on_signal(self, signum: int, frame) -> None:
        if self._shielded:
            self._held = signum
        else:
            self._forward(signum, frame)

    def _deliver_held(self) -> None:
        signum, self._held = self._held, None
        if signum is not None:
            self._forward(signum, None)

    def _forward(self, signum: int, frame) -> None:
        handler = self._previous.get(signum, signal.default_int_handler)
        if handler is signal.SIG_IGN:
            return
        if callable(handler):
            handler(signum, frame)
            return
        # SIG_DFL: SIGINT's default is KeyboardInterrupt; SIGTERM's would kill the process
        # without the clean stop, so it is turned into one too.
        raise KeyboardInterrupt
