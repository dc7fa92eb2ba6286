"""Run a program over a dataset split, write evaluator-format predictions, score them.

The prediction file is exactly the IEPile evaluator's input (``id, source, instruction,
label, output`` per schema chunk, plus kgopt's ``status``/``error``, which it ignores), so
the official script can re-score it. Each LLM failure is recorded on its line, not fatal.
Lines are appended to ``predictions.partial.jsonl`` as they arrive, so a crash keeps what
was done; the final ``predictions.jsonl`` and ``scores.json`` are written atomically. A re-run
writes its partial lines beside the old partial file and replaces it only once it has records
of its own, so an interrupted re-run never loses what the previous run left.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import dspy
from loguru import logger
from tqdm import tqdm

from kgopt.clients.lm import Connection, UsageSpan, as_connection
from kgopt.core.parsing import ERROR
from kgopt.core.scoring import ScoreReport, group_lines, score_groups
from kgopt.core.stats import PairedDifference, paired_bootstrap
from kgopt.data.jsonio import dumps, iter_json, write_atomic, write_jsonl
from kgopt.data.readers import AskedRecord, load_examples
from kgopt.errors import DataError, check_failures
from kgopt.program import IEProgram, ProgramSettings, load_program


@dataclass
class Evaluation:
    report: ScoreReport
    out_dir: Path
    predictions: Path
    usage: dict[str, int]
    failed_calls: int
    seconds: float
    calls: int = 0  # schema-chunk calls asked (failed ones included)

    def check_failures(self, max_failures: int | None) -> None:
        """Raise ``CallsFailed`` if more than ``max_failures`` calls failed (these scores would measure the outage)."""
        check_failures(self.failed_calls, self.calls, max_failures, f"{self.report.task} on {self.out_dir}")

    def to_json(self) -> dict[str, Any]:
        return {
            **self.report.to_json(with_sources=True),
            "predictions": str(self.predictions),
            "llm": {**self.usage, "failed_calls": self.failed_calls, "calls_asked": self.calls},
            "seconds": round(self.seconds, 1),
        }


def prediction_lines(program: IEProgram, ex: AskedRecord, pred: dspy.Prediction | None, error: str | None = None) -> list[dict[str, Any]]:
    """Evaluator-format lines for one record: one per schema chunk."""
    rec = ex.record
    label = json.dumps(rec.labels, ensure_ascii=False)
    calls = pred.calls if pred is not None else [
        {"schema": c, "output": "", "status": ERROR, "error": error} for c in program.chunks(ex.schema, rec)
    ]
    lines = []
    for call in calls:
        instr = program.spec.instruction(program.lang, call["schema"], rec.text, template=program.instruction)
        lines.append(
            {
                "id": rec.id,
                "source": rec.source,
                "instruction": json.dumps(instr, ensure_ascii=False),
                "label": label,
                "output": call["output"],
                "status": call["status"],
                **({"error": call["error"]} if call.get("error") else {}),
            }
        )
    return lines


def run_program(
    program: IEProgram,
    examples: list[AskedRecord],
    connection: Connection,
    threads: int = 1,
    partial_path: Path | None = None,
    desc: str = "extract",
) -> list[list[dict[str, Any]]]:
    """Run ``program`` on every example with ``threads`` workers; lines per example, in order."""
    program.set_lm(connection.lm)
    spent = UsageSpan(connection.lm.usage)  # this run's calls, for the bar
    results: list[list[dict[str, Any]] | None] = [None] * len(examples)
    partial = open(partial_path, "a", encoding="utf-8") if partial_path else None

    def one(i: int) -> tuple[int, list[dict[str, Any]]]:
        # Endpoint failures are recorded per call inside the program; anything raised here is
        # a bug or a bad program, and stops the run (finished records stay in the partial file).
        ex = examples[i]
        pred = program(text=ex.record.text, schema=ex.schema, record=ex.record)
        return i, prediction_lines(program, ex, pred)

    pool = ThreadPoolExecutor(max_workers=max(1, threads))
    try:
        with tqdm(total=len(examples), desc=desc, unit="rec", dynamic_ncols=True) as bar:
            futures = [pool.submit(one, i) for i in range(len(examples))]
            for fut in as_completed(futures):
                i, lines = fut.result()
                results[i] = lines
                if partial:
                    partial.write("".join(dumps(l) + "\n" for l in lines))
                    partial.flush()
                u = spent.counts()
                bar.set_postfix(calls=u["calls"], cached=u["cache_hits"], tokens=u["total_tokens"], refresh=False)
                bar.update(1)
    except BaseException:
        # Ctrl-C: drop the queued records now; the calls in flight finish, nothing more starts.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if partial:
            partial.close()
    pool.shutdown()
    return [r or [] for r in results]


def evaluate(
    task: str,
    lang: str,
    connection: Connection | None = None,
    *,  # the rest by name: a reordering can never silently misassign them
    split: str = "test",
    source: str | None = None,
    limit: int | None = None,
    data_dir: str | Path | None = None,
    program: IEProgram | str | Path | None = None,
    threads: int = 1,
    out_dir: str | Path | None = None,
    skip: int = 0,
) -> Evaluation:
    """Score a program (the zero-shot baseline by default) on one split; see module doc."""
    started = time.monotonic()
    connection = as_connection(connection)
    if program is None:
        program = IEProgram(task, lang)
    elif not isinstance(program, IEProgram):
        program, _ = load_program(program, task=task, lang=lang)
    examples = load_examples(task, lang, split, data_dir=data_dir, source=source, limit=limit, skip=skip)
    if out_dir is None:
        out_dir = Path("runs") / "evaluate" / f"{program.task}_{lang}_{split}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial, fresh = out_dir / "predictions.partial.jsonl", out_dir / "predictions.partial.jsonl.new"
    fresh.unlink(missing_ok=True)
    logger.info("evaluating {} {} on {} {} records ({})", program.task, lang, len(examples), split, source or "all sources")
    try:
        with connection.lm.usage.track() as spent:
            per_example = run_program(program, examples, connection, threads, fresh, desc=f"{program.task}/{lang} {split}")
    except BaseException:
        _keep_partial(fresh, partial)
        raise
    lines = [l for ls in per_example for l in ls]
    pred_path = out_dir / "predictions.jsonl"
    write_jsonl(pred_path, lines)
    fresh.unlink(missing_ok=True)
    partial.unlink(missing_ok=True)
    groups = group_lines(enumerate(lines, 1), str(pred_path))
    report = score_groups(program.task, groups)
    usage = spent.counts()
    failed = sum(1 for l in lines if l["status"] == ERROR)
    ev = Evaluation(report, out_dir, pred_path, usage, failed, time.monotonic() - started, calls=len(lines))
    write_atomic(out_dir / "scores.json", lambda fh: fh.write(dumps(ev.to_json(), indent=2) + "\n"))
    if failed:
        logger.warning("{} of {} LLM calls failed; they are recorded in {} with their errors", failed, len(lines), pred_path)
    return ev


def _keep_partial(fresh: Path, partial: Path) -> None:
    """An interrupted run: its partial lines replace the old partial file only if it has any
    (with no old file, even an empty one becomes the partial file the CLI points to)."""
    if fresh.is_file() and (fresh.stat().st_size > 0 or not partial.exists()):
        fresh.replace(partial)
    else:
        fresh.unlink(missing_ok=True)


ZERO_SHOT_WAYS = ("strict", "lenient", "constrained")


def strongest_way(f1s: dict[str, float]) -> str:
    """The zero-shot way with the highest F1 in ``f1s`` (the first of ``ZERO_SHOT_WAYS`` on a tie)."""
    return max(ZERO_SHOT_WAYS, key=lambda k: (f1s[k], -ZERO_SHOT_WAYS.index(k)))


@dataclass
class ZeroShotComparison:
    """A program against the strongest of three zero-shot baselines on the same records.

    strict: the official parse of plain zero-shot answers; lenient: the same answers parsed
    leniently (repaired JSON, validated per chunk); constrained: zero-shot asked with the
    chunk's answer schema enforced by the server (``output="json"``), parsed officially.
    """

    program: Evaluation
    zero_shot: Evaluation
    lenient: ScoreReport
    constrained: Evaluation
    out_dir: Path

    @property
    def reports(self) -> dict[str, ScoreReport]:
        return {"strict": self.zero_shot.report, "lenient": self.lenient, "constrained": self.constrained.report}

    @property
    def strongest(self) -> str:
        """The zero-shot way with the highest headline F1 (the first of ``ZERO_SHOT_WAYS`` on a tie)."""
        return strongest_way({k: r.total.headline_f1() for k, r in self.reports.items()})

    @cached_property
    def difference(self) -> PairedDifference:
        """The program's F1 minus the strongest baseline's, paired over records."""
        return paired_bootstrap(self.reports[self.strongest].records, self.program.report.records)

    def to_json(self) -> dict[str, Any]:
        return {
            "zero_shot_f1": {k: r.total.headline_f1() for k, r in self.reports.items()},
            "strongest": self.strongest,
            "program_f1": self.program.report.total.headline_f1(),
            "difference": self.difference.to_json(),
            "program": self.program.to_json(),
            "zero_shot": self.zero_shot.to_json(),
            "zero_shot_lenient": self.lenient.to_json(with_sources=True),
            "zero_shot_constrained": self.constrained.to_json(),
        }


def compare_with_zero_shot(
    task: str,
    lang: str,
    connection: Connection | None,
    program: IEProgram | str | Path,
    *,
    split: str = "test",
    source: str | None = None,
    limit: int | None = None,
    data_dir: str | Path | None = None,
    threads: int = 1,
    out_dir: str | Path | None = None,
    skip: int = 0,
) -> ZeroShotComparison:
    """``kgopt evaluate --vs-zero-shot``: the three zero-shot baselines and ``program`` on the same
    records; ``out_dir/scores.json`` holds the comparison, each run its own folder below it."""
    connection = as_connection(connection)
    out = Path(out_dir) if out_dir else Path("runs") / "evaluate" / f"{task}_{lang}_{split}-vs-zero-shot-{time.strftime('%Y%m%d-%H%M%S')}"
    kw = dict(split=split, source=source, limit=limit, skip=skip, data_dir=data_dir, threads=threads)
    plain = evaluate(task, lang, connection, program=None, out_dir=out / "zero-shot", **kw)
    lenient = score_file(task, plain.predictions, lenient=True)
    constrained = IEProgram(task, lang, settings=ProgramSettings(output="json"))
    constrained_ev = evaluate(task, lang, connection, program=constrained, out_dir=out / "zero-shot-constrained", **kw)
    program_ev = evaluate(task, lang, connection, program=program, out_dir=out / "program", **kw)
    cmp = ZeroShotComparison(program_ev, plain, lenient, constrained_ev, out)
    write_atomic(out / "scores.json", lambda fh: fh.write(dumps(cmp.to_json(), indent=2) + "\n"))
    return cmp


def score_file(task: str, path: str | Path, lenient: bool = False) -> ScoreReport:
    """``kgopt score``: the official-style numbers for an evaluator-format prediction file."""
    groups = group_lines(iter_json(path), str(path))
    return score_groups(task, groups, lenient=lenient)


def compare_files(task: str, path: str | Path, other: str | Path, lenient: bool = False) -> PairedDifference:
    """``kgopt score --vs``: F1 of ``path``'s predictions minus F1 of ``other``'s, paired over the
    records both files hold (two programs run on the same records, e.g. by ``kgopt evaluate``)."""
    mine, theirs = score_file(task, path, lenient=lenient), score_file(task, other, lenient=lenient)
    keys, other_keys = {r.key for r in mine.records}, {r.key for r in theirs.records}
    if not keys:
        raise DataError("no records to compare", str(path))
    if keys != other_keys:
        raise DataError(f"not the records of {other}: records only here {_some(keys - other_keys)}, only there {_some(other_keys - keys)}", str(path))
    return paired_bootstrap(theirs.records, mine.records)


def _some(keys: set[str]) -> str:
    return f"{len(keys)} (e.g. {', '.join(sorted(keys)[:3])})" if keys else "none"
