"""Benchmark: constrained-JSON generation on the embedded model, grammar in the chain vs checked.

llama-cpp-python filters the whole vocabulary through the JSON grammar before every token;
``kgopt.clients.llama_child`` asks the grammar about the sampled token only (llama.cpp's own
server does the same). For each case this script asks the first N test records' first schema
chunk zero-shot, with the chunk's answer schema as the grammar (as ``output="json"`` does), once
per sampler from the same empty KV cache, in one process, one request at a time, and prints
generated tokens, seconds, generated tokens/s per sampler, their ratio, and how many answers
are identical (at temperature 0 they should all be). Rows are appended to
runs/bench-grammar/results.jsonl. Usage:

    .venv/bin/python scripts/bench_grammar.py NER:zh:5 EE:en:3 KG:zh:3 --max-tokens 256
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import ujson
from tqdm import tqdm

from kgopt.core.answer_schema import answer_json_schema
from kgopt.core.tasks import get_task
from kgopt.data.readers import load_examples

OUT = Path("runs/bench-grammar")


def _ask(llm, messages, schema: dict, max_tokens: int) -> tuple[str, int, float]:
    from llama_cpp import LlamaGrammar

    llm.reset()
    llm._ctx.kv_cache_clear()  # the same starting state for both samplers
    grammar = LlamaGrammar.from_json_schema(ujson.dumps(schema, ensure_ascii=False), verbose=False)
    started = time.perf_counter()
    out = llm.create_chat_completion(messages, grammar=grammar, temperature=0, max_tokens=max_tokens)
    return out["choices"][0]["message"]["content"], out["usage"]["completion_tokens"], time.perf_counter() - started


def run_case(case: str, llm, max_tokens: int) -> dict:
    from llama_cpp.llama import Llama

    from kgopt.clients.llama_child import install

    task, lang, n = case.split(":")
    spec = get_task(task)
    asks = []
    for ex in load_examples(task, lang, "test", limit=int(n))[: int(n)]:
        chunk = spec.chunks(ex.schema, ex.record)[0]
        prompt = ujson.dumps(spec.instruction(lang, chunk, ex.record.text), ensure_ascii=False)
        asks.append(([{"role": "user", "content": prompt}], answer_json_schema(spec, chunk)))
    original = Llama._init_sampler
    results: dict[str, list] = {}
    for way in ("in the chain", "checked"):
        if way == "checked":
            install()
        results[way] = [_ask(llm, m, s, max_tokens) for m, s in tqdm(asks, desc=f"{case} {way}", unit="call")]
    Llama._init_sampler = original  # the next case starts from the library's own sampling again
    row = {"case": case, "calls": len(asks), "max_tokens": max_tokens,
           "identical": sum(a[0] == b[0] for a, b in zip(results["in the chain"], results["checked"]))}
    for way, rs in results.items():
        tokens, seconds = sum(r[1] for r in rs), sum(r[2] for r in rs)
        row[way] = {"tokens": tokens, "seconds": round(seconds, 1), "tokens_per_second": round(tokens / seconds, 1) if seconds else None}
    row["speedup"] = round(row["in the chain"]["seconds"] / row["checked"]["seconds"], 2) if row["checked"]["seconds"] else None
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+", help="TASK:LANG:N (the first N test records)")
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args(argv)
    from llama_cpp import Llama

    from kgopt.clients.weights import ensure_gguf, selected_model

    llm = Llama(str(ensure_gguf(selected_model())), n_ctx=4096, n_threads=2, verbose=False)
    OUT.mkdir(parents=True, exist_ok=True)
    print("| case | calls | tokens | in the chain: s (tok/s) | checked: s (tok/s) | speedup | identical answers |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case in args.cases:
        row = run_case(case, llm, args.max_tokens)
        with open(OUT / "results.jsonl", "a", encoding="utf-8") as fh:
            fh.write(ujson.dumps(row, ensure_ascii=False) + "\n")
        a, b = row["in the chain"], row["checked"]
        print(f"| {case} | {row['calls']} | {a['tokens']} | {a['seconds']} ({a['tokens_per_second']}) | {b['seconds']} ({b['tokens_per_second']}) "
              f"| {row['speedup']}x | {row['identical']} of {row['calls']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
