"""Is a generated sample good enough to train on? Pure checks, one reason per rejection.

Model output is untrusted: a sample is kept only if it is a well-formed record of the
task's unified format, its text is not a copy of a sentence shown in its prompt, nor of a
training text, nor of a sample already kept, it uses only labels of the schema, and every
span (entity, head, tail, trigger, argument) is an exact substring of its own text. The
first check a sample fails names its reason, in ``REASONS``' order.

A copy is judged on the normalised texts (NFKC, case-folded, letters and digits only: no
spaces, no punctuation), character by character, so Chinese and English are measured the
same way (``is_copy``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Sequence

from kgopt.core.demos import jaccard
from kgopt.core.schema import Schema
from kgopt.core.shapes import shape_named
from kgopt.core.tasks import TaskSpec
from kgopt.data.readers import check_labels
from kgopt.errors import DataError

# Character-bigram Jaccard of the normalised texts at or above this: a copy. One changed
# character in a 40-character sentence scores about 0.90, two about 0.81; on the bundled training
# splits no two different sentences reach it (the highest are 0.70 and 0.69 in English, the latter
# two "It was discovered on <date> , by <name>" sentences, and 0.59 in Chinese), but the two real
# near-duplicates there do (1.0: one comma apart; 0.92: one digit of a date apart).
NEAR_COPY = 0.8
# One normalised text inside the other is a copy when the shorter is at least this share of
# the longer (a shown sentence cut short, or with a clause added); a short dateline or name
# inside a long new sentence is not.
CONTAINED = 0.5

REASONS = ("malformed", "copy_of_shown", "near_copy", "duplicate", "no_labels", "label_not_in_schema", "span_not_in_text")
COPY_REASONS = ("copy_of_shown", "near_copy")  # copies of real sentences: augmentation asks again for these


def normalise(text: str) -> str:
    """What copies are judged on: NFKC (full-width forms to ASCII), case-folded, letters,
    marks and digits only."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if unicodedata.category(ch)[0] in "LMN")


@dataclass(frozen=True)
class _Text:
    key: str  # the normalised text
    grams: frozenset[str]  # its character bigrams


def _text(text: str) -> _Text:
    key = normalise(text)
    return _Text(key, frozenset(key[i : i + 2] for i in range(len(key) - 1)) or frozenset([key]))


def _copies(a: _Text, b: _Text, threshold: float) -> bool:
    if not a.key or not b.key:
        return False
    if a.key == b.key:
        return True
    short, long_ = sorted((a.key, b.key), key=len)
    if len(short) >= CONTAINED * len(long_) and short in long_:
        return True
    small, big = sorted((len(a.grams), len(b.grams)))
    return small >= threshold * big and jaccard(a.grams, b.grams) >= threshold  # Jaccard is at most small / big


def is_copy(a: str, b: str, threshold: float = NEAR_COPY) -> bool:
    """Whether ``a`` and ``b`` are the same sentence up to spaces, punctuation and case, one
    inside the other (the shorter at least half the longer), or character-bigram Jaccard
    ``>= threshold``."""
    return _copies(_text(a), _text(b), threshold)


class SampleChecker:
    """Checks samples against a schema, the sentences shown and the training texts; remembers
    what it accepted."""

    def __init__(self, spec: TaskSpec, schema: Schema, train_texts: list[str], near_copy: float = NEAR_COPY):
        self.spec = spec
        self.items = shape_named(spec.shape).record  # what a sample's labels are
        self.schema = schema
        self.near_copy = near_copy
        self._train = [_text(t) for t in train_texts]
        self._accepted: list[_Text] = []

    def remember(self, text: str) -> None:
        """Count ``text`` as accepted (a sample kept by an earlier run): its copies are duplicates."""
        self._accepted.append(_text(text))

    def copy_reason(self, text: str, shown: Sequence[str] = ()) -> str | None:
        """``copy_of_shown``, ``near_copy`` (of a training text), ``duplicate`` (of a sample
        accepted) or None."""
        t = _text(text)
        if any(_copies(t, _text(s), self.near_copy) for s in shown):
            return "copy_of_shown"
        if any(_copies(t, r, self.near_copy) for r in self._train):
            return "near_copy"
        if any(_copies(t, a, self.near_copy) for a in self._accepted):
            return "duplicate"
        return None

    def check(self, obj: Any, shown: Sequence[str] = ()) -> tuple[dict[str, Any] | None, str | None]:
        """``(clean record, None)`` if accepted, else ``(None, reason)``; ``shown``: the
        sentences its prompt showed."""
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not obj["text"].strip():
            return None, "malformed"
        text = obj["text"].strip()
        try:
            labels = check_labels(self.items.key, obj.get(self.items.key), None, None)
            if not all(self.items.well_formed(item) for item in labels):
                raise DataError("a span or type is not a string")
        except (DataError, KeyError, TypeError):
            return None, "malformed"
        copy = self.copy_reason(text, shown)
        if copy:
            return None, copy
        if not labels:
            return None, "no_labels"
        if not all(self.items.labels_ok(item, self.schema) for item in labels):
            return None, "label_not_in_schema"
        if not all(span and span in text for item in labels for span in self.items.spans(item)):
            return None, "span_not_in_text"
        self.remember(text)
        return {"text": text, self.items.key: labels}, None
