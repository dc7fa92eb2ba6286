"""``kgopt dashboard``: optuna-dashboard on the compiler's study storage.

The compiler names each study's metrics (``dev F1``; with ``--objective pareto`` also ``prompt
tokens / record``), so the dashboard shows them by name; a two-objective study's page draws its
Pareto front, natively. A trial successive halving stopped is PRUNED, with its ``rung`` (dev
records scored) and its calls among its user attributes, and its F1 at each rung as
intermediate values.

The storage URL may carry a password (put in by ``kgopt.clients.credentials.cli_storage_url``
from a file or ``KGOPT_STORAGE_PASSWORD``): it is shown only through ``kgopt.redaction``.
"""

from __future__ import annotations

from loguru import logger

from kgopt.compiler.storage import existing_storage, open_storage
from kgopt.redaction import redact_url


def serve(storage: str | None = None, host: str = "127.0.0.1", port: int = 8080) -> None:
    import optuna_dashboard

    url = existing_storage(storage)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving the dashboard on {}: anyone who can reach this port can read and edit the studies", host)
    logger.info("optuna-dashboard for {} at http://{}:{}/dashboard", redact_url(url), host, port)
    optuna_dashboard.run_server(open_storage(url), host=host, port=port)
