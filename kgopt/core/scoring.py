"""Official-style scoring: the same numbers as IEPile's ``ie2instruction/eval_func.py``.

Input lines are the evaluator's format ``{"id","source","instruction","label","output"}``:
one line per schema chunk, lines of one record grouped by ``source + id``, ``label`` the
JSON string of the record's full gold list in the unified format.

Semantics reproduced from the official evaluator (default, ``mode="official"``):
- each output line is decoded with a bare ``json.loads``; an undecodable or non-object
  output counts one error and contributes no prediction;
- inside an object, a key that is not a string or a value that is not a list is skipped,
  as is an item of the wrong type; strings are compared exactly (case and spaces count);
- predictions are not restricted to the chunk's schema;
- matching is multiset matching: each gold item is matched at most once;
- EE/EEA arguments whose value is ``"NAN"`` are dropped; EE and EEA are scored on events
  ``(type, trigger)`` and arguments ``(type, argument, role)``;
- micro totals; P and R are percentages rounded to 2 decimals and F1 is computed from the
  rounded P and R (and rounded too).

Two upstream defects are fixed here (docs/scoring.md#deviations-from-upstream): EET crashes in the
official script, here it is scored on ``(trigger, type)`` pairs; KG never matches upstream
(its extractor is not implemented), here it is scored on ``(head, relation, tail)``.
Upstream also crashes when an EE event's ``arguments`` is not an object; here that event
counts with no arguments.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from kgopt.core.parsing import parse_answer
from kgopt.core.shapes import json_key, shape_named
from kgopt.core.stats import RecordCount
from kgopt.core.tasks import TaskSpec, get_task, spec_for_chunk

# --- official extraction: raw output line -> (decoded_ok, prediction tuples); the tuples of
# each answer shape are in kgopt.core.shapes ------------------------------------------------


def _decode(raw: Any) -> tuple[bool, Any]:
    if not isinstance(raw, str):
        return False, None
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(obj, dict):
        return False, None
    return True, obj


def extract_official(spec: TaskSpec, raw: Any) -> tuple[bool, list[tuple]]:
    """One output line -> (decoded, prediction tuples), with the official semantics."""
    ok, obj = _decode(raw)
    if not ok:
        return False, []
    return True, shape_named(spec.shape).official(obj)


def extract_lenient(spec: TaskSpec, raw: Any, chunk: list[Any]) -> tuple[bool, list[tuple]]:
    """One output line -> tuples through the lenient parser, validated against the chunk."""
    res = parse_answer(spec, raw, chunk, mode="lenient")
    return res.ok, spec.gold_tuples(res.labels)


# --- the metric ------------------------------------------------------------------------


def _pct(a: float, b: float) -> float:
    return round(a / b * 100, 2) if b else 0.0


def prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p, r = _pct(tp, n_pred), _pct(tp, n_gold)
    f1 = round(2 * p * r / (p + r), 2) if p + r else 0.0
    return {"P": p, "R": r, "F1": f1}


def match_count(gold: list, pred: list) -> int:
    g, p = Counter(json_key(x) for x in gold), Counter(json_key(x) for x in pred)
    return sum(min(c, g[k]) for k, c in p.items())


@dataclass
class Counts:
    """Running counts for one group (the total, or one source)."""

    two_level: bool = False
    instances: int = 0
    errors: int = 0
    tp: int = 0
    n_pred: int = 0
    n_gold: int = 0
    arg_tp: int = 0
    arg_pred: int = 0
    arg_gold: int = 0

    def add(self, gold: list[tuple], pred: list[tuple]) -> None:
        self.instances += 1
        if not self.two_level:
            self.tp += match_count(gold, pred)
            self.n_pred += len(pred)
            self.n_gold += len(gold)
            return
        gold_ev = [(t, trig) for t, trig, _ in gold]
        pred_ev = [(t, trig) for t, trig, _ in pred]
        gold_arg = [(t, a, r) for t, _, args in gold for a, r in args]
        pred_arg = [(t, a, r) for t, _, args in pred for a, r in args]
        self.tp += match_count(gold_ev, pred_ev)
        self.n_pred += len(pred_ev)
        self.n_gold += len(gold_ev)
        self.arg_tp += match_count(gold_arg, pred_arg)
        self.arg_pred += len(pred_arg)
        self.arg_gold += len(gold_arg)

    def scores(self) -> dict[str, Any]:
        if self.two_level:
            return {
                "event": prf(self.tp, self.n_pred, self.n_gold),
                "argument": prf(self.arg_tp, self.arg_pred, self.arg_gold),
            }
        return prf(self.tp, self.n_pred, self.n_gold)

    def absorb(self, other: "Counts") -> None:
        """Add another group's counts (instances and matches; errors are counted by the caller)."""
        for name in ("instances", "tp", "n_pred", "n_gold", "arg_tp", "arg_pred", "arg_gold"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def headline(self) -> tuple[int, int, int]:
        """The counts behind ``headline_f1``: matched, predicted, gold."""
        return (self.arg_tp, self.arg_pred, self.arg_gold) if self.two_level else (self.tp, self.n_pred, self.n_gold)

    def headline_f1(self) -> float:
        """One number to optimise: F1, or for EE/EEA the argument F1."""
        s = self.scores()
        return s["argument"]["F1"] if self.two_level else s["F1"]


@dataclass
class ScoreReport:
    task: str
    total: Counts
    by_source: dict[str, Counts] = field(default_factory=dict)
    ccks: dict[str, float] | None = None
    records: list[RecordCount] = field(default_factory=list)  # per record, for paired intervals (core.stats)

    def to_json(self, with_sources: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task": self.task,
            "instances": self.total.instances,
            "errors": self.total.errors,
            "total": self.total.scores(),
        }
        if with_sources:
            out["by_source"] = {
                s: {"instances": c.instances, "errors": c.errors, "total": c.scores()}
                for s, c in sorted(self.by_source.items())
            }
        if self.ccks is not None:
            out["ccks2023"] = self.ccks
        return out


@dataclass
class PredictionGroup:
    """All output lines of one record (one per schema chunk)."""

    source: str
    gold: list[dict[str, Any]]
    outputs: list[Any] = field(default_factory=list)
    chunks: list[list[Any]] = field(default_factory=list)
    path: str = "<predictions>"  # where its label was read, for errors
    line: int | None = None


def group_lines(lines: Iterable[tuple[int, dict[str, Any]]], path: str = "<predictions>") -> dict[str, PredictionGroup]:
    """Group evaluator lines by ``source + id`` (first line's label wins, as upstream)."""
    from kgopt.errors import DataError

    groups: dict[str, PredictionGroup] = {}
    for lineno, data in lines:
        if not isinstance(data, dict):
            raise DataError("a prediction line must be a JSON object", path, lineno)
        for k in ("id", "label", "output"):
            if k not in data:
                raise DataError(f"missing field {k!r}", path, lineno)
        source = str(data.get("source", "None"))
        key = source + "\x1f" + str(data["id"])
        chunk: list[Any] = []
        instr = data.get("instruction")
        if isinstance(instr, str):
            try:
                chunk = json.loads(instr).get("schema", [])
            except (ValueError, AttributeError, RecursionError):
                raise DataError("field 'instruction' is not a JSON object string (or nests too deeply)", path, lineno) from None
        if key not in groups:
            try:
                gold = json.loads(data["label"]) if isinstance(data["label"], str) else data["label"]
            except (ValueError, RecursionError):
                raise DataError("field 'label' is not valid JSON (or nests too deeply)", path, lineno) from None
            if not isinstance(gold, list):
                raise DataError("field 'label' must be a JSON list of gold items", path, lineno)
            groups[key] = PredictionGroup(source=source, gold=gold, path=path, line=lineno)
        groups[key].outputs.append(data["output"])
        groups[key].chunks.append(chunk if isinstance(chunk, list) else [])
    return groups


def score_groups(task: str, groups: dict[str, PredictionGroup], lenient: bool = False, ccks: bool | None = None) -> ScoreReport:
    """Scores of prediction groups; ``ccks`` (default: the task reports it, i.e. KG) adds CCKS2023."""
    spec = get_task(task)
    ccks = spec.reports_ccks if ccks is None else ccks
    total = Counts(spec.two_level)
    by_source: dict[str, Counts] = {}
    ccks_pairs: list[tuple[list[tuple], list[tuple]]] = []
    records: list[RecordCount] = []
    for key, group in groups.items():
        src = by_source.setdefault(group.source, Counts(spec.two_level))
        preds: list[tuple] = []
        for raw, chunk in zip(group.outputs, group.chunks):
            asked = spec_for_chunk(spec, chunk)  # the answer format the chunk was asked in (KG has two)
            ok, tuples = extract_lenient(asked, raw, chunk) if lenient else extract_official(asked, raw)
            if not ok:
                total.errors += 1
                src.errors += 1
            preds.extend(tuples)
        try:
            gold = spec.gold_tuples(group.gold)
        except (KeyError, TypeError, AttributeError) as exc:
            from kgopt.errors import DataError

            what = f"lacks a field: {exc}" if isinstance(exc, KeyError) else f"is mistyped ({type(exc).__name__}: {str(exc)[:80]})"
            raise DataError(f"gold label of record {group.source}/{group.gold!r:.60} {what}", group.path, group.line) from None
        one = Counts(spec.two_level)  # the record's own counts: matched once, summed into the totals
        one.add(gold, preds)
        total.absorb(one)
        src.absorb(one)
        records.append(RecordCount(key.replace("\x1f", "/", 1), *one.headline()))
        if ccks:
            ccks_pairs.append((gold, preds))
    report = ScoreReport(spec.name, total, by_source, records=records)
    if ccks:
        report.ccks = ccks2023_score(ccks_pairs)
    return report


# --- CCKS2023 instruction-driven KG construction score -----------------------------------


def _triple_text(triples: list[tuple]) -> str:
    return "\n".join(f"({h},{r},{t})" for h, r, t in sorted(set(map(lambda x: tuple(map(str, x)), triples))))


def _tokens(text: str) -> list[str]:
    import jieba  # lazily: loading its dictionary takes a second

    return [t for t in jieba.lcut(text) if t.strip()]


def _rouge2(pred: list[str], gold: list[str]) -> float:
    pb = Counter(zip(pred, pred[1:]))
    gb = Counter(zip(gold, gold[1:]))
    if not pb or not gb:
        return 1.0 if not pb and not gb else 0.0
    overlap = sum((pb & gb).values())
    p, r = overlap / sum(pb.values()), overlap / sum(gb.values())
    return 2 * p * r / (p + r) if p + r else 0.0


def ccks2023_score(pairs: list[tuple[list[tuple], list[tuple]]]) -> dict[str, float]:
    """CCKS2023 InstructIE-style score: triple F1, Rouge-2 (jieba tokens) and their mean.

    F1 is micro over de-duplicated (head, relation, tail) triples; Rouge-2 is the F-measure
    of word bigrams between the predicted and gold triple lists rendered as
    ``(head,relation,tail)`` lines, averaged over records. All three are percentages.
    """
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    tp = n_pred = n_gold = 0
    rouge_sum = 0.0
    for gold, pred in pairs:
        g, p = set(map(json_key, gold)), set(map(json_key, pred))
        tp += len(g & p)
        n_pred += len(p)
        n_gold += len(g)
        rouge_sum += _rouge2(_tokens(_triple_text(pred)), _tokens(_triple_text(gold)))
    prec = tp / n_pred if n_pred else 0.0
    rec = tp / n_gold if n_gold else 0.0
    f1 = 2 * prec * rec / (prec + rec) * 100 if prec + rec else 0.0
    rouge = rouge_sum / len(pairs) * 100 if pairs else 0.0
    return {"F1": round(f1, 2), "rouge2": round(rouge, 2), "score": round((f1 + rouge) / 2, 2)}
