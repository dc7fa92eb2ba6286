"""Run a program over a dataset split, write evaluator-format predictions, score them.

The prediction file is exactly the IEPile evaluator's input (``id, source, instruction,
label, output`` per schema chunk, plus kgopt's ``status``/``error``, which it ignores), so
the official script can re-score it. Each LLM failure is recorded on its line, not fatal.
Lines are appended to ``predictions.partial.jsonl`` as they arrive, so a crash keeps what
was done; the final ``predictions.jsonl`` is written atomically in dataset order.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
from loguru import logger
from tqdm import tqdm

from kgopt.clients.lm import Connection, UsageSpan, as_connection
from kgopt.core.parsing import ERROR
from kgopt.core.scoring import ScoreReport, group_lines, score_groups
from kgopt.data.jsonio import dumps, iter_json, write_jsonl
from kgopt.data.readers import AskedRecord, load_examples
from kgopt.errors import BudgetExceeded
from kgopt.program import IEProgram, load_program


@dataclass
class Evaluation:
    report: ScoreReport
    out_dir: Path
    predictions: Path
    usage: dict[str, int]
    failed_calls: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            **self.report.to_json(with_sources=True),
            "predictions": str(self.predictions),
            "llm": {**self.usage, "failed_calls": self.failed_calls},
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
        ex = examples[i]
        try:
            pred = program(text=ex.record.text, schema=ex.schema, record=ex.record)
            return i, prediction_lines(program, ex, pred)
        except BudgetExceeded:
            raise
        except Exception as exc:  # a bug or a bad record must not lose the others
            logger.warning("record {}/{} failed: {}: {}", ex.record.source, ex.record.id, type(exc).__name__, exc)
            return i, prediction_lines(program, ex, None, f"{type(exc).__name__}: {exc}")

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
    split: str = "test",
    source: str | None = None,
    limit: int | None = None,
    data_dir: str | Path | None = None,
    program: IEProgram | str | Path | None = None,
    threads: int = 1,
    out_dir: str | Path | None = None,
) -> Evaluation:
    """Score a program (the zero-shot baseline by default) on one split; see module doc."""
    started = time.monotonic()
    connection = as_connection(connection)
    if program is None:
        program = IEProgram(task, lang)
    elif not isinstance(program, IEProgram):
        program, _ = load_program(program, task=task, lang=lang)
    examples = load_examples(task, lang, split, data_dir=data_dir, source=source, limit=limit)
    if out_dir is None:
        out_dir = Path("runs") / "evaluate" / f"{program.task}_{lang}_{split}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / "predictions.partial.jsonl"
    partial.unlink(missing_ok=True)
    logger.info("evaluating {} {} on {} {} records ({})", program.task, lang, len(examples), split, source or "all sources")
    with connection.lm.usage.track() as spent:
        per_example = run_program(program, examples, connection, threads, partial, desc=f"{program.task}/{lang} {split}")
    lines = [l for ls in per_example for l in ls]
    pred_path = out_dir / "predictions.jsonl"
    write_jsonl(pred_path, lines)
    partial.unlink(missing_ok=True)
    groups = group_lines(enumerate(lines, 1), str(pred_path))
    report = score_groups(program.task, groups)
    usage = spent.counts()
    failed = sum(1 for l in lines if l["status"] == ERROR)
    ev = Evaluation(report, out_dir, pred_path, usage, failed, time.monotonic() - started)
    (out_dir / "scores.json").write_text(dumps(ev.to_json(), indent=2) + "\n", encoding="utf-8")
    if failed:
        logger.warning("{} of {} LLM calls failed; they are recorded in {} with their errors", failed, len(lines), pred_path)
    return ev


def score_file(task: str, path: str | Path, lenient: bool = False) -> ScoreReport:
    """``kgopt score``: the official-style numbers for an evaluator-format prediction file."""
    groups = group_lines(iter_json(path), str(path))
    return score_groups(task, groups, lenient=lenient)
