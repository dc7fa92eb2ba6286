"""Zero-shot baseline of every task on the bundled test data, as a markdown table.

Runs `kgopt.evaluation` in one process (one embedded server for all tasks when no endpoint is
configured) on the first N test records of each source. Usage:
    .venv/bin/python scripts/baseline_report.py [N] [--split test]
"""

import argparse
import sys

from loguru import logger

from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import connect
from kgopt.evaluation import evaluate

CASES = ["NER:en", "NER:zh", "RE:en", "RE:zh", "EE:en", "EE:zh", "EET:en", "EET:zh", "EEA:en", "EEA:zh", "KG:en", "KG:zh"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("n", type=int, nargs="?", default=10, help="records per source")
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=512)
    args = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    conn = connect(resolve_endpoint(), max_tokens=args.max_tokens)
    print(f"model: {conn.model} ({conn.identity.split('|')[0]}), split {args.split}, first {args.n} records per source, max_tokens {args.max_tokens}\n")
    print("| task | lang | records | errors | P | R | F1 | LLM calls | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in CASES:
        task, lang = case.split(":")
        ev = evaluate(task, lang, conn, split=args.split, limit=args.n, threads=args.threads,
                      out_dir=f"runs/baseline-report/{task}_{lang}")
        d = ev.to_json()
        s = d["total"].get("argument", d["total"])
        calls = d["llm"]["calls"] + d["llm"]["cache_hits"]
        print(f"| {task} | {lang} | {d['instances']} | {d['errors']} | {s['P']:.2f} | {s['R']:.2f} | {s['F1']:.2f} | {calls} | {d['seconds']} |", flush=True)


if __name__ == "__main__":
    main()
