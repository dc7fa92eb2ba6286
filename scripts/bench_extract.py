"""Benchmark kgopt extract's client side against a server that answers after a fixed delay.

    .venv/bin/python scripts/bench_extract.py [--delay 0.2] [--calls 256] [--workers 1,4,16,32,64]

A deterministic OpenAI-compatible server (kgopt.testing.fake_endpoint) runs in its own
process and answers every request after ``--delay`` seconds, so the ideal throughput with
W workers is W / delay calls per second. For each worker count the script reports:

- kgopt extract's wall time and calls/s (no response cache, fresh output directory);
- a plain ``openai``-client loop sending the same requests with the same concurrency
  (a thread pool), and the ratio kgopt / plain: kgopt's own overhead;
- scaling efficiency: calls/s divided by the ideal W / delay.

Then the response cache: a first run that fills it, a second job (new output directory)
answered from it, and a re-run of the finished job. A benchmark, not a test: these
machines are noisy, so compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import ujson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kgopt.clients.lm import Connection, EndpointLM, ResponseCache  # noqa: E402
from kgopt.data.readers import read_instructie  # noqa: E402
from kgopt.extraction import extract  # noqa: E402


class RecordingLM(EndpointLM):
    """Remembers every request it sends (for the plain-client comparison)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.sent: list[dict] = []

    def _send(self, req):
        self.sent.append(req)
        return super()._send(req)


def start_server(delay: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kgopt.testing.fake_endpoint", "--delay", str(delay)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"fake endpoint did not start: {url!r}")
    return proc, url


def make_docs(path: Path, calls: int) -> None:
    """``calls`` single-chunk InstructIE documents (each is one KG call: one topic per document)."""
    recs = list(read_instructie(ROOT / "dataset" / "InstructIE" / "test_zh.json"))
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(calls):
            r = recs[i % len(recs)]
            # A distinct text per document, so no two calls are the same request.
            fh.write(ujson.dumps({"id": f"doc{i}", "cate": r.cate, "text": f"{r.text[:400]}（{i}）"}, ensure_ascii=False) + "\n")


def conn(url: str, cache: Path | None = None, lm_cls=EndpointLM) -> Connection:
    lm = lm_cls(url, "fake", timeout=60, cache=ResponseCache(cache) if cache else None)
    return Connection(lm=lm, config=None, identity=url, embedded=False)


def run_kgopt(docs: Path, out: Path, c: Connection, workers: int) -> tuple[float, dict]:
    t0 = time.perf_counter()
    report = extract(docs, "zh", out, tasks=["KG"], connection=c, workers=workers, progress=False, window_chars=500)
    return time.perf_counter() - t0, report.as_dict()


def run_plain(url: str, requests: list[dict], workers: int) -> float:
    client = openai.OpenAI(base_url=url, api_key="EMPTY", timeout=60, max_retries=0)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda r: client.chat.completions.create(**r).choices[0].message.content, requests))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay", type=float, default=0.2, help="server delay per request, seconds")
    ap.add_argument("--calls", type=int, default=256, help="LLM calls per run (one per document); at least 16 rounds per worker count")
    ap.add_argument("--workers", default="1,4,16,32,64", help="comma-separated worker counts")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    work = Path(tempfile.mkdtemp(prefix="kgopt-bench-"))
    proc, url = start_server(args.delay)
    results: dict = {"delay": args.delay, "calls": args.calls, "scaling": [], "cache": {}}
    try:
        print(f"server delay {args.delay}s; ideal calls/s = workers / delay; kgopt/plain = kgopt's wall time over a plain openai loop's")
        print(f"{'workers':>7} {'calls':>6} {'kgopt s':>8} {'calls/s':>8} {'ideal':>7} {'effic.':>6} {'plain s':>8} {'kgopt/plain':>11}")
        for w in [int(x) for x in args.workers.split(",")]:
            calls = max(args.calls, 16 * w)  # enough rounds that start-up and the final export do not dominate
            docs = work / f"docs{calls}.jsonl"
            if not docs.exists():
                make_docs(docs, calls)
            # The exact requests kgopt sends, for the plain loop (recorded on a warm-up run).
            rec = conn(url, lm_cls=RecordingLM)
            run_kgopt(docs, work / f"warmup{w}", rec, 64)
            requests = sorted(rec.lm.sent, key=lambda r: ujson.dumps(r["messages"], ensure_ascii=False))
            assert len(requests) == calls, (len(requests), calls)
            secs, report = run_kgopt(docs, work / f"w{w}", conn(url), w)
            assert report["ran"] == calls and not report["failed"], report
            plain = run_plain(url, requests, w)
            rate, ideal = calls / secs, w / args.delay
            row = {"workers": w, "calls": calls, "kgopt_s": round(secs, 3), "calls_per_s": round(rate, 1), "ideal_calls_per_s": round(ideal, 1),
                   "efficiency": round(rate / ideal, 3), "plain_s": round(plain, 3), "overhead_ratio": round(secs / plain, 3)}
            results["scaling"].append(row)
            print(f"{w:>7} {calls:>6} {secs:>8.2f} {rate:>8.1f} {ideal:>7.1f} {rate / ideal:>6.2f} {plain:>8.2f} {secs / plain:>11.2f}")
        w = 32
        docs = work / f"docs{args.calls}.jsonl"
        if not docs.exists():
            make_docs(docs, args.calls)
        cache = work / "cache.sqlite"
        first, _ = run_kgopt(docs, work / "c1", conn(url, cache), w)
        c2 = conn(url, cache)
        second, rep2 = run_kgopt(docs, work / "c2", c2, w)
        c3 = conn(url, cache)
        rerun, rep3 = run_kgopt(docs, work / "c2", c3, w)
        assert c2.lm.usage.calls == 0 and c3.lm.usage.calls == 0 and rep3["ran"] == 0
        results["cache"] = {"workers": w, "first_s": round(first, 3), "new_job_from_cache_s": round(second, 3),
                            "rerun_finished_job_s": round(rerun, 3), "cache_hits": c2.lm.usage.cache_hits}
        print(f"cache ({w} workers): first run {first:.2f}s; new job answered from the cache {second:.2f}s "
              f"({c2.lm.usage.cache_hits} hits, 0 calls, {first / second:.0f}x faster); re-run of the finished job {rerun:.2f}s (0 calls)")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(ujson.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
