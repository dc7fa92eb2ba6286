"""Benchmark: compile and evaluate on the configured model (the embedded one by default).

For each task/language: runs (or resumes) `kgopt compile` into compiled/, then scores the
zero-shot baseline and the compiled program on the same test records, and prints one
markdown row: zero-shot test F1, compiled test F1, dev F1s from the manifest, LLM calls
and tokens (this run, and the whole study as recorded in its trials), wall time.
A study that already has its trials only rewrites its program (no new trials, few calls):
the study columns then carry the cost of making it. Usage:

    .venv/bin/python scripts/bench_compile.py NER:en:4:4 EE:zh:6:6 RE:zh:4:4 --trials 3

where each case is TASK:LANG:DEV_LIMIT:TEST_LIMIT[:TEST_SOURCE] (records per source; TEST_SOURCE
scores the test split of one source only, e.g. the one the program was compiled on). Extra compile
flags: --trials, --max-demos, --train-limit. F1 is the headline figure (EE: argument F1).
"""

import argparse
import sys
import time

import optuna
from loguru import logger

from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import connect
from kgopt.compiler import compile_program
from kgopt.evaluate import evaluate
from kgopt.program import IEProgram


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", help="TASK:LANG:DEV_LIMIT:TEST_LIMIT[:TEST_SOURCE]")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--max-demos", type=int, default=2)
    ap.add_argument("--train-limit", type=int, default=40)
    args = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    conn = connect(resolve_endpoint())
    print(f"model: {conn.model} ({conn.identity})\n")
    print("| task | lang | test records | zero-shot test F1 | compiled test F1 | zero-shot dev F1 | compiled dev F1 | chosen | study trials | study LLM calls | study tokens | study seconds | this run: calls | tokens | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in args.cases:
        task, lang, dev_limit, test_limit, *rest = case.split(":")
        test_source = rest[0] if rest else None
        started, before = time.monotonic(), conn.lm.usage.snapshot()
        res = compile_program(task, lang, conn, trials=args.trials, dev_limit=int(dev_limit), train_limit=args.train_limit, max_demos=args.max_demos)
        m = res.manifest
        base = evaluate(task, lang, conn, split="test", limit=int(test_limit), source=test_source, program=IEProgram(task, lang), out_dir=f"runs/bench-compile/{task}_{lang}_zero-shot")
        comp = evaluate(task, lang, conn, split="test", limit=int(test_limit), source=test_source, program=res.path, out_dir=f"runs/bench-compile/{task}_{lang}_compiled")
        after = conn.lm.usage.snapshot()
        study = optuna.load_study(study_name=res.study_name, storage=res.storage)
        done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
        s_calls = sum(t.user_attrs.get("llm_calls", 0) for t in done)
        s_tokens = sum(t.user_attrs.get("llm_tokens", 0) for t in done)
        s_secs = sum(t.user_attrs.get("seconds", 0) for t in done)
        print(
            f"| {task} | {lang} | {base.report.total.instances} | {base.report.total.headline_f1():.2f} | {comp.report.total.headline_f1():.2f} "
            f"| {m['baseline_dev']['f1']:.2f} | {m['dev']['f1']:.2f} | {m['chosen']} | {len(done)} | {s_calls} | {s_tokens} | {s_secs:.0f} "
            f"| {after['calls'] - before['calls']} | {after['total_tokens'] - before['total_tokens']} | {time.monotonic() - started:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
