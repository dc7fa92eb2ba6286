"""Streaming JSON readers: JSON lines and JSON arrays, with file:line in every error.

IEPile's train.json is hundreds of megabytes: nothing here loads a whole file. JSON-lines
files are read line by line; an array file is decoded element by element from a buffer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import ujson

from kgopt.errors import DataError

_CHUNK = 1 << 20
# Longest JSON line (and array element) read: a record of IEPile is a few KB; a bigger one is
# a damaged or hostile file, refused before it fills the memory.
MAX_RECORD_BYTES = 64 << 20
# Python's json recurses per nesting level: a deeper document is refused as such, with its line,
# instead of a RecursionError (real records nest 4 levels).
MAX_DEPTH_MESSAGE = "nested too deeply"


def _first_char(path: Path) -> str:
    with open(path, "rb") as fh:
        while True:
            block = fh.read(4096)
            if not block:
                return ""
            stripped = block.lstrip(b" \t\r\n\xef\xbb\xbf")
            if stripped:
                return chr(stripped[0])


def iter_json(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each record of a JSON-lines or JSON-array file."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", str(path))
    if _first_char(path) == "[":
        yield from _iter_array(path)
    else:
        yield from _iter_lines(path)


def iter_json_or_errors(path: str | os.PathLike) -> Iterator[tuple[int | None, Any]]:
    """``iter_json`` for checking a file: a bad line is yielded as ``(line, DataError)`` and the
    reading goes on with the next line (a JSON-array file, or a line too long to skip, stops there)."""
    path = Path(path)
    if not path.is_file():
        yield None, DataError("file not found", str(path))
        return
    if _first_char(path) == "[":
        try:
            yield from _iter_array(path)
        except DataError as exc:
            yield exc.line, exc
        return
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(_lines(fh), 1):
            if len(raw) > MAX_RECORD_BYTES:
                yield lineno, DataError(f"line longer than {MAX_RECORD_BYTES} bytes; the rest of the file is not checked", str(path), lineno)
                return
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                yield lineno, loads_checked(line, str(path), lineno)
            except UnicodeDecodeError as exc:
                yield lineno, DataError(f"not UTF-8 ({exc.reason} at byte {exc.start})", str(path), lineno)
            except DataError as exc:
                yield lineno, exc


def loads_checked(text: str | bytes, path: str, line: int | None) -> Any:
    """``json.loads`` whose failures (bad JSON, nesting too deep) are a ``DataError`` at ``path:line``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise DataError(f"invalid JSON: {MAX_DEPTH_MESSAGE}", path, line) from None
    except ValueError as exc:
        raise DataError(f"invalid JSON: {exc}", path, line) from None


def _lines(fh) -> Iterator[bytes]:
    while True:
        raw = fh.readline(MAX_RECORD_BYTES + 1)
        if not raw:
            return
        yield raw


def _iter_lines(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(_lines(fh), 1):
            if len(raw) > MAX_RECORD_BYTES:
                raise DataError(f"line longer than {MAX_RECORD_BYTES} bytes", str(path), lineno)
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"not UTF-8 ({exc.reason} at byte {exc.start})", str(path), lineno) from None
            try:
                obj = ujson.loads(line)
            except (ValueError, RecursionError):
                # ujson's messages are terse (and it refuses some valid JSON): the stdlib decides and says where.
                obj = loads_checked(line, str(path), lineno)
            yield lineno, obj


def _iter_array(path: Path) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    with open(path, "r", encoding="utf-8-sig") as fh:
        buf = ""
        line = 1  # line number of buf[0]
        eof = False
        pos = 0

        def fill() -> bool:
            nonlocal buf, pos, line, eof
            if eof:
                return False
            try:
                more = fh.read(_CHUNK)
            except UnicodeDecodeError as exc:
                raise DataError(f"not UTF-8 ({exc.reason})", str(path)) from None
            if not more:
                eof = True
                return False
            line += buf.count("\n", 0, pos)
            buf = buf[pos:] + more
            pos = 0
            return True

        def skip_ws() -> None:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not fill():
                    return

        fill()
        skip_ws()
        if pos >= len(buf) or buf[pos] != "[":
            raise DataError("expected a JSON array", str(path), line)
        pos += 1
        first = True
        while True:
            skip_ws()
            if pos >= len(buf):
                raise DataError("unexpected end of file inside the JSON array", str(path), line + buf.count("\n", 0, pos))
            if buf[pos] == "]":
                return
            if not first:
                if buf[pos] != ",":
                    raise DataError("expected ',' between array elements", str(path), line + buf.count("\n", 0, pos))
                pos += 1
                skip_ws()
            first = False
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    if end >= len(buf) and fill():
                        continue  # a scalar may go on past the buffer edge
                    break
                except RecursionError:
                    raise DataError(f"invalid JSON: {MAX_DEPTH_MESSAGE}", str(path), line + buf.count("\n", 0, pos)) from None
                except json.JSONDecodeError as exc:
                    # An element cut by the buffer edge: read more and try again (up to the size cap).
                    if len(buf) - pos <= MAX_RECORD_BYTES and fill():
                        continue
                    if len(buf) - pos > MAX_RECORD_BYTES:
                        raise DataError(f"array element longer than {MAX_RECORD_BYTES} bytes", str(path), line + buf.count("\n", 0, pos)) from None
                    raise DataError(f"invalid JSON: {exc.msg}", str(path), line + buf.count("\n", 0, exc.pos)) from None
            yield line + buf.count("\n", 0, pos), obj
            pos = end


def write_jsonl(path: str | os.PathLike, rows: Iterator[Any] | list[Any]) -> int:
    """Write rows as JSON lines atomically (temp file + rename). Returns the row count."""
    n = 0

    def write(fh) -> None:
        nonlocal n
        for row in rows:
            fh.write(ujson.dumps(row, ensure_ascii=False, escape_forward_slashes=False) + "\n")
            n += 1

    write_atomic(path, write)
    return n


def write_atomic(path: str | os.PathLike, write: Callable[[Any], None], binary: bool = False) -> None:
    """Write a file through ``write(fh)`` to a temp name, fsync, then rename into place; if
    ``write`` raises (e.g. a failed check of what it wrote), the file is left as it was.

    The temp name is per process, so two processes writing the same file (two compile workers
    of one study) each replace it whole, never interleaved.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def dumps(obj: Any, indent: int = 0) -> str:
    return ujson.dumps(obj, ensure_ascii=False, escape_forward_slashes=False, indent=indent)
