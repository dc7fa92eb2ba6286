"""Benchmark: what one program's inference costs, and how far that is from the hardware's limit.

For each (case, program) it runs `kgopt.evaluation.evaluate` once, with no response cache (every
call reaches the model), and reports:

- records, LLM calls per record, prompt and completion tokens per call (the LM's usage, as the
  endpoint reported it), seconds and records/hour;
- the server's own prompt-evaluation and generation rates (tokens/s) and the share of prompt
  tokens it served from its KV cache (llama.cpp's prefix match). From llama.cpp's llama-server
  (embedded with KGOPT_EMBEDDED_SERVER=llama-server, or your own) they are the ``timings`` it
  sends with every answer. From llama-cpp-python's server they come from its log
  (KGOPT_HOME/logs/embedded-server-PORT.log), read from where it stood when the run began, so
  only this run's requests count; with --server-log, from the log of a llama-cpp-python server
  you run yourself. For any other endpoint they are n/a;
- the physical limit: with the measured rates, the seconds a record needs if prompt evaluation
  and generation were the only costs, (a) with no prefix reuse (prompt tokens per record /
  prompt rate + completion tokens per record / generation rate) and with the prefix reuse this
  run measured; against (b) the measured seconds per record, and their ratio (b)/(a).

With more than one --program, each program after the first is also compared with the first on
the case's records: the paired 95% interval of F1(program) - F1(first) (kgopt.core.stats), so a
faster program is shown to keep its F1 or not.

One markdown row per (case, program) goes to stdout, one JSON line per row is appended to
runs/bench-inference/results.jsonl. ``--report RESULTS`` (repeatable) runs nothing and compares
rows written by separate runs (another server program, or the code of another commit run from
a worktree), each case against its first row: records/hour, how many records' answers differ,
and the paired F1 interval. Usage:

    .venv/bin/python scripts/bench_inference.py NER:zh:WeiboNER:20 --program compiled/NER_zh.json
    .venv/bin/python scripts/bench_inference.py NER:zh:WeiboNER:20 RE:zh --program zero-shot --program compiled
    .venv/bin/python scripts/bench_inference.py --report runs/a/results.jsonl --report runs/b/results.jsonl

where each case is TASK:LANG[:SOURCE[:LIMIT]] (SOURCE "all" or empty: every source; LIMIT
records per source, "all" for the whole split; missing parts come from --source/--limit), and
each --program (repeatable; every program runs on every case) is "zero-shot" (the task's
baseline), "compiled" (compiled/<TASK>_<lang>.json) or a saved program file. The exit status
is 1 if any case failed or any LLM call failed (Evaluation.failed_calls).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import ujson
from loguru import logger

OUT = Path("runs/bench-inference")
HEADER = (
    "| task | lang | split | source | program | records | calls/record | prompt tok/call | completion tok/call | seconds "
    "| records/hour | server prompt tok/s | server gen tok/s | KV-cache share | limit s/record (no reuse) "
    "| limit s/record (measured reuse) | measured s/record | measured/limit | limit records/hour |"
)
NA = "n/a"

# llama.cpp's per-request timings, as llama-cpp-python's server writes them to its log (older
# builds print them as "llama_print_timings:", newer as "llama_perf_context_print:"), and
# llama-cpp-python's own line about the prompt prefix found in its KV cache. It prints that line
# only when the prefix is not empty: a request without it reused nothing.
_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")
_PROMPT_EVAL = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
_EVAL = re.compile(r"(?<!prompt )eval time =\s*([\d.]+) ms /\s*(\d+) runs")
_TOTAL = re.compile(r"total time =\s*([\d.]+) ms /\s*(\d+) tokens")


def parse_server_log(text: str) -> dict[str, Any]:
    """The sums over the complete request blocks of a llama-cpp-python server log, and the rates.

    A block is a request's optional ``Llama.generate: H prefix-match hit, remaining R prompt
    tokens to eval`` line followed by its ``prompt eval time``, ``eval time`` and ``total time``
    lines. A block with no hit line reused no prefix (H = 0, R = its prompt-eval tokens). A block
    cut off (a request still running, or a text starting mid-block) is counted in ``incomplete``
    and adds nothing. Rates divide summed tokens by summed seconds (None when nothing was timed).
    """
    s = dict(requests=0, incomplete=0, cached_tokens=0, prompt_tokens=0, prompt_eval_tokens=0, prompt_eval_ms=0.0,
             gen_tokens=0, gen_ms=0.0, total_ms=0.0)  # fmt: skip
    hit: tuple[int, int] | None = None  # the last hit line, not yet matched by a prompt eval line
    block: dict[str, Any] | None = None  # the block whose prompt eval line has been read

    def close() -> None:
        nonlocal block
        if block is not None:
            if "gen_tokens" in block:
                s["requests"] += 1
                for k, v in block.items():
                    s[k] += v
            else:
                s["incomplete"] += 1
        block = None

    for line in text.splitlines():
        if m := _HIT.search(line):
            close()
            if hit is not None:
                s["incomplete"] += 1  # a hit line whose request never printed its timings
            hit = int(m.group(1)), int(m.group(2))
        elif m := _PROMPT_EVAL.search(line):
            close()
            ms, n = float(m.group(1)), int(m.group(2))
            cached, remaining = hit if hit is not None else (0, n)
            hit = None
            block = dict(cached_tokens=cached, prompt_tokens=cached + remaining, prompt_eval_tokens=n, prompt_eval_ms=ms)
        elif (m := _EVAL.search(line)) and block is not None and "gen_tokens" not in block:
            block.update(gen_tokens=int(m.group(2)), gen_ms=float(m.group(1)))
        elif (m := _TOTAL.search(line)) and block is not None and "gen_tokens" in block:
            block["total_ms"] = float(m.group(1))
            close()
    close()
    if hit is not None:
        s["incomplete"] += 1
    return _with_rates(s)


def _with_rates(s: dict[str, Any]) -> dict[str, Any]:
    """Rates divide summed tokens by summed seconds (None when nothing was timed)."""
    s["prompt_rate"] = s["prompt_eval_tokens"] / (s["prompt_eval_ms"] / 1000) if s["prompt_eval_ms"] > 0 else None
    s["gen_rate"] = s["gen_tokens"] / (s["gen_ms"] / 1000) if s["gen_ms"] > 0 else None
    s["cache_share"] = s["cached_tokens"] / s["prompt_tokens"] if s["prompt_tokens"] else None
    return s


def timings_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    """The server's own timings of one run (``EndpointLM.server_timings`` before and after), in
    ``parse_server_log``'s terms; None when no answer carried timings."""
    d = {k: after[k] - before[k] for k in after}
    if not d["calls"]:
        return None
    s = dict(requests=d["calls"], incomplete=0, cached_tokens=d["cached_tokens"], prompt_tokens=d["cached_tokens"] + d["prompt_eval_tokens"],
             prompt_eval_tokens=d["prompt_eval_tokens"], prompt_eval_ms=d["prompt_eval_ms"], gen_tokens=d["gen_tokens"], gen_ms=d["gen_ms"],
             total_ms=d["prompt_eval_ms"] + d["gen_ms"])  # fmt: skip
    return _with_rates(s)


def physical_limit(prompt_tokens_per_record: float, completion_tokens_per_record: float, server: dict[str, Any] | None,
                   measured_seconds_per_record: float | None) -> dict[str, Any] | None:  # fmt: skip
    """Seconds per record if prompt evaluation and generation at the server's measured rates were
    the only costs: with no prefix reuse, and with the KV-cache share this run measured; the best
    records/hour (no reuse) and measured / limit. None without the server's rates."""
    if not server or not server.get("prompt_rate") or not server.get("gen_rate"):
        return None
    gen = completion_tokens_per_record / server["gen_rate"]
    no_reuse = prompt_tokens_per_record / server["prompt_rate"] + gen
    reused = prompt_tokens_per_record * (1 - (server.get("cache_share") or 0.0)) / server["prompt_rate"] + gen
    ratio = measured_seconds_per_record / no_reuse if measured_seconds_per_record is not None and no_reuse > 0 else None
    return {
        "seconds_per_record_no_reuse": no_reuse,
        "seconds_per_record_measured_reuse": reused,
        "records_per_hour_no_reuse": 3600 / no_reuse if no_reuse > 0 else None,
        "records_per_hour_measured_reuse": 3600 / reused if reused > 0 else None,
        "measured_over_limit": ratio,
    }


class LogWatch:
    """A server log from where it stood at creation: ``text()`` is what was written since."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = self.path.stat().st_size if self.path.is_file() else 0

    def text(self) -> str:
        if not self.path.is_file():
            return ""
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            return fh.read().decode("utf-8", errors="replace")

    def parse(self, settle: float = 0.5) -> dict[str, Any]:
        stats = parse_server_log(self.text())
        if stats["incomplete"] and settle:  # the last timings may still be on their way to the file
            time.sleep(settle)
            stats = parse_server_log(self.text())
        return stats


class Case(NamedTuple):
    task: str
    lang: str
    split: str
    source: str | None
    limit: int | None

    @property
    def name(self) -> str:
        return f"{self.task}:{self.lang}:{self.split}:{self.source or 'all'}:{self.limit if self.limit is not None else 'all'}"


def parse_case(text: str, split: str, source: str | None, limit: int | None) -> Case:
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4 or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: a case is TASK:LANG[:SOURCE[:LIMIT]]")
    task, lang = parts[0].upper(), parts[1]
    if len(parts) > 2:
        source = None if parts[2] in ("", "all") else parts[2]
    if len(parts) > 3:
        if parts[3] == "all":
            limit = None
        elif parts[3].isdigit() and int(parts[3]) > 0:
            limit = int(parts[3])
        else:
            raise argparse.ArgumentTypeError(f"{text!r}: LIMIT must be a positive number or 'all'")
    return Case(task, lang, split, source, limit)


def program_for(spec: str, case: Case) -> tuple[str, Path | None]:
    """(label, path) of a --program value for a case; path None is the zero-shot baseline."""
    if spec == "zero-shot":
        return spec, None
    if spec == "compiled":
        path = Path("compiled") / f"{case.task}_{case.lang}.json"
        return str(path), path
    return spec, Path(spec)


def server_watch(conn, server_log: Path | None) -> tuple[LogWatch | None, str]:
    """The log to read this run's server timings from, and where it comes from (or why none)."""
    if server_log is not None:
        return LogWatch(server_log), f"log {server_log}"
    if conn.embedded:
        from kgopt.clients.embedded import shared_embedded_server

        server = shared_embedded_server()  # the one connect() started (it starts one only if none runs)
        if f":{server.port}/" not in conn.lm.api_base:
            logger.warning("the embedded server was restarted after connecting ({}); its log may miss this run", server.api_base)
        if server.log_path is None:
            return None, "n/a: the embedded server keeps no log"
        return LogWatch(server.log_path), f"embedded log {server.log_path}"
    return None, "n/a: not the embedded server (its timings are read from the embedded server's log; see --server-log)"


def _per(a: float, b: float) -> float | None:
    return a / b if b else None


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return NA
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def run_case(case: Case, program: str, conn, args) -> dict[str, Any]:
    from kgopt.evaluation import evaluate

    label, path = program_for(program, case)
    name = f"{case.task}_{case.lang}_{case.split}_{case.source or 'all'}_{'zero-shot' if path is None else path.stem}"
    if conn.embedded and server_name(conn.identity) != "llama-cpp-python":  # its own folder: one program on two servers
        name += f"_{server_name(conn.identity)}"
    watch, server_source = server_watch(conn, args.server_log)
    timed = conn.lm.server_timings.snapshot()
    ev = evaluate(case.task, case.lang, conn, split=case.split, source=case.source, limit=case.limit, data_dir=args.data_dir,
                  program=path, threads=args.threads, out_dir=args.out_dir / name)  # fmt: skip
    server = timings_delta(timed, conn.lm.server_timings.snapshot())
    if server is not None:
        server_source = "the server's timings in its answers"
    elif watch is not None:
        server = watch.parse()
    if server is not None and server["requests"] == 0:
        server_source = f"n/a: no request timings in the {server_source}"
        server = None
    u = ev.usage
    records = len(ev.report.records)
    calls = u["calls"]
    if server is not None and server["requests"] != calls:
        logger.warning("the server log holds {} requests, the client counted {} calls (+{} failed)", server["requests"], calls, u["failures"])
    ptr, ctr = _per(u["prompt_tokens"], records) or 0.0, _per(u["completion_tokens"], records) or 0.0
    measured = _per(ev.seconds, records)
    row = {
        "case": case.name, "task": case.task, "lang": case.lang, "split": case.split, "source": case.source or "all",
        "limit": case.limit, "program": label, "model": conn.model, "identity": conn.identity, "embedded": conn.embedded,
        "threads": args.threads, "records": records, "calls": calls, "calls_asked": ev.calls, "failed_calls": ev.failed_calls,
        "retries": u["retries"], "cache_hits": u["cache_hits"],
        "calls_per_record": _per(calls, records),
        "prompt_tokens": u["prompt_tokens"], "completion_tokens": u["completion_tokens"],
        "prompt_tokens_per_call": _per(u["prompt_tokens"], calls), "completion_tokens_per_call": _per(u["completion_tokens"], calls),
        "prompt_tokens_per_record": ptr, "completion_tokens_per_record": ctr,
        "seconds": ev.seconds, "seconds_per_record": measured, "records_per_hour": _per(records * 3600, ev.seconds),
        "server": server, "server_source": server_source,
        "limit_model": physical_limit(ptr, ctr, server, measured),
        "f1": ev.report.total.headline_f1(), "predictions": str(ev.predictions), "predictions_sha256": file_sha256(ev.predictions),
        "record_counts": [[c.key, c.tp, c.pred, c.gold] for c in ev.report.records],
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }  # fmt: skip
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with open(args.out_dir / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(ujson.dumps(row, ensure_ascii=False) + "\n")
    srv, lim = server or {}, row["limit_model"] or {}
    share = srv.get("cache_share")
    print(
        f"| {case.task} | {case.lang} | {case.split} | {row['source']} | {label} | {records} | {_fmt(row['calls_per_record'], 2)} "
        f"| {_fmt(row['prompt_tokens_per_call'])} | {_fmt(row['completion_tokens_per_call'])} | {_fmt(ev.seconds)} "
        f"| {_fmt(row['records_per_hour'])} | {_fmt(srv.get('prompt_rate'))} | {_fmt(srv.get('gen_rate'))} "
        f"| {NA if share is None else f'{share:.1%}'} | {_fmt(lim.get('seconds_per_record_no_reuse'), 2)} "
        f"| {_fmt(lim.get('seconds_per_record_measured_reuse'), 2)} | {_fmt(measured, 2)} | {_fmt(lim.get('measured_over_limit'), 2)} "
        f"| {_fmt(lim.get('records_per_hour_no_reuse'))} |",
        flush=True,
    )
    if ev.failed_calls:
        logger.error("{} with {}: {} of {} LLM calls failed (see {})", case.name, label, ev.failed_calls, ev.calls, ev.predictions)
    return row


def print_differences(case: Case, rows: dict[str, dict[str, Any]]) -> None:
    """Each program's F1 against the case's first program, paired on the same records."""
    from kgopt.core.stats import RecordCount, paired_bootstrap

    names = list(rows)
    counts = {n: [RecordCount(*c) for c in rows[n]["record_counts"]] for n in names}
    for other in names[1:]:
        diff = paired_bootstrap(counts[names[0]], counts[other])
        print(f"{case.name}: {other} against {names[0]}: {diff.line()} ({diff.verdict() or 'a difference'})", flush=True)


REPORT_HEADER = ("| case | program | server | seconds | records/hour | vs first | KV-cache share | F1 | answers differ "
                 "| ΔF1 vs first [95% CI] |")  # fmt: skip


def server_name(identity: str | None) -> str:
    """The server program of an embedded identity (``embedded|...``: llama-cpp-python), else the endpoint."""
    from kgopt.clients.embedded import program_of_identity

    return program_of_identity(identity) or (identity or NA).split("|", 1)[0]


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def answers_by_record(predictions: str | Path) -> dict[str, list[Any]]:
    """Each record's raw answers, in call order, from an evaluator-format predictions file."""
    from kgopt.core.scoring import group_lines
    from kgopt.data.jsonio import iter_json

    return {key: g.outputs for key, g in group_lines(iter_json(predictions), str(predictions)).items()}


def row_answers(row: dict[str, Any]) -> dict[str, list[Any]] | None:
    """A row's answers, or None where its predictions file was rewritten since (a later run to the same folder)."""
    if row.get("predictions_sha256") not in (None, file_sha256(row["predictions"])):
        logger.warning("{} changed after the run of {} at {}: its answers are not compared", row["predictions"], row["program"], row["at"])
        return None
    return answers_by_record(row["predictions"])


def row_counts(row: dict[str, Any]) -> list[Any]:
    """A row's per-record counts; a row written before they were recorded is scored from its predictions."""
    from kgopt.core.stats import RecordCount
    from kgopt.evaluation import score_file

    if "record_counts" in row:
        return [RecordCount(*c) for c in row["record_counts"]]
    return [RecordCount(c.key, c.tp, c.pred, c.gold) for c in score_file(row["task"], row["predictions"]).records]


def report(paths: list[Path]) -> int:
    """Rows of earlier runs (results.jsonl files, in the order given), each case against its first row:
    records/hour, the answers that differ and the paired F1 interval. Rows run apart (another server
    program, or the code of another commit in a worktree) are compared as if run together, so
    run them back to back: only such ratios mean anything here."""
    from kgopt.core.stats import paired_bootstrap
    from kgopt.data.jsonio import iter_json
    from kgopt.errors import DataError

    cases: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        for lineno, row in iter_json(path):  # a missing file or a bad line: DataError naming it
            if not isinstance(row, dict) or not {"case", "program", "predictions", "records_per_hour", "f1"} <= set(row):
                raise DataError("not a row of bench_inference.py's results.jsonl", str(path), lineno)
            cases.setdefault(row["case"], []).append(row)
    print(REPORT_HEADER)
    print("|---|---|---|" + "---:|" * 6 + "---|")
    for case, rows in cases.items():
        first, first_counts, first_answers = rows[0], row_counts(rows[0]), row_answers(rows[0])
        for row in rows:
            answers = first_answers if row is first else row_answers(row)
            differ = NA if answers is None or first_answers is None else f"{sum(answers.get(k) != v for k, v in first_answers.items())} of {len(first_answers)}"
            diff = paired_bootstrap(first_counts, row_counts(row)) if row is not first else None
            verdict = "" if diff is None else f" ({diff.verdict() or 'a difference'})"
            share = (row.get("server") or {}).get("cache_share")
            print(f"| {case} | {row['program']} | {server_name(row.get('identity'))} | {_fmt(row['seconds'])} "
                  f"| {_fmt(row['records_per_hour'])} | {row['records_per_hour'] / first['records_per_hour']:.2f}x "
                  f"| {NA if share is None else f'{share:.1%}'} | {row['f1']:.2f} | {differ} "
                  f"| {'' if diff is None else diff.line() + verdict} |", flush=True)  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help="TASK:LANG[:SOURCE[:LIMIT]]")
    ap.add_argument("--program", action="append", default=None,
                    help='"zero-shot" (default), "compiled" (compiled/<TASK>_<lang>.json) or a program file; repeatable')  # fmt: skip
    ap.add_argument("--split", default="test", help="split of every case (default: test)")
    ap.add_argument("--source", default=None, help="source of the cases that name none (default: every source)")
    ap.add_argument("--limit", type=int, default=20, help="records per source of the cases that give no LIMIT (default: 20)")
    ap.add_argument("--threads", type=int, default=1, help="concurrent records (default 1: one request at a time, clean server timings)")
    ap.add_argument("--data-dir", type=Path, default=None, help="data root (default: ./dataset, env KGOPT_DATA_DIR)")
    ap.add_argument("--server-log", type=Path, default=None,
                    help="log of a llama-cpp-python server you run yourself (KGOPT_API_BASE): read its timings from it")  # fmt: skip
    ap.add_argument("--out-dir", type=Path, default=OUT, help=f"predictions and results.jsonl (default: {OUT})")
    ap.add_argument("--log-level", default="WARNING")
    ap.add_argument("--report", type=Path, action="append", default=None, metavar="RESULTS",
                    help="run nothing: compare the rows of these results.jsonl files (repeatable), each case against its first row")  # fmt: skip
    args = ap.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    if args.report:
        from kgopt.errors import DataError

        try:
            return report(args.report)
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if not args.cases:
        ap.error("give at least one case (or --report)")
    try:
        cases = [parse_case(c, args.split, args.source, args.limit) for c in args.cases]
    except argparse.ArgumentTypeError as exc:
        ap.error(str(exc))
    from kgopt.clients.config import resolve_endpoint
    from kgopt.clients.lm import connect

    conn = connect(resolve_endpoint(), cache=False)  # no response cache: every call reaches the model
    print(f"model: {conn.model} ({conn.identity})\n")
    print(HEADER)
    print("|" + "---|" * 5 + "---:|" * (HEADER.count("|") - 6))
    failed = 0
    for case in cases:
        rows: dict[str, dict[str, Any]] = {}
        for program in args.program or ["zero-shot"]:
            try:
                rows[program] = row = run_case(case, program, conn, args)
                failed += bool(row["failed_calls"])
            except Exception as exc:  # one failed case is reported, the others still run
                failed += 1
                logger.opt(exception=exc).debug("{} with {} failed", case.name, program)
                print(f"| {case.task} | {case.lang} | {case.split} | {case.source or 'all'} | {program} | failed: {type(exc).__name__}: {str(exc)[:200]} |", flush=True)
        print_differences(case, rows)
    return 1 if failed else 0  # a table with failed rows or calls is not a result


if __name__ == "__main__":
    sys.exit(main())
