"""Benchmark: how much of a program's prompts a prefix cache could ever skip, without the model.

Prompt evaluation is what a record costs on the embedded server (BENCHMARKS.md#run-to-run-spread-and-inference-cost):
a server skips a prompt's tokens only where they repeat, token for token from the start, a
prompt whose KV state it still holds. This script measures that ceiling for a program on given
records, with no model call: it captures every request the program sends (through
``kgopt.testing``'s fake endpoint, so the prompts are the program's own; answers are the fake's,
which only matters where a later call is built from an earlier answer), renders each with the
embedded model's own chat template and tokenizer (llama-cpp-python, vocabulary only, the
weights' SHA-256 checked as for the server), and reports per case:

- calls and prompt tokens per record (the same count the server's usage reports);
- reuse from the previous prompt only: the longest common token prefix with the prompt just
  before (one KV cache, as llama-cpp-python's server keeps);
- reuse from the best earlier prompt: the longest common prefix with any earlier prompt (an
  unbounded prompt cache, the most any server can skip with these prompts in this order);
- the prompt-evaluation speed-up each would give, total / (total - reused): an upper bound on
  what prefix reuse can add to records/hour, since generation and overheads are left out.

Each is given for both demonstration orders of a program's ``demo_order`` setting
(kgopt/program.py): ``selected``, in the order the choice returns them (most similar last), and
``sorted`` by their text, the same for every input shown the same ones: the lever that puts what
inputs share first. The program is run once per order, with only that setting changed. One
markdown row per (case, program, order) goes to stdout, one JSON line to
runs/bench-prefix-reuse/results.jsonl. Usage:

    .venv/bin/python scripts/bench_prefix_reuse.py NER:zh:WeiboNER:40 KG:zh:all:10 --program compiled

where a case is TASK:LANG[:SOURCE[:LIMIT]] and --program is as in bench_inference.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import ujson
from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import Case, parse_case, program_for  # noqa: E402  (one case syntax for both benchmarks)

from kgopt.program import DEMO_ORDERS  # noqa: E402

OUT = Path("runs/bench-prefix-reuse")
HEADER = ("| task | lang | source | program | order | records | calls/record | prompt tok/record | reuse, previous prompt "
          "| reuse, best earlier prompt | prompt-eval speed-up, previous | prompt-eval speed-up, best earlier |")  # fmt: skip

Messages = list[dict[str, Any]]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def reuse(prompts: list[list[int]]) -> dict[str, int]:
    """Tokens a prefix cache skips: from the previous prompt only, and from the best earlier one."""
    previous = best = 0
    for i in range(1, len(prompts)):
        previous += common_prefix(prompts[i], prompts[i - 1])
        best += max(common_prefix(prompts[i], prompts[j]) for j in range(i))
    return {"tokens": sum(map(len, prompts)), "previous": previous, "best": best}


def with_demo_order(path: Path | None, order: str, out_dir: Path) -> Path | None:
    """The program at ``path`` with only its ``demo_order`` set (zero-shot, None, shows no demonstrations)."""
    if path is None:
        return None
    art = ujson.loads(path.read_text(encoding="utf-8"))
    art["config"]["demo_order"] = order
    out_dir.mkdir(parents=True, exist_ok=True)
    variant = out_dir / f"{path.stem}.{order}.json"
    variant.write_text(ujson.dumps(art, ensure_ascii=False), encoding="utf-8")
    return variant


class Tokenizer:
    """The embedded model's chat template and tokenizer, with no weights loaded into a context."""

    def __init__(self):
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from kgopt.clients.weights import ensure_gguf, selected_model

        self.llm = Llama(model_path=str(ensure_gguf(selected_model())), vocab_only=True, verbose=False)
        meta = self.llm.metadata
        eos = self.llm.detokenize([self.llm.token_eos()]).decode("utf-8", errors="replace")
        bos = self.llm.detokenize([self.llm.token_bos()]).decode("utf-8", errors="replace") if self.llm.token_bos() >= 0 else ""
        self.template = Jinja2ChatFormatter(template=meta["tokenizer.chat_template"], eos_token=eos, bos_token=bos)

    def __call__(self, messages: Messages) -> list[int]:
        prompt = self.template(messages=messages).prompt
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)


def captured_prompts(case: Case, path: Path | None, data_dir: Path | None, out_dir: Path) -> tuple[list[Messages], int]:
    """Every request's messages as the program sends them, in order, and the number of records."""
    from kgopt.evaluation import evaluate
    from kgopt.testing.fake_endpoint import FakeEndpoint, fake_connection

    with FakeEndpoint() as srv:
        ev = evaluate(case.task, case.lang, fake_connection(srv.url), split=case.split, source=case.source, limit=case.limit,
                      data_dir=data_dir, program=path, threads=1, out_dir=out_dir)  # fmt: skip
        return [r["messages"] for r in srv.requests], len(ev.report.records)


def _ratio(total: int, reused: int) -> str:
    return f"{total / (total - reused):.2f}x" if total > reused else "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", help="TASK:LANG[:SOURCE[:LIMIT]]")
    ap.add_argument("--program", action="append", default=None, help='"zero-shot", "compiled" (default) or a program file; repeatable')
    ap.add_argument("--split", default="test", help="split of every case (default: test)")
    ap.add_argument("--source", default=None, help="source of the cases that name none (default: every source)")
    ap.add_argument("--limit", type=int, default=40, help="records per source of the cases that give no LIMIT (default: 40)")
    ap.add_argument("--data-dir", type=Path, default=None, help="data root (default: ./dataset, env KGOPT_DATA_DIR)")
    ap.add_argument("--out-dir", type=Path, default=OUT, help=f"results.jsonl (default: {OUT})")
    args = ap.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    try:
        cases = [parse_case(c, args.split, args.source, args.limit) for c in args.cases]
    except argparse.ArgumentTypeError as exc:
        ap.error(str(exc))
    tokenize = Tokenizer()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    print(HEADER)
    print("|" + "---|" * 5 + "---:|" * (HEADER.count("|") - 6))
    for case in cases:
        for spec in args.program or ["compiled"]:
            label, path = program_for(spec, case)
            for order in DEMO_ORDERS:
                variant = with_demo_order(path, order, args.out_dir / "programs")
                requests, records = captured_prompts(case, variant, args.data_dir, args.out_dir / "predictions")
                r = reuse([tokenize(m) for m in requests])
                row = {"case": case.name, "program": label, "order": order, "records": records, "calls": len(requests), **r,
                       "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
                with open(args.out_dir / "results.jsonl", "a", encoding="utf-8") as fh:
                    fh.write(ujson.dumps(row, ensure_ascii=False) + "\n")
                tok = r["tokens"] or 1
                print(f"| {case.task} | {case.lang} | {case.source or 'all'} | {label} | {order} | {records} "
                      f"| {len(requests) / max(records, 1):.2f} | {r['tokens'] / max(records, 1):.1f} | {r['previous'] / tok:.1%} "
                      f"| {r['best'] / tok:.1%} | {_ratio(r['tokens'], r['previous'])} | {_ratio(r['tokens'], r['best'])} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
