"""TrialShield: a signal is held back while Optuna records a trial and delivered after."""

import os
import signal

import pytest

from kgopt.compiler.interrupts import TrialShield


def _send(sig=signal.SIGINT):
    os.kill(os.getpid(), sig)  # delivered to the main thread before os.kill returns to Python code


def test_a_signal_while_shielded_waits_for_the_shield_to_lift():
    shield, reached = TrialShield(), []
    with pytest.raises(KeyboardInterrupt):
        with shield.shielded():
            _send()
            reached.append("after the signal")  # the bookkeeping still completes
    assert reached == ["after the signal"]


def test_unshielded_work_is_stopped_at_once_and_a_held_signal_is_delivered_on_entry():
    shield, reached = TrialShield(), []
    with pytest.raises(KeyboardInterrupt):
        with shield.shielded():
            with shield.unshielded():
                _send()
                reached.append("not reached")
    assert reached == []

    with pytest.raises(KeyboardInterrupt):
        with shield.shielded():
            _send()  # held: Optuna was asking for the trial
            with shield.unshielded():
                reached.append("not reached either")
    assert reached == []


def test_sigterm_becomes_a_clean_stop_and_handlers_are_restored():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    shield = TrialShield()
    with pytest.raises(KeyboardInterrupt):
        with shield.shielded():
            _send(signal.SIGTERM)
    assert {s: signal.getsignal(s) for s in before} == before
    with shield.shielded():
        pass  # nothing held, nothing raised


def test_the_previous_handler_decides_what_a_signal_does():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with TrialShield().shielded():
            _send()
            assert seen == []
        assert seen == [signal.SIGINT]  # a handler that does not raise: the run goes on
    finally:
        signal.signal(signal.SIGINT, previous)
