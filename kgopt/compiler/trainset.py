"""Training data for the optimisers: one DSPy example per (record, schema chunk).

An optimiser sees what the predictor sees, a text and one schema chunk, with the gold
answer OneKE was trained to give for that chunk. Only chunks with at least one gold label
are kept by default: a demonstration that answers "nothing here" teaches little and would
crowd out the ones that show extraction.
"""

from __future__ import annotations

from typing import Any

import dspy
import ujson

from kgopt.core.scoring import extract_official, match_count, prf
from kgopt.core.tasks import TaskSpec
from kgopt.data.readers import AskedRecord


def chunk_examples(spec: TaskSpec, examples: list[AskedRecord], split_size: int, positive_only: bool = True) -> list[dspy.Example]:
    out = []
    for ex in examples:
        for chunk in spec.chunks(ex.schema, ex.record, split_size):
            answer = spec.gold_answer(ex.record, chunk)
            if positive_only and not any(answer.values()):
                continue
            out.append(
                dspy.Example(
                    text=ex.record.text,
                    chunk=chunk,
                    answer=ujson.dumps(answer, ensure_ascii=False),
                    source=ex.record.source,
                    record_id=ex.record.id,
                ).with_inputs("text", "chunk")
            )
    return out


def chunk_f1(spec: TaskSpec, gold_answer: str, raw_output: str) -> float:
    """F1 (0..1) of one chunk's answer, with the official extractor (unparsable = 0)."""
    _, gold = extract_official(spec, gold_answer)
    ok, pred = extract_official(spec, raw_output)
    if not ok:
        return 0.0
    if not gold and not pred:
        return 1.0
    return prf(match_count(gold, pred), len(pred), len(gold))["F1"] / 100.0


def raw_output(pred: Any) -> str:
    calls = getattr(pred, "calls", None) or []
    return calls[0]["output"] if calls else ""


def make_metric(spec: TaskSpec):
    """A DSPy metric over chunk examples: F1 in [0, 1]; Bootstrap keeps demos that score > 0."""

    def metric(example, pred, trace=None, *_args, **_kwargs) -> float:
        return chunk_f1(spec, example.answer, raw_output(pred))

    return metric


def make_feedback_metric(spec: TaskSpec):
    """GEPA's metric: the same score plus a textual feedback naming what was missed."""

    def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        out = raw_output(pred)
        score = chunk_f1(spec, gold.answer, out)
        ok, _ = extract_official(spec, out)
        if not ok:
            feedback = "The answer was not valid JSON. Answer with one JSON object keyed by the schema labels."
        elif score < 1.0:
            feedback = f"Expected answer: {gold.answer}. Copy spans exactly from the input; leave absent labels empty."
        else:
            feedback = "Correct."
        return dspy.Prediction(score=score, feedback=feedback)

    return metric
