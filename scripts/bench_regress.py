"""Full regression run: re-score every committed program on its manifest's dev records.

What `kgopt regress` does, with a table of the figures (recorded and re-scored dev F1, LLM calls,
tokens, seconds per program) for BENCHMARKS.md#regression-run. Uses the configured model (the embedded Qwen by
default) and no response cache, so every answer is really computed. Usage:

    .venv/bin/python scripts/bench_regress.py [compiled/X.json ...] [--tolerance 2]
"""

import argparse
import sys
import time

from loguru import logger

from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import connect
from kgopt.regress import compiled_programs, regress_one


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("programs", nargs="*", help="program files (default: every program in compiled/)")
    ap.add_argument("--tolerance", type=float, default=2.0)
    args = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    conn = connect(resolve_endpoint(), cache=False)
    print(f"model: {conn.model} ({conn.identity}), no response cache\n")
    print("| program | dev records | recorded dev F1 | re-scored dev F1 | verdict | calls | tokens | seconds |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    failed = 0
    for path in compiled_programs(args.programs or None):
        started = time.monotonic()
        with conn.lm.usage.track() as spent:
            r = regress_one(path, conn, tolerance=args.tolerance)
        used = spent.counts()
        failed += not r.passed
        print(
            f"| {path.name} | {r.scores['instances']} | {r.expected:.2f} | {r.got:.2f} | {'ok' if r.passed else 'FAIL'} "
            f"| {used['calls']} | {used['total_tokens']} | {time.monotonic() - started:.0f} |",
            flush=True,
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
