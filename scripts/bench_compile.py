"""Benchmark: compile on the configured model (the embedded Qwen by default), then score the
compiled program against the strongest zero-shot baseline on the same held-out test records.

For each case: runs (or resumes) `kgopt compile` into compiled/ on train + dev (or, with
--no-compile, takes the committed compiled/<TASK>_<lang>.json as it is), then runs
`compare_with_zero_shot` on the test split, which the compiler never reads: zero-shot parsed
strictly (official) and leniently, zero-shot with the answer schema enforced (constrained), and
the program. It prints one markdown row: n, the three zero-shot F1s, the compiled F1, ΔF1 against
the strongest baseline with its paired 95% bootstrap interval, and the program's records/hour.
Rows are appended as JSON to runs/bench-compile/results.jsonl; the per-record counts behind
them (true positives, predicted, gold per record and run) go to benchmarks/counts/, so anyone
can recompute every F1 and interval. Usage:

    .venv/bin/python scripts/bench_compile.py NER:en:2:2 RE:zh:4:6:DuIE2.0 --trials 3
    .venv/bin/python scripts/bench_compile.py NER:zh:8:all:WeiboNER --no-compile

where each case is TASK:LANG:DEV_LIMIT:TEST_LIMIT[:SOURCE] (records per source; TEST_LIMIT
"all" is the whole test split; SOURCE restricts compiling and testing to one source). Extra
compile flags: --trials, --max-demos, --train-limit.
"""

import argparse
import sys
from pathlib import Path

import optuna
import ujson
from loguru import logger

from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import connect
from kgopt.compiler import compile_program
from kgopt.data.jsonio import dumps
from kgopt.evaluation import compare_with_zero_shot
from kgopt.program import load_program

HEADER = (
    "| task | lang | source | n | zero-shot strict | zero-shot lenient | zero-shot constrained | compiled | ΔF1 vs strongest [95% CI] "
    "| compiled dev F1 (zero-shot) | chosen | records/hour |"
)
COUNTS = Path("benchmarks/counts")


def _f1(report) -> str:
    ccks = getattr(report, "ccks", None)
    return f"{report.total.headline_f1():.2f}" + (f" (CCKS {ccks['score']:.2f})" if ccks else "")


def write_counts(path: Path, runs: dict) -> None:
    """One JSON line per (run, record): its headline counts (``runs``: run -> its RecordCounts),
    from which every F1 and interval follows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for run, records in runs.items():
            for c in records:
                fh.write(dumps({"run": run, "record": c.key, "tp": c.tp, "pred": c.pred, "gold": c.gold}) + "\n")


def run_case(case: str, conn, args) -> dict:
    task, lang, dev_limit, test_limit, *rest = case.split(":")
    source = rest[0] if rest else None
    if args.no_compile:
        program = Path("compiled") / f"{task}_{lang}.json"
        m = load_program(program, task, lang)[1]
    else:
        res = compile_program(task, lang, conn, source=source, trials=args.trials, dev_limit=int(dev_limit), train_limit=args.train_limit,
                              max_demos=args.max_demos)
        program, m = res.path, res.manifest
    name = f"{task}_{lang}" + (f"_{source}" if source else "")
    limit = None if test_limit == "all" else int(test_limit)
    cmp = compare_with_zero_shot(task, lang, conn, program, split="test", limit=limit, source=source, out_dir=Path("runs/bench-compile") / name)
    d, f1s = cmp.difference, cmp.to_json()["zero_shot_f1"]
    counts = COUNTS / f"{name}.jsonl"
    write_counts(counts, {"zero-shot strict": cmp.zero_shot.report.records, "zero-shot lenient": cmp.lenient.records,
                          "zero-shot constrained": cmp.constrained.report.records, "compiled": cmp.program.report.records})
    per_hour = round(d.n / cmp.program.seconds * 3600, 1) if cmp.program.seconds else None
    row = {
        "task": task, "lang": lang, "source": source or "all", "n": d.n, "zero_shot_f1": f1s, "strongest": cmp.strongest,
        "compiled_test_f1": cmp.program.report.total.headline_f1(), "difference": d.to_json(),
        "compiled_dev_f1": m["dev"]["f1"], "zero_shot_dev_f1": m["baseline_dev"]["f1"], "chosen": m["chosen"],
        "dev_records": m["dev"]["records"], "trial_params": (m.get("trial") or {}).get("params"),
        "program_seconds": round(cmp.program.seconds, 1), "records_per_hour": per_hour,
        "program_calls": cmp.program.usage["calls"], "program_prompt_tokens": cmp.program.usage["prompt_tokens"],
        "counts": str(counts), "model": conn.model, "compiled": not args.no_compile,
    }  # fmt: skip
    out = Path("runs/bench-compile")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(ujson.dumps(row, ensure_ascii=False) + "\n")
    verdict = "" if d.significant else f" (not significant at n = {d.n})"
    print(
        f"| {task} | {lang} | {row['source']} | {d.n} | {_f1(cmp.zero_shot.report)} | {_f1(cmp.lenient)} | {_f1(cmp.constrained.report)} "
        f"| {_f1(cmp.program.report)} | {d.delta:+.2f} [{d.low:+.2f}, {d.high:+.2f}] vs {cmp.strongest}{verdict} "
        f"| {row['compiled_dev_f1']:.2f} ({row['zero_shot_dev_f1']:.2f}) on {row['dev_records']} | {row['chosen']} | {per_hour} |",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", help="TASK:LANG:DEV_LIMIT:TEST_LIMIT[:SOURCE]")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--max-demos", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=40)
    ap.add_argument("--no-compile", action="store_true", help="Measure the committed compiled/<TASK>_<lang>.json as it is.")
    args = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    conn = connect(resolve_endpoint())
    print(f"model: {conn.model} ({conn.identity})\n")
    print(HEADER)
    print("|" + "---|" * 3 + "---:|" * (HEADER.count("|") - 4))
    failed = 0
    for case in args.cases:
        try:
            run_case(case, conn, args)
        except Exception as exc:  # one failed case is reported, the others still run
            failed += 1
            print(f"| {case} | failed: {type(exc).__name__}: {str(exc)[:200]} |", flush=True)
    if failed:
        sys.exit(1)  # a table with failed rows is not a result


if __name__ == "__main__":
    main()
