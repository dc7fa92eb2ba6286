"""Documents to build a graph from: JSON lines, plain text, or a folder of ``.txt`` files.

- JSON lines: one ``{"id": ..., "text": ..., "cate": optional topic}`` per line.
- Plain text (any other file): one document per non-blank line; its id is ``name:line``.
- A folder: every ``*.txt`` under it (sorted), one document per file; its id is the relative path.

Reading streams (millions of documents never sit in memory). Bytes that are not UTF-8 are
replaced by U+FFFD and reported as a warning with file:line, not fatal: real crawls have
them. A malformed JSON line is a ``DataError`` naming the file and line, unless the caller
skips bad lines, in which case it is yielded as a ``BadLine`` for the report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import ujson

from kgopt.errors import DataError


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    cate: str | None = None  # InstructIE topic, if the input names one
    path: str = ""
    line: int | None = None
    warning: str | None = None  # e.g. invalid UTF-8 replaced

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else self.path


@dataclass(frozen=True)
class BadLine:
    path: str
    line: int
    reason: str

    def as_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "reason": self.reason}


def _decode(raw: bytes, first: bool) -> tuple[str, str | None]:
    try:
        return raw.decode("utf-8-sig" if first else "utf-8"), None
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8-sig" if first else "utf-8", errors="replace")
        return text, f"invalid UTF-8 at byte {exc.start} replaced with U+FFFD"


def _is_jsonl(path: Path) -> bool:
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return True
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{")


def _jsonl_docs(path: Path) -> Iterator[Document | BadLine]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            line, warning = _decode(raw, lineno == 1)
            try:
                obj = ujson.loads(line)
            except ValueError as exc:
                yield BadLine(str(path), lineno, f"invalid JSON ({exc})")
                continue
            if not isinstance(obj, dict):
                yield BadLine(str(path), lineno, f"expected a JSON object, got {type(obj).__name__}")
                continue
            text = obj.get("text")
            if not isinstance(text, str):
                yield BadLine(str(path), lineno, "field 'text' is missing or not a string")
                continue
            doc_id = obj.get("id", f"{path.name}:{lineno}")
            if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
                yield BadLine(str(path), lineno, "field 'id' must be a string or an integer")
                continue
            cate = obj.get("cate")
            if cate is not None and not isinstance(cate, str):
                yield BadLine(str(path), lineno, "field 'cate' must be a string")
                continue
            yield Document(str(doc_id), text, cate or None, str(path), lineno, warning)


def _text_docs(path: Path) -> Iterator[Document]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            text, warning = _decode(raw.rstrip(b"\r\n"), lineno == 1)
            if text.strip():
                yield Document(f"{path.name}:{lineno}", text, None, str(path), lineno, warning)


def _folder_docs(root: Path) -> Iterator[Document]:
    for p in sorted(root.rglob("*.txt")):
        text, warning = _decode(p.read_bytes(), True)
        yield Document(p.relative_to(root).as_posix(), text, None, str(p), None, warning)


def read_documents(path: str | os.PathLike) -> Iterator[Document | BadLine]:
    """Documents (and bad lines) of an input path, in a stable order."""
    p = Path(path)
    if p.is_dir():
        yield from _folder_docs(p)
    elif p.is_file():
        yield from (_jsonl_docs(p) if _is_jsonl(p) else _text_docs(p))
    else:
        raise DataError("input not found (expected a .jsonl file, a text file or a folder of .txt files)", str(p))


def check_documents(path: str | os.PathLike, skip_bad: bool = False) -> Iterator[Document | BadLine]:
    """``read_documents`` plus duplicate-id detection; raises on the first bad line unless ``skip_bad``."""
    seen: dict[str, str] = {}
    for item in read_documents(path):
        if isinstance(item, Document):
            if item.id in seen:
                item = BadLine(item.path, item.line or 0, f"duplicate id {item.id!r} (first at {seen[item.id]})")
            else:
                seen[item.id] = item.where
        if isinstance(item, BadLine) and not skip_bad:
            raise DataError(item.reason + " (use --skip-bad to skip such lines)", item.path, item.line)
        yield item
