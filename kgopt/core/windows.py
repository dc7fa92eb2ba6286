"""Split long documents into model-sized windows, keeping character offsets.

Pure: no I/O. A window is a ``(start, end)`` slice of the document; ``text[start:end]`` is
what the model sees, so every span found in a window maps back to the document exactly.
(A "chunk" is something else: a slice of the schema asked in one instruction, core/schema.py.)
Cuts prefer a sentence end (Chinese or Latin punctuation, or a line break), then a space,
and only cut mid-word when a "sentence" is longer than the whole window.
"""

from __future__ import annotations

import re

# Sentence ends: CJK full stops / marks (no space follows them), Latin ones followed by space.
_SENTENCE_END = re.compile(r"[。！？；!?…]+[」』”’)）\"']*|[.;]+[\"')\]]*(?=\s)|\n+")
_SPACE = re.compile(r"\s+")


def _last_break(text: str, start: int, limit: int, pattern: re.Pattern) -> int | None:
    """The last break position in ``text[start:limit]`` (an index just after the break)."""
    best = None
    for m in pattern.finditer(text, start, limit):
        if m.end() > start:
            best = m.end()
    return best


def window_spans(text: str, max_chars: int) -> list[tuple[int, int]]:
    """``(start, end)`` slices covering ``text``'s non-blank content, each at most ``max_chars``.

    Leading/trailing whitespace of each window is trimmed (the offsets move with it); a
    blank document has no windows.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be >= 1")
    spans: list[tuple[int, int]] = []
    n, pos = len(text), 0
    while pos < n:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            break
        limit = min(n, pos + max_chars)
        if limit < n:
            # Do not leave a break that ends exactly at the window's edge unfound.
            end = _last_break(text, pos, limit, _SENTENCE_END) or _last_break(text, pos, limit, _SPACE) or limit
        else:
            end = n
        stop = end
        while stop > pos and text[stop - 1].isspace():
            stop -= 1
        if stop > pos:
            spans.append((pos, stop))
        pos = end
    return spans


def find_span(text: str, span: str, offset: int = 0) -> list[int] | None:
    """``[start, end]`` of the first exact occurrence of ``span`` in ``text``, shifted by ``offset``."""
    if not span:
        return None
    i = text.find(span)
    return None if i < 0 else [offset + i, offset + i + len(span)]


def sentence_around(text: str, start: int, end: int, max_chars: int = 240) -> tuple[int, int]:
    """``(s, e)``: the sentence of ``text`` that holds ``text[start:end]``, at most about
    ``max_chars`` long (cut around the span when the sentence is longer)."""
    s = 0
    for m in _SENTENCE_END.finditer(text, 0, start):
        s = m.end()
    m = _SENTENCE_END.search(text, end)
    e = m.end() if m else len(text)
    room = max(0, max_chars - (end - start)) // 2
    s, e = max(s, start - room), min(e, end + room)
    while s < start and text[s].isspace():
        s += 1
    while e > end and text[e - 1].isspace():
        e -= 1
    return s, e
