"""Is a generated sample good enough to train on? Pure checks, one reason per rejection.

Model output is untrusted: a sample is kept only if it is a well-formed record of the
task's unified format, uses only labels of the schema, every span (entity, head, tail,
trigger, argument) is an exact substring of its own text, its text is not a near-copy of
a training text, and it is not a duplicate of a sample already kept.
"""

from __future__ import annotations

from typing import Any

from kgopt.core.demos import features, jaccard
from kgopt.core.schema import Schema
from kgopt.core.shapes import shape_named
from kgopt.core.tasks import TaskSpec
from kgopt.data.readers import check_labels
from kgopt.errors import DataError

NEAR_COPY = 0.8  # unigram+bigram Jaccard with a training text at or above this: a copy

REASONS = ("malformed", "no_labels", "label_not_in_schema", "span_not_in_text", "near_copy", "duplicate")


class SampleChecker:
    """Checks samples against a schema and the training texts; remembers what it accepted."""

    def __init__(self, spec: TaskSpec, schema: Schema, train_texts: list[str], near_copy: float = NEAR_COPY):
        self.spec = spec
        self.items = shape_named(spec.shape).record  # what a sample's labels are
        self.schema = schema
        self.near_copy = near_copy
        self._train = [features(t) for t in train_texts]
        self._accepted: list[frozenset[str]] = []
        self._seen: set[str] = set()

    def check(self, obj: Any) -> tuple[dict[str, Any] | None, str | None]:
        """``(clean record, None)`` if accepted, else ``(None, reason)``."""
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not obj["text"].strip():
            return None, "malformed"
        text = obj["text"].strip()
        try:
            labels = check_labels(self.items.key, obj.get(self.items.key), None, None)
            if not all(self.items.well_formed(item) for item in labels):
                raise DataError("a span or type is not a string")
        except (DataError, KeyError, TypeError):
            return None, "malformed"
        if not labels:
            return None, "no_labels"
        if not all(self.items.labels_ok(item, self.schema) for item in labels):
            return None, "label_not_in_schema"
        if not all(span and span in text for item in labels for span in self.items.spans(item)):
            return None, "span_not_in_text"
        key = " ".join(text.split()).lower()
        f = features(text)
        if key in self._seen or any(jaccard(f, a) >= self.near_copy for a in self._accepted):
            return None, "duplicate"
        if any(jaccard(f, t) >= self.near_copy for t in self._train):
            return None, "near_copy"
        self._seen.add(key)
        self._accepted.append(f)
        return {"text": text, self.items.key: labels}, None
