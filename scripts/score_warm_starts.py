"""Score each study's first warm start (its trial 0: 3 similar demonstrations, default split,
plain JSON) on held-out test records, each in a fresh response-cache namespace.

What the compiler's tie rule writes when no trial beats zero-shot on dev; used to measure that
rule on the studies of scripts/bench_optimizers.py. Trial 0's program is the one the study saved
in runs/compile/<study>/trial-0.json.

    .venv/bin/python scripts/score_warm_starts.py NER_en_kgopt_augmented_s0_ner-b30-2 --task NER --lang en --source CrossNER_AI --test 6
"""

import argparse
import sys
from pathlib import Path

import ujson

from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import connect
from kgopt.evaluation import evaluate
from kgopt.program import load_program


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("studies", nargs="+", help="study names (their trials are in runs/compile/<study>/)")
    ap.add_argument("--task", required=True)
    ap.add_argument("--lang", required=True)
    ap.add_argument("--source", default=None)
    ap.add_argument("--test", type=int, default=6, help="test records per source (default: %(default)s)")
    args = ap.parse_args(argv)
    for study in args.studies:
        program, saved = load_program(Path("runs/compile") / study / "trial-0.json", task=args.task, lang=args.lang)
        conn = connect(resolve_endpoint(), cache_namespace=f"bench-optimizers/warm-start/{study}")
        with conn.lm.usage.track() as used:
            ev = evaluate(args.task, args.lang, conn, split="test", source=args.source, limit=args.test, program=program,
                          out_dir=Path("runs/bench-optimizers/warm-start") / study)
        row = {"study": study, "trial": saved.get("trial"), "params": saved.get("params"), "test_f1": ev.report.total.headline_f1(),
               "calls": used.counts()["calls"]}
        print(ujson.dumps(row, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
