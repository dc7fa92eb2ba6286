"""``kgopt dashboard``: optuna-dashboard on the compiler's study storage."""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from kgopt.errors import ConfigError


def storage_url(storage: str | None = None, compiled_dir: str | Path = "compiled") -> str:
    if storage:
        return storage
    db = Path(compiled_dir) / "studies.sqlite3"
    if not db.is_file():
        raise ConfigError(f"no study database at {db}; run `kgopt compile` first or pass --storage")
    return f"sqlite:///{db}"


def serve(storage: str | None = None, host: str = "127.0.0.1", port: int = 8080) -> None:
    import optuna_dashboard

    from kgopt.compiler.manifest import redact_url
    from kgopt.compiler.study import open_storage

    url = storage_url(storage)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving the dashboard on {}: anyone who can reach this port can read and edit the studies", host)
    logger.info("optuna-dashboard for {} at http://{}:{}/dashboard", redact_url(url), host, port)
    optuna_dashboard.run_server(open_storage(url), host=host, port=port)
