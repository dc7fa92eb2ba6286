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

where each case is TASK:LANG:DEV_LIMIT:TEST[:SOURCE] (records per source; TEST is "all" (the
whole test split), N (its first N records) or A-B (records A+1 to B: a part); SOURCE restricts
compiling and testing to one source). Extra compile flags: --trials, --max-demos, --train-limit.

A split too long for one sitting is measured in parts, one session each, and then joined:

    .venv/bin/python scripts/bench_compile.py RE:zh:3:0-20:DuIE2.0 --no-compile    # one session
    .venv/bin/python scripts/bench_compile.py RE:zh:3:20-40:DuIE2.0 --no-compile   # the next
    .venv/bin/python scripts/bench_compile.py --join RE_zh_DuIE2.0

A part's counts and its row go to benchmarks/counts/parts/NAME_rA-B.{jsonl,json} (commit them);
--join checks that the parts run on from record 1 with no gap or overlap, of one program file on
one model, then writes NAME.jsonl and prints the row of all their records, its interval
recomputed over all of them and its records/hour over the parts' summed program time.
"""

import argparse
import hashlib
import sys
import time
from pathlib import Path

import optuna
import ujson
from loguru import logger

from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import connect
from kgopt.compiler import compile_program
from kgopt.core.scoring import prf
from kgopt.core.stats import PairedDifference, RecordCount, paired_bootstrap
from kgopt.data.jsonio import dumps, write_atomic
from kgopt.evaluation import compare_with_zero_shot, strongest_way
from kgopt.program import load_program
from kgopt.redaction import redact_identity

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


RUNS = {"strict": "zero-shot strict", "lenient": "zero-shot lenient", "constrained": "zero-shot constrained"}
PARTS = COUNTS / "parts"


def parse_test(spec: str) -> tuple[int, int | None, str]:
    """TEST -> (records of each source skipped, records kept or None for all, part suffix)."""
    if spec == "all":
        return 0, None, ""
    a, sep, b = spec.partition("-")
    try:
        if not sep:
            if int(spec) < 1:
                raise ValueError
            return 0, int(spec), ""
        if not 0 <= int(a) < int(b):
            raise ValueError
    except ValueError:
        raise SystemExit(f"error: TEST must be 'all', a positive N or a range A-B with 0 <= A < B, got {spec!r}") from None
    return int(a), int(b) - int(a), f"_r{a}-{b}"


def read_counts(path: Path) -> dict[str, list[RecordCount]]:
    """write_counts' file back: run -> its records' counts, in file order."""
    runs: dict[str, list[RecordCount]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            d = ujson.loads(line)
            runs.setdefault(d["run"], []).append(RecordCount(d["record"], d["tp"], d["pred"], d["gold"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"error: {path}:{n}: not a counts line ({exc})") from None
    return runs


def official_f1(counts: list[RecordCount]) -> float:
    """The official headline F1 (P and R rounded first) of summed per-record counts."""
    return prf(sum(c.tp for c in counts), sum(c.pred for c in counts), sum(c.gold for c in counts))["F1"]


def print_row(row: dict, shown: dict[str, str]) -> None:
    """The markdown row; ``shown``: the F1 text of each zero-shot way and of "compiled"."""
    d = PairedDifference.from_json(row["difference"])
    low, high = d.low, d.high
    verdict = f" ({d.verdict()})" if d.verdict() else ""
    print(
        f"| {row['task']} | {row['lang']} | {row['source']} | {row['n']} | {shown['strict']} | {shown['lenient']} | {shown['constrained']} "
        f"| {shown['compiled']} | {d.delta:+.2f} [{low:+.2f}, {high:+.2f}] vs {row['strongest']}{verdict} "
        f"| {row['compiled_dev_f1']:.2f} ({row['zero_shot_dev_f1']:.2f}) on {row['dev_records']} | {row['chosen']} | {row['records_per_hour']} |",
        flush=True,
    )


def append_result(row: dict) -> None:
    out = Path("runs/bench-compile")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(ujson.dumps(row, ensure_ascii=False) + "\n")


def run_case(case: str, conn, args) -> dict:
    task, lang, dev_limit, test, *rest = case.split(":")
    source = rest[0] if rest else None
    skip, limit, part = parse_test(test)
    if args.no_compile:
        program = Path("compiled") / f"{task}_{lang}.json"
        m = load_program(program, task, lang)[1]
    else:
        res = compile_program(task, lang, conn, source=source, trials=args.trials, dev_limit=int(dev_limit), train_limit=args.train_limit,
                              max_demos=args.max_demos)
        program, m = res.path, res.manifest
    name = f"{task}_{lang}" + (f"_{source}" if source else "")
    cmp = compare_with_zero_shot(task, lang, conn, program, split="test", limit=limit, skip=skip, source=source,
                                 out_dir=Path("runs/bench-compile") / (name + part))
    for ev in (cmp.zero_shot, cmp.constrained, cmp.program):
        ev.check_failures(0)  # a row with failed calls would measure the outage: no counts, no row
    d, f1s = cmp.difference, cmp.to_json()["zero_shot_f1"]
    counts = (PARTS if part else COUNTS) / f"{name}{part}.jsonl"
    write_counts(counts, {RUNS["strict"]: cmp.zero_shot.report.records, RUNS["lenient"]: cmp.lenient.records,
                          RUNS["constrained"]: cmp.constrained.report.records, "compiled": cmp.program.report.records})
    per_hour = round(d.n / cmp.program.seconds * 3600, 1) if cmp.program.seconds else None
    row = {
        "task": task, "lang": lang, "source": source or "all", "n": d.n, "skip": skip, "limit": limit, "zero_shot_f1": f1s, "strongest": cmp.strongest,
        "compiled_test_f1": cmp.program.report.total.headline_f1(), "difference": d.to_json(),
        "compiled_dev_f1": m["dev"]["f1"], "zero_shot_dev_f1": m["baseline_dev"]["f1"], "chosen": m["chosen"],
        "dev_records": m["dev"]["records"], "trial_params": (m.get("trial") or {}).get("params"),
        "program_seconds": round(cmp.program.seconds, 3), "records_per_hour": per_hour,
        "program_calls": cmp.program.usage["calls"], "program_prompt_tokens": cmp.program.usage["prompt_tokens"],
        "counts": str(counts), "model": conn.model, "identity": redact_identity(conn.identity), "compiled": not args.no_compile,
        "program": str(program), "program_sha256": hashlib.sha256(Path(program).read_bytes()).hexdigest(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    if part:  # the part's row beside its counts, for --join
        write_atomic(counts.with_suffix(".json"), lambda fh: fh.write(dumps(row, indent=1) + "\n"))
    append_result(row)
    print_row(row, {**{way: _f1(r) for way, r in cmp.reports.items()}, "compiled": _f1(cmp.program.report)})
    return row


# What every part must share for their records to make one row.
SAME_IN_PARTS = ("task", "lang", "source", "program", "program_sha256", "model", "identity", "compiled")


def join_parts(name: str) -> dict:
    """The row of all the parts of ``name`` (see the module doc), with NAME.jsonl written."""
    found = []
    for path in PARTS.glob(f"{name}_r*-*.json"):
        try:
            found.append((ujson.loads(path.read_text(encoding="utf-8")), path))
        except ValueError as exc:
            raise SystemExit(f"error: {path}: not a part's row ({exc})") from None
    if not found:
        raise SystemExit(f"error: no parts of {name} in {PARTS} (run a case with TEST A-B first)")
    found.sort(key=lambda mp: mp[0]["skip"])
    first, runs, keys, expected = found[0][0], {}, set(), 0
    for meta, path in found:
        if meta["skip"] != expected:
            raise SystemExit(f"error: {path}: starts at record {meta['skip'] + 1} of each source, expected {expected + 1} "
                             "(a part is missing or overlaps another)")
        for k in SAME_IN_PARTS:
            if meta.get(k) != first.get(k):
                raise SystemExit(f"error: {path}: {k} is {meta.get(k)!r}, but {found[0][1]} has {first.get(k)!r}; parts must share it")
        part = read_counts(path.with_suffix(".jsonl"))
        if set(part) != {*RUNS.values(), "compiled"}:
            raise SystemExit(f"error: {path.with_suffix('.jsonl')}: runs {sorted(part)}, expected {sorted({*RUNS.values(), 'compiled'})}")
        new = {c.key for c in part["compiled"]}
        if new & keys:
            raise SystemExit(f"error: {path}: records also in an earlier part, e.g. {sorted(new & keys)[0]}")
        keys |= new
        for run, counts in part.items():
            runs.setdefault(run, []).extend(counts)
        expected = meta["skip"] + meta["limit"]
    f1s = {way: official_f1(runs[run]) for way, run in RUNS.items()}
    strongest = strongest_way(f1s)
    d = paired_bootstrap(runs[RUNS[strongest]], runs["compiled"])
    counts = COUNTS / f"{name}.jsonl"
    write_counts(counts, runs)
    seconds = sum(meta["program_seconds"] for meta, _ in found)
    row = {
        **{k: first[k] for k in (*SAME_IN_PARTS, "compiled_dev_f1", "zero_shot_dev_f1", "chosen", "dev_records", "trial_params")},
        "n": d.n, "skip": 0, "limit": expected, "zero_shot_f1": f1s, "strongest": strongest, "compiled_test_f1": official_f1(runs["compiled"]),
        "difference": d.to_json(), "program_seconds": round(seconds, 3), "records_per_hour": round(d.n / seconds * 3600, 1) if seconds else None,
        "program_calls": sum(meta["program_calls"] for meta, _ in found), "counts": str(counts),
        "parts": [path.name for _, path in found], "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    append_result(row)
    print_row(row, {**{way: f"{f1:.2f}" for way, f1 in f1s.items()}, "compiled": f"{row['compiled_test_f1']:.2f}"})
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help="TASK:LANG:DEV_LIMIT:TEST[:SOURCE]")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--max-demos", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=40)
    ap.add_argument("--no-compile", action="store_true", help="Measure the committed compiled/<TASK>_<lang>.json as it is.")
    ap.add_argument("--join", action="append", default=[], metavar="NAME", help="Join the measured parts of NAME (e.g. RE_zh_DuIE2.0) into one row.")
    args = ap.parse_args(argv)
    if not args.cases and not args.join:
        ap.error("give cases to measure, or --join NAME")
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    conn = connect(resolve_endpoint()) if args.cases else None  # --join reads counts only: no model
    if conn:
        print(f"model: {conn.model} ({redact_identity(conn.identity)})\n")
    print(HEADER)
    print("|" + "---|" * 3 + "---:|" * (HEADER.count("|") - 4))
    for name in args.join:
        join_parts(name)
    failed = 0
    for case in args.cases:
        try:
            run_case(case, conn, args)
        except Exception as exc:  # one failed case is reported, the others still run
            failed += 1
            print(f"| {case} | failed: {type(exc).__name__}: {str(exc)[:200]} |", flush=True)
    return 1 if failed else 0  # a table with failed rows is not a result


if __name__ == "__main__":
    sys.exit(main())
