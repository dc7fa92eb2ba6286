"""Keys and passwords from the environment or a file, not from process arguments.

A command line is visible to every local user (``ps``, ``/proc/PID/cmdline``), so the CLI reads
the API key from ``KGOPT_API_KEY`` or the variable named by ``--api-key-env``, and a storage
password from ``KGOPT_STORAGE_PASSWORD`` or ``--storage-password-file``; it still takes them as
arguments, with a warning. A password is put into its URL in memory only, and any URL is shown
through ``kgopt.redaction``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from loguru import logger

from kgopt.errors import ConfigError
from kgopt.redaction import is_secret_name, redact_url

__all__ = [
    "STORAGE_PASSWORD_ENV", "api_key_from_env", "cli_storage_url", "holds_secret", "read_secret_file",
    "url_with_password", "warn_key_argument", "warn_secret_argument",
]  # fmt: skip

STORAGE_PASSWORD_ENV = "KGOPT_STORAGE_PASSWORD"


def api_key_from_env(name: str) -> str:
    """The API key in the environment variable ``name`` (``--api-key-env NAME``)."""
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"--api-key-env {name}: the environment variable {name} is not set or empty")
    return value


def warn_key_argument() -> None:
    """Said when ``--api-key`` is used: the key is readable by anyone on the machine while kgopt runs."""
    logger.warning(
        "--api-key puts the key in the process arguments, which other local users can see (ps); "
        "set KGOPT_API_KEY or use --api-key-env NAME instead"
    )


def holds_secret(url: str | None) -> bool:
    """``url`` carries a password or a secret query value (a bare user name does not count: in
    a database URL it is the user, not a token)."""
    try:
        parts = urlsplit(url or "")
        has_password = parts.password is not None
    except ValueError:
        return False
    return has_password or any(v and is_secret_name(k) for k, v in parse_qsl(parts.query, keep_blank_values=True))


def warn_secret_argument(flag: str, url: str | None) -> None:
    """Warn when a URL given as the command-line argument ``flag`` holds a password or key."""
    if holds_secret(url):
        logger.warning(
            "{} {} holds a password or key, and process arguments are visible to other local users (ps); {}",
            flag, redact_url(url),
            "use --storage-password-file or KGOPT_STORAGE_PASSWORD instead" if flag == "--storage"
            else "set it in the environment (KGOPT_API_BASE, KGOPT_API_KEY) or kgopt.toml instead",
        )  # fmt: skip


def read_secret_file(path: str | os.PathLike) -> str:
    """The secret in a file: its first line, without the line break."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        mode = p.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the password file {p}: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    secret = text.splitlines()[0] if text else ""
    if not secret:
        raise ConfigError(f"the password file {p} is empty")
    if mode & 0o077:
        logger.warning("the password file {} can be read by other users (mode {:o}): chmod 600 it", p, mode & 0o777)
    return secret


def url_with_password(url: str, password: str) -> str:
    """``url`` (``scheme://USER@HOST...``) with ``password`` as its user's password, percent-encoded
    as SQLAlchemy and libpq expect. The result is for connecting only: show it with ``redact_url``."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not hostport or not parts.hostname:
        raise ConfigError(f"cannot add a password to {redact_url(url)}: it names no host")
    if not at or not userinfo:
        raise ConfigError(f"cannot add a password to {redact_url(url)}: put the user name in it (scheme://USER@HOST/...)")
    if ":" in userinfo:
        raise ConfigError(f"{redact_url(url)} holds a password already: give the password one way only")
    return urlunsplit(parts._replace(netloc=f"{userinfo}:{quote(password, safe='')}@{hostport}"))


def cli_storage_url(storage: str | None, password_file: str | os.PathLike | None = None) -> str | None:
    """The ``--storage`` URL of a command, with the password from ``password_file`` or
    ``KGOPT_STORAGE_PASSWORD`` put in (in memory only). Warns when the URL itself holds one.
    None stays None (the default SQLite storage, which has no password)."""
    warn_secret_argument("--storage", storage)
    if password_file is not None:
        password, source = read_secret_file(password_file), f"--storage-password-file {password_file}"
    elif os.environ.get(STORAGE_PASSWORD_ENV):
        password, source = os.environ[STORAGE_PASSWORD_ENV], STORAGE_PASSWORD_ENV
    else:
        return storage
    if not storage or not urlsplit(storage).hostname:
        if password_file is not None:
            raise ConfigError("--storage-password-file needs a --storage URL of a database server, e.g. postgresql://USER@HOST/DB")
        return storage  # the environment's password is for a server; SQLite has none
    try:
        return url_with_password(storage, password)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (password from {source})") from None
