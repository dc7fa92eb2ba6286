"""Benchmark: compile on the configured model (the embedded Qwen by default), then score the
zero-shot baseline and the compiled program on the same held-out test records.

For each case: runs (or resumes) `kgopt compile` into compiled/ on train + dev, then evaluates
both programs on the test split, which the compiler never reads, and prints one markdown row:
zero-shot and compiled test F1 (EE/EEA: argument F1; KG: triple F1 and the CCKS2023 score),
test records, and the LLM calls, tokens and seconds of the compile study and of the test runs.
Each row is also appended as JSON to runs/bench-compile/results.jsonl. Usage:

    .venv/bin/python scripts/bench_compile.py NER:en:2:2 RE:zh:4:6:DuIE2.0 --trials 3

where each case is TASK:LANG:DEV_LIMIT:TEST_LIMIT[:SOURCE] (records per source; SOURCE restricts
compiling and testing to one source). Extra compile flags: --trials, --max-demos, --train-limit.
"""

import argparse
import sys
import time
from pathlib import Path

import optuna
import ujson
from loguru import logger

from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import connect
from kgopt.compiler import compile_program
from kgopt.evaluate import evaluate
from kgopt.program import IEProgram

HEADER = (
    "| task | lang | source | test records | zero-shot test F1 | compiled test F1 | gain | zero-shot dev F1 | compiled dev F1 "
    "| study trials | study calls | study tokens | study seconds | test calls | test tokens | test seconds |"
)


def _f1(ev) -> str:
    f1 = ev.report.total.headline_f1()
    ccks = getattr(ev.report, "ccks", None)
    return f"{f1:.2f}" + (f" (CCKS {ccks['score']:.2f})" if ccks else "")


def run_case(case: str, conn, args) -> dict:
    task, lang, dev_limit, test_limit, *rest = case.split(":")
    source = rest[0] if rest else None
    res = compile_program(
        task, lang, conn, source=source, trials=args.trials, dev_limit=int(dev_limit), train_limit=args.train_limit, max_demos=args.max_demos
    )
    m = res.manifest
    started = time.monotonic()
    out = Path("runs/bench-compile")
    kw = dict(split="test", limit=int(test_limit), source=source)
    with conn.lm.usage.track() as spent:
        base = evaluate(task, lang, conn, program=IEProgram(task, lang), out_dir=out / f"{task}_{lang}_zero-shot", **kw)
        comp = evaluate(task, lang, conn, program=res.path, out_dir=out / f"{task}_{lang}_compiled", **kw)
    test_usage = spent.counts()
    study = optuna.load_study(study_name=res.study_name, storage=res.storage)
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    row = {
        "task": task, "lang": lang, "source": source or "all", "test_records": base.report.total.instances,
        "zero_shot_test_f1": base.report.total.headline_f1(), "compiled_test_f1": comp.report.total.headline_f1(),
        "zero_shot_test_ccks": getattr(base.report, "ccks", None), "compiled_test_ccks": getattr(comp.report, "ccks", None),
        "zero_shot_dev_f1": m["baseline_dev"]["f1"], "compiled_dev_f1": m["dev"]["f1"], "chosen": m["chosen"],
        "trial_params": (m.get("trial") or {}).get("params"),
        "study_trials": len(done), "study_calls": sum(t.user_attrs.get("llm_calls", 0) for t in done),
        "study_tokens": sum(t.user_attrs.get("llm_tokens", 0) for t in done),
        "study_seconds": round(sum(t.user_attrs.get("seconds", 0) for t in done)),
        "test_calls": test_usage["calls"], "test_tokens": test_usage["total_tokens"],
        "test_seconds": round(time.monotonic() - started), "model": conn.model,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(ujson.dumps(row, ensure_ascii=False) + "\n")
    print(
        f"| {task} | {lang} | {row['source']} | {row['test_records']} | {_f1(base)} | {_f1(comp)} "
        f"| {row['compiled_test_f1'] - row['zero_shot_test_f1']:+.2f} | {row['zero_shot_dev_f1']:.2f} | {row['compiled_dev_f1']:.2f} "
        f"| {row['study_trials']} | {row['study_calls']} | {row['study_tokens']} | {row['study_seconds']} "
        f"| {row['test_calls']} | {row['test_tokens']} | {row['test_seconds']} |",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", help="TASK:LANG:DEV_LIMIT:TEST_LIMIT[:SOURCE]")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--max-demos", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=40)
    args = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    conn = connect(resolve_endpoint())
    print(f"model: {conn.model} ({conn.identity})\n")
    print(HEADER)
    print("|" + "---|" * 3 + "---:|" * (HEADER.count("|") - 4))
    for case in args.cases:
        try:
            run_case(case, conn, args)
        except Exception as exc:  # one failed case is reported, the others still run
            print(f"| {case} | failed: {type(exc).__name__}: {str(exc)[:200]} |", flush=True)


if __name__ == "__main__":
    main()
