"""Choosing demonstrations, and telling texts apart: pure functions, no LLM.

Texts are compared on token unigrams + bigrams, where a token is a CJK character or a
run of letters/digits, so one measure works for Chinese and English.
"""

from __future__ import annotations

import random
import re
from typing import Any, Callable, Sequence

_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE)


def features(text: str) -> frozenset[str]:
    toks = [t.lower() for t in _TOKEN.findall(text or "")]
    return frozenset(toks) | frozenset(a + "\x00" + b for a, b in zip(toks, toks[1:]))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def similarity(a: str, b: str) -> float:
    return jaccard(features(a), features(b))


def most_similar(text: str, pool: Sequence[Any], k: int, key: Callable[[Any], str], bonus: Callable[[Any], float] | None = None) -> list[Any]:
    """The ``k`` pool items most similar to ``text`` (plus an optional bonus), most similar last.

    Most similar last: it then sits right before the query in the prompt.
    """
    if k <= 0 or not pool:
        return []
    f = features(text)
    scored = [(jaccard(f, features(key(item))) + (bonus(item) if bonus else 0.0), -i, item) for i, item in enumerate(pool)]
    scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [item for _, _, item in reversed(scored[:k])]


def cover_labels(candidates: Sequence[Any], k: int, labels_of: Callable[[Any], set[str]], seed: int = 0) -> list[Any]:
    """Greedy label coverage: each pick adds the most labels not yet shown (ties at random)."""
    rng = random.Random(seed)
    pool = list(candidates)
    rng.shuffle(pool)
    chosen: list[Any] = []
    covered: set[str] = set()
    while pool and len(chosen) < k:
        best = max(range(len(pool)), key=lambda i: len(labels_of(pool[i]) - covered))
        item = pool.pop(best)
        chosen.append(item)
        covered |= labels_of(item)
    return chosen
