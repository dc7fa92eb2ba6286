"""Benchmark: run-to-run spread. The same program twice on the same records, no response cache.

A paired bootstrap over records sees which records a program gets right, not that the server
may answer the same request differently another time (llama.cpp's results depend on how a
prompt was batched and on what its KV cache held). This script measures that: for each case it
evaluates the program twice with the cache off, and prints each run's F1, how many records'
counts differ between the runs, and the second run minus the first with its paired 95% interval
(on a deterministic server: 0 records and [+0.00, +0.00]). Rows go to
runs/bench-spread/results.jsonl, per-record counts to benchmarks/counts/spread-*.jsonl. Usage:

    .venv/bin/python scripts/bench_spread.py NER:zh:WeiboNER:40 --program compiled/NER_zh.json

where each case is TASK:LANG:SOURCE:LIMIT (SOURCE "all": every source; LIMIT per source or "all").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loguru import logger

from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import connect
from kgopt.core.stats import paired_bootstrap
from kgopt.data.jsonio import dumps
from kgopt.evaluation import evaluate

OUT = Path("runs/bench-spread")
COUNTS = Path("benchmarks/counts")


def run_case(case: str, program: str, conn) -> dict:
    task, lang, source, limit = case.split(":")
    source = None if source in ("", "all") else source
    limit = None if limit == "all" else int(limit)
    name = f"spread-{task}_{lang}" + (f"_{source}" if source else "")
    runs = [evaluate(task, lang, conn, split="test", source=source, limit=limit, program=program, out_dir=OUT / name / f"run{i}") for i in (1, 2)]
    a, b = (r.report.records for r in runs)
    differ = sum((x.tp, x.pred, x.gold) != (y.tp, y.pred, y.gold) for x, y in zip(sorted(a, key=lambda c: c.key), sorted(b, key=lambda c: c.key)))
    d = paired_bootstrap(a, b)
    COUNTS.mkdir(parents=True, exist_ok=True)
    with open(COUNTS / f"{name}.jsonl", "w", encoding="utf-8") as fh:
        for i, counts in ((1, a), (2, b)):
            fh.write("".join(dumps({"run": f"run{i}", "record": c.key, "tp": c.tp, "pred": c.pred, "gold": c.gold}) + "\n" for c in counts))
    row = {"case": case, "program": program, "n": d.n, "f1": [r.report.total.headline_f1() for r in runs], "records_differing": differ,
           "difference": d.to_json(), "failed_calls": sum(r.failed_calls for r in runs), "model": conn.model}
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(dumps(row) + "\n")
    print(f"| {case} | {program} | {d.n} | {row['f1'][0]:.2f} | {row['f1'][1]:.2f} | {differ} | {d.delta:+.2f} [{d.low:+.2f}, {d.high:+.2f}] |", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+", help="TASK:LANG:SOURCE:LIMIT")
    ap.add_argument("--program", required=True, help="a saved program file")
    args = ap.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    conn = connect(resolve_endpoint(), cache=False)
    print(f"model: {conn.model} ({conn.identity}), no response cache\n")
    print("| case | program | n | run 1 F1 | run 2 F1 | records differing | run 2 - run 1 [95% CI] |")
    print("|---|---|---:|---:|---:|---:|---:|")
    rows = [run_case(c, args.program, conn) for c in args.cases]
    return 1 if any(r["failed_calls"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
