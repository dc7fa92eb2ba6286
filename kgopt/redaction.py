"""The one way a URL or a secret-bearing text is shown: logs, errors, manifests, provenance,
cache identities and the dashboard all go through ``redact_url`` and ``scrub``.

A URL loses its user info's password (a bare user info, which is often a token, goes whole)
and the values of query parameters named like secrets (``?key=``, ``?password=``, ...).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

__all__ = ["MASK", "redact_url", "redact_identity", "scrub", "secret_parts", "is_secret_name"]

MASK = "***"

# Query parameter names that carry a credential (matched as words, case-insensitive).
_SECRET_NAME = re.compile(r"(^|[_\-.])(key|apikey|api[_\-]?key|token|access[_\-]?token|auth|authorization|password|passwd|pwd|"
                          r"pass|secret|sig|signature|credential|credentials|session)($|[_\-.])", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def is_secret_name(name: str) -> bool:
    """A query-parameter or setting name that looks like it holds a credential."""
    return bool(_SECRET_NAME.search(name))


def _split(url: str):
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
        return parts
    except ValueError:
        return None


def redact_url(url: str | None) -> str | None:
    """``url`` with its password and secret query values masked; other URLs unchanged."""
    if not url:
        return url
    parts = _split(url)
    if parts is None or not parts.scheme:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if has_password else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = "&".join(f"{quote(k, safe='')}={MASK if is_secret_name(k) else quote(v, safe='')}" for k, v in pairs)
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # rebuilding would drop an empty host (sqlite:///file becomes sqlite:/file)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_identity(identity: str | None) -> str | None:
    """An endpoint identity (``URL|model[|cache:NS]``) with each URL part redacted. ``scrub``
    would take ``|model`` as part of a URL's query and mask it; unchanged when nothing is secret,
    so cache keys and manifests of URLs without secrets stay what they were."""
    if not identity:
        return identity
    return "|".join(redact_url(part) or "" for part in identity.split("|"))


def secret_parts(url: str | None) -> list[str]:
    """The secret substrings of ``url`` (password or bare user info, secret query values), raw and decoded."""
    parts = _split(url or "")
    if parts is None:
        return []
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, has_password, password = userinfo.partition(":")
        found.append(password if has_password else user)
    for raw in parts.query.split("&"):
        k, _, v = raw.partition("=")
        if v and is_secret_name(unquote(k)):
            found.append(v)
    out = []
    for s in found:
        for form in (s, unquote(s)):
            if form and form not in out:
                out.append(form)
    return sorted(out, key=len, reverse=True)  # longest first, so a prefix never leaves a tail


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` (an error message, a log line) with every URL in it redacted, and every given
    secret masked: each of ``secrets`` is a URL (its secret parts are masked) or a bare secret."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)) or "", str(text))
    for s in secrets:
        if not s:
            continue
        for piece in secret_parts(s) if "://" in s else [s]:
            if len(piece) >= 3 or piece == s:  # a one-letter password would mask every such letter
                text = text.replace(piece, MASK)
    return text
