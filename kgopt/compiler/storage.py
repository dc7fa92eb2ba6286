"""Where studies live: one module for the compiler and the dashboard.

SQLite under ``compiled/`` by default; any SQLAlchemy URL otherwise (PostgreSQL lets several
workers on several machines share one study). Heartbeats let a surviving worker, or a re-run,
fail the trial of a worker that died; a failed trial is enqueued again once, so a warm start
that a dead worker was running is not lost. Passwords in URLs never reach logs, manifests or
error messages: ``kgopt.redaction`` is the only way a URL is shown.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import optuna

from kgopt.errors import ConfigError
from kgopt.redaction import redact_url, scrub

# Seconds between a worker's heartbeats; its trial is failed after GRACE_FACTOR of them missed.
HEARTBEAT_SECONDS = 30
GRACE_FACTOR = 3


def default_storage(out_dir: str | Path) -> str:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Relative when the folder is: the URL lands in manifests, which should not name this machine's paths.
    return f"sqlite:///{out_dir / 'studies.sqlite3'}"


def existing_storage(storage: str | None = None, compiled_dir: str | Path = "compiled") -> str:
    """The given URL, or the default SQLite database, which must exist already (dashboard)."""
    if storage:
        return storage
    db = Path(compiled_dir) / "studies.sqlite3"
    if not db.is_file():
        raise ConfigError(f"no study database at {db}; run `kgopt compile` first or pass --storage")
    return f"sqlite:///{db}"


def heartbeat_seconds() -> int:
    """``KGOPT_STUDY_HEARTBEAT`` (seconds) or 30; tests shorten it to see a dead worker sooner."""
    value = os.environ.get("KGOPT_STUDY_HEARTBEAT", str(HEARTBEAT_SECONDS))
    try:
        seconds = int(value)
    except ValueError:
        raise ConfigError(f"KGOPT_STUDY_HEARTBEAT must be a whole number of seconds, got {value!r}") from None
    if seconds < 1:
        raise ConfigError("KGOPT_STUDY_HEARTBEAT must be at least 1 second")
    return seconds


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The study storage at ``url``, with heartbeats and one retry of a trial whose worker died."""
    import sqlalchemy.exc

    beat = heartbeat_seconds()
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat: stable in practice since Optuna 2.9
                return optuna.storages.RDBStorage(
                    url=url,
                    heartbeat_interval=beat,
                    grace_period=beat * GRACE_FACTOR,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except Exception as exc:  # bad URL, missing driver, unreachable database, wrong password
            racing = isinstance(exc, sqlalchemy.exc.IntegrityError) or (
                isinstance(exc, sqlalchemy.exc.ProgrammingError) and "already exists" in str(exc))
            if racing and attempt < 2:
                # Two workers creating Optuna's tables (or PostgreSQL's enum types) in a new
                # database at once: one wins, the other sees a duplicate; they exist when it tries again.
                time.sleep(1.0 + attempt)
                continue
            raise ConfigError(f"cannot open study storage {redact_url(url)}: {type(exc).__name__}: {scrub(str(exc), url)}") from None
    raise AssertionError("unreachable: the loop returns or raises")


def fail_dead_trials(study: optuna.Study) -> None:
    """Fail (and enqueue again, once) the trials whose worker stopped sending heartbeats."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable in practice since Optuna 2.9
        optuna.storages.fail_stale_trials(study)
