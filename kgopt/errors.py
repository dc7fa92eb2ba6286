"""kgopt's exception hierarchy: one root, a few clear subclasses.

Model output never raises (the parser returns a status instead); these are for
bad input files, bad configuration, unreachable endpoints and bad artifacts.
"""

from __future__ import annotations


class KgoptError(Exception):
    """Root of every error kgopt raises on purpose."""


class DataError(KgoptError):
    """A dataset or prediction file is malformed. Names the file and line."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        self.reason = message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class ConfigError(KgoptError):
    """Configuration (env vars, kgopt.toml, CLI flags) is invalid or incomplete."""


class EndpointError(KgoptError):
    """The LLM endpoint could not be reached or started."""


class ArtifactError(KgoptError):
    """A saved program file is missing, malformed or incompatible."""


class UnknownTaskError(KgoptError, ValueError):
    """A task name or language that kgopt does not know."""


class BudgetExceeded(KgoptError):
    """The run reached its ``--max-calls`` cap; nothing more is sent to the endpoint."""


class ExtractAborted(KgoptError):
    """``kgopt extract`` stopped early (too many failures, or the call budget); finished work is kept."""


class CallsFailed(KgoptError):
    """More LLM calls failed than a run allows (``--max-failures``, or a trial's share): its
    figures would measure the endpoint's outage, not the program. Finished work is kept."""


def check_failures(failed: int, total: int, max_failures: int | None, what: str) -> None:
    """Raise ``CallsFailed`` when more than ``max_failures`` of ``total`` calls failed (None: no limit)."""
    if max_failures is not None and failed > max_failures:
        raise CallsFailed(f"{what}: {failed} of {total} LLM calls failed (more than --max-failures {max_failures})")
