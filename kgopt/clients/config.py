"""Where the LLM is: CLI flags > environment > ``kgopt.toml`` > the embedded default.

Environment: ``KGOPT_API_BASE``, ``KGOPT_MODEL``, ``KGOPT_API_KEY`` (default ``EMPTY``),
``KGOPT_TIMEOUT``, ``KGOPT_MAX_RETRIES``, ``KGOPT_JSON_DIALECT`` (how the server takes a
JSON schema; the default ``auto`` finds out by itself, so it is rarely needed; else a name
registered in ``kgopt.clients.dialects``: ``openai`` = ``response_format: json_schema``, as
vLLM does; ``llama-cpp`` = llama-cpp-python's ``json_object`` + ``schema``). ``kgopt.toml``
(current directory, or ``KGOPT_CONFIG``) may hold the same under ``[endpoint]``:
``api_base``, ``model``, ``api_key``, ``timeout``, ``max_retries``, ``json_dialect``. A kgopt.toml that is read is
reported at INFO with its path and the (redacted) ``api_base`` it sets: a file left in the
working directory must not silently send requests, and ``KGOPT_API_KEY``, elsewhere.
``api_key_env`` (CLI ``--api-key-env NAME``) reads the key from another environment variable,
so it never appears in process arguments. URLs are only ever shown through ``kgopt.redaction``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from loguru import logger

from kgopt.clients.dialects import dialect_names
from kgopt.errors import ConfigError
from kgopt.redaction import MASK, redact_url


@dataclass(frozen=True)
class EndpointConfig:
    api_base: str | None = None  # None: start the embedded model
    model: str | None = None
    api_key: str = "EMPTY"
    timeout: float = 120.0
    max_retries: int = 4
    json_dialect: str = "auto"

    @property
    def embedded(self) -> bool:
        return self.api_base is None

    def identity(self) -> str:
        """What a result depends on: the endpoint and model, never the key. Redacted (it lands in
        manifests, provenance and the response cache); the same string as before when the URL
        holds no secret, so existing caches and manifests still match."""
        return f"{redact_url(self.api_base)}|{self.model}"

    def redacted(self) -> dict:
        return {"api_base": redact_url(self.api_base), "model": self.model, "api_key": MASK if self.api_key not in ("", "EMPTY") else self.api_key}


def _shown(value: object) -> str:
    """A would-be URL for an error message: redacted, and with no scheme (``user:pw@host``) its user info masked."""
    text = str(value)
    if "://" not in text and "@" in text:
        return f"{MASK}@{text.rpartition('@')[2]}"
    return redact_url(text) or text


def _toml(path: Path | None) -> tuple[dict, Path | None]:
    """The ``[endpoint]`` table of the kgopt.toml in use, and that file's path (None: no file)."""
    candidates = [path] if path else [Path(os.environ["KGOPT_CONFIG"])] if os.environ.get("KGOPT_CONFIG") else [Path("kgopt.toml")]
    for p in candidates:
        if p and p.is_file():
            try:
                data = tomllib.loads(p.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{p}: invalid TOML: {exc}") from None
            section = data.get("endpoint", {})
            if not isinstance(section, dict):
                raise ConfigError(f"{p}: [endpoint] must be a table")
            unknown = set(section) - {"api_base", "model", "api_key", "timeout", "max_retries", "json_dialect"}
            if unknown:
                raise ConfigError(f"{p}: unknown key(s) in [endpoint]: {', '.join(sorted(unknown))}")
            return section, p
        if path is not None:
            raise ConfigError(f"config file not found: {p}")
    return {}, None


def resolve_endpoint(
    api_base: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    config_path: str | os.PathLike | None = None,
    api_key_env: str | None = None,
) -> EndpointConfig:
    """Merge flags, environment and kgopt.toml into one validated config.

    ``api_key_env``: the name of an environment variable holding the key (ranks as a flag)."""
    file, file_path = _toml(Path(config_path) if config_path else None)
    env = os.environ
    if api_key_env:
        from kgopt.clients.credentials import api_key_from_env

        if api_key is not None:
            raise ConfigError("give the API key one way: --api-key or --api-key-env, not both")
        api_key = api_key_from_env(api_key_env)

    def pick(flag, env_key, file_key, default=None):
        if flag is not None:
            return flag
        if env.get(env_key):
            return env[env_key]
        if file.get(file_key) is not None:
            return file[file_key]
        return default

    cfg = EndpointConfig(
        api_base=pick(api_base, "KGOPT_API_BASE", "api_base"),
        model=pick(model, "KGOPT_MODEL", "model"),
        api_key=str(pick(api_key, "KGOPT_API_KEY", "api_key", "EMPTY")),
        json_dialect=str(pick(None, "KGOPT_JSON_DIALECT", "json_dialect", "auto")),
    )
    dialects = ("auto", *dialect_names())
    if cfg.json_dialect not in dialects:
        raise ConfigError(f"json_dialect must be one of {', '.join(dialects)}, got {cfg.json_dialect!r}")
    try:
        cfg = replace(
            cfg,
            timeout=float(pick(timeout, "KGOPT_TIMEOUT", "timeout", 120.0)),
            max_retries=int(pick(max_retries, "KGOPT_MAX_RETRIES", "max_retries", 4)),
        )
    except ValueError as exc:
        raise ConfigError(f"timeout must be a number and max_retries an integer: {exc}") from None
    if cfg.api_base is not None:
        url = urlparse(cfg.api_base)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(f"api_base must be an http(s) URL like http://HOST:8192/v1, got {_shown(cfg.api_base)!r}")
        if not cfg.model:
            raise ConfigError("an endpoint needs a model name: set KGOPT_MODEL or pass --model")
    if cfg.timeout <= 0 or cfg.max_retries < 0:
        raise ConfigError("timeout must be > 0 and max_retries >= 0")
    if file_path is not None:
        _report_file(file_path, file, cfg, key_from_env=api_key is None and bool(env.get("KGOPT_API_KEY")))
    return cfg


def _report_file(path: Path, file: dict, cfg: EndpointConfig, key_from_env: bool) -> None:
    """Say which kgopt.toml is read, where it sends requests, and whose key goes along (never a key or password)."""
    where = path.resolve()
    others = ", ".join(sorted(k for k in file if k != "api_base")) or "nothing else"
    base_from_file = file.get("api_base") is not None and cfg.api_base == file["api_base"]
    if file.get("api_base") is None:
        logger.info("using {}: no api_base; sets {}", where, others)
    else:
        logger.info(
            "using {}: api_base {}{}; also sets {}", where, redact_url(str(file["api_base"])),
            "" if base_from_file else " (overridden by a flag or KGOPT_API_BASE)", others,
        )  # fmt: skip
    if cfg.api_base is None:
        return  # the embedded model gets its own key, never these
    if base_from_file and key_from_env:  # the environment's key outranks the file's, and goes where the file says
        logger.info("KGOPT_API_KEY is sent to {}, the api_base set in {}", redact_url(cfg.api_base), where)
    elif not base_from_file and file.get("api_key") is not None and cfg.api_key == str(file["api_key"]):
        logger.info("the api_key in {} is sent to {}, set elsewhere", where, redact_url(cfg.api_base))
