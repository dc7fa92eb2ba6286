"""Benchmark: the augmentation yield (asked, received, accepted, rejected by reason) per task.

Runs `kgopt augment` on the configured endpoint (else the embedded Qwen) for each task/language
and seed, without the response cache (every sample is a fresh model answer), into a scratch
folder, and prints one row per task: what was asked, what came back, what the checker accepted,
why the rest was rejected, and the accepted samples per LLM call (what augmentation costs in a
call budget).

    .venv/bin/python scripts/bench_augment.py --tasks NER:en,RE:zh,EE:zh --per-label 2 --max-labels 7 --seeds 2
    .venv/bin/python scripts/bench_augment.py --tasks NER:en --json

Every run is appended to runs/bench-augment/runs.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import ujson
from loguru import logger

from kgopt.augmentation import augment
from kgopt.augmentation.generate import PROMPT_VERSIONS
from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import connect
from kgopt.core.tasks import get_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_optimizers import SOURCES  # noqa: E402  (the same source per task as the equal-budget benchmark)

OUT = Path("runs/bench-augment")


def run_case(task: str, lang: str, seed: int, args, conn) -> dict[str, Any]:
    spec = get_task(task)
    source = args.source or (None if spec.asks_topics else SOURCES.get(f"{spec.name}/{lang}"))
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as out:
        rep = augment(spec.name, lang, conn, source=source, per_label=args.per_label, max_labels=args.max_labels, seed=seed,
                      data_dir=args.data_dir, out_dir=out, show=args.show).to_json()  # fmt: skip
    row = {k: rep[k] for k in ("task", "lang", "seed", "asked", "received", "accepted", "rejected", "missing", "failed_calls", "retried_calls", "prompt_version", "show")}
    row.update(source=source, calls=rep["llm"]["calls"], tokens=rep["llm"]["total_tokens"], seconds=round(time.monotonic() - started, 1), tag=args.tag)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "runs.jsonl", "a", encoding="utf-8") as fh:
        fh.write(ujson.dumps(row, ensure_ascii=False) + "\n")
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts summed over seeds, and the accepted samples per call."""
    out: dict[str, Any] = {k: sum(r[k] for r in rows) for k in ("asked", "received", "accepted", "missing", "calls", "tokens")}
    out["rejected"] = dict(sum((Counter(r["rejected"]) for r in rows), Counter()))
    out["accepted_per_call"] = round(out["accepted"] / out["calls"], 2) if out["calls"] else 0.0
    out["seeds"] = len(rows)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="NER:en,RE:zh,EE:zh", help="TASK:LANG,... (default: %(default)s)")
    ap.add_argument("--per-label", type=int, default=2, help="samples asked per label (default: %(default)s)")
    ap.add_argument("--max-labels", type=int, default=7, help="labels asked per source or topic (default: %(default)s)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per task (default: %(default)s)")
    ap.add_argument("--source", default=None, help="one source (or InstructIE topic) for every task; default: the benchmark's")
    ap.add_argument("--data-dir", type=Path, default=None, help="data root; default: the bundled data")
    ap.add_argument("--show", choices=tuple(PROMPT_VERSIONS), default=None, help="how the real samples are shown (kgopt augment --show; default: each language's, annotations for zh, sentences for en)")
    ap.add_argument("--tag", default=time.strftime("%Y%m%d-%H%M%S"), help="labels this run's rows in runs.jsonl (default: now)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    conn = connect(resolve_endpoint(), cache=False)
    results = {}
    for item in (s.strip() for s in args.tasks.split(",") if s.strip()):
        task, _, lang = item.partition(":")
        rows = [run_case(task, lang, seed, args, conn) for seed in range(args.seeds)]
        results[f"{get_task(task).name}/{lang}"] = summarise(rows)
    if args.json:
        print(ujson.dumps(results, ensure_ascii=False))
        return 0
    print(f"| task | asked | received | accepted | accepted per call | rejected | calls | seeds (per label {args.per_label}, labels {args.max_labels}, show {args.show or 'per language'}) |")
    print("|---|---|---|---|---|---|---|---|")
    for key, s in results.items():
        rejected = ", ".join(f"{k} {v}" for k, v in s["rejected"].items() if v) or "none"
        print(f"| {key} | {s['asked']} | {s['received']} | {s['accepted']} | {s['accepted_per_call']} | {rejected} | {s['calls']} | {s['seeds']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
