"""Choosing demonstrations, and telling texts apart: pure functions, no LLM.

Texts are compared on token unigrams + bigrams, where a token is a CJK character or a
run of letters/digits, so one measure works for Chinese and English.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
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


DEMO_WEIGHT_KEYS = ("similarity", "coverage", "diversity", "length")


@dataclass(frozen=True)
class DemoWeights:
    """The four weights of ``weighted_demos``, each a number from 0 to 1 (an omitted one is 0)."""

    similarity: float = 0.0
    coverage: float = 0.0
    diversity: float = 0.0
    length: float = 0.0

    def __post_init__(self):
        for name in DEMO_WEIGHT_KEYS:
            w = getattr(self, name)
            # bool is an int to Python, and NaN passes no comparison: both refused here.
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
                raise ValueError(f"demo_weights.{name} must be a number from 0 to 1, got {w!r}")
            object.__setattr__(self, name, float(w))

    @classmethod
    def from_dict(cls, d: Any) -> "DemoWeights":
        """Weights from a program file's ``demo_weights`` object; an unknown key is refused."""
        if isinstance(d, cls):
            return d
        if not isinstance(d, dict):
            raise ValueError(f"demo_weights must be an object with number(s) {', '.join(DEMO_WEIGHT_KEYS)}, got {d!r}")
        unknown = sorted(set(d) - set(DEMO_WEIGHT_KEYS), key=str)
        if unknown:
            raise ValueError(f"demo_weights: unknown weight(s) {', '.join(map(repr, unknown))}; the weights are {', '.join(DEMO_WEIGHT_KEYS)}")
        return cls(**d)


def weighted_demos(
    text: str,
    pool: Sequence[Any],
    k: int,
    weights: DemoWeights,
    key: Callable[[Any], str],
    labels_of: Callable[[Any], set[str]],
    wanted: set[str],
    size: Callable[[Any], int] | None = None,
) -> list[Any]:
    """The ``k`` pool items a weighted score picks for ``text``, greedily, best last.

    Each pick takes the item with the highest
    ``similarity * sim(text, item) + coverage * |labels(item) & wanted| / |wanted|
    + diversity * (1 - max sim(item, picked)) - length * size(item) / max size in pool``
    (an item's text is ``key(item)``; ``size`` defaults to the length of that text; the
    diversity term is 1 for the first pick, as in MMR). Ties go to the earlier pool item, so
    the choice is a function of the arguments alone. With only ``similarity`` it is
    ``most_similar`` without a bonus.
    """
    if k <= 0 or not pool:
        return []
    f = features(text)
    feats = [features(key(item)) for item in pool]
    sims = [jaccard(f, g) for g in feats]
    cover = [len(labels_of(item) & wanted) / len(wanted) if wanted else 0.0 for item in pool]
    sizes = [(size or (lambda it: len(key(it))))(item) for item in pool]
    longest = max(sizes)
    lengths = [s / longest if longest > 0 else 0.0 for s in sizes]
    # The part of the score that does not depend on what is already picked.
    base = [weights.similarity * s + weights.coverage * c - weights.length * n for s, c, n in zip(sims, cover, lengths)]
    closest = [0.0] * len(pool)  # each item's highest similarity to a picked one
    left = list(range(len(pool)))
    picked: list[int] = []
    while left and len(picked) < k:
        # max() keeps the first of equal scores: ties go to pool order.
        best = max(left, key=lambda i: base[i] + weights.diversity * (1.0 - closest[i]))
        left.remove(best)
        picked.append(best)
        if weights.diversity:
            for i in left:
                closest[i] = max(closest[i], jaccard(feats[i], feats[best]))
    return [pool[i] for i in reversed(picked)]
