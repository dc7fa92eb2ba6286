"""Benchmark: the knowledge graph `kgopt extract` builds, against the gold triples of its texts.

For each language: the first --limit bundled InstructIE test records (dataset/InstructIE/
test_<lang>.json; never read by the compiler) become the documents, with their topics. They
go through `kgopt extract --tasks KG` twice, with the zero-shot baseline (programs/KG_<lang>.json)
and with the compiled program (compiled/KG_<lang>.json), on the configured model (the embedded
Qwen by default), with no response cache. Reported per run:

- triple precision, recall and F1 of the merged graph against the union of gold triples: an
  edge matches a gold triple when the relation is equal and the gold head and tail are among
  the surface forms (name or aliases, normalised as the merge does) of the edge's two nodes;
- the CCKS2023 score per record (triple F1, Rouge-2, their mean), from each document's calls;
- nodes, edges, mentions, merge statistics (see kgopt.graph.quality), and calls, tokens, seconds.

Rows are printed as markdown and appended as JSON to runs/bench-kg/results.jsonl.

--merge-only measures the merge alone, with no model: every bundled InstructIE record of the
language (train, valid, test) answered by its gold triples in OneKE's shape (the head typed by
the record's topic, the tail untyped, as OneKE answers), merged into one graph, and judged
against the gold entities (split / joined names, see kgopt.graph.quality). Usage:

    .venv/bin/python scripts/bench_kg.py --limit 10 [--langs zh,en]
    .venv/bin/python scripts/bench_kg.py --merge-only
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

import ujson
from loguru import logger

from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import connect
from kgopt.core.scoring import ccks2023_score, match_count
from kgopt.core.stats import RecordCount, paired_bootstrap
from kgopt.data.readers import read_instructie
from kgopt.locations import CHECKOUT
from kgopt.extraction import extract
from kgopt.graph.build import build_graph, mentions_from_labels
from kgopt.graph.export import read_graph
from kgopt.graph.quality import gold_entities, graph_vs_gold, merge_quality

OUT = Path("runs/bench-kg")
HEADER = (
    "| lang | program | docs | gold triples | edges | triple P | triple R | triple F1 | CCKS F1 | CCKS Rouge-2 | CCKS score "
    "| nodes | mentions | split entities | joined entities | calls | tokens | seconds |"
)


def _documents(lang: str, limit: int, out: Path) -> tuple[Path, list]:
    records = list(read_instructie(CHECKOUT / "dataset" / "InstructIE" / f"test_{lang}.json"))[:limit]
    path = out / f"docs_{lang}.jsonl"
    path.write_text("".join(ujson.dumps({"id": r.id, "cate": r.cate, "text": r.text}, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path, records


def _per_document_triples(out: Path) -> dict[str, list[tuple]]:
    """Each document's predicted (head, relation, tail) triples, from the job's results log."""
    by_doc: dict[str, list[tuple]] = {}
    for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
        row = ujson.loads(line)
        for t in (row.get("mentions") or {}).get("triples", ()):
            by_doc.setdefault(str(row["doc"]), []).append((t["head"], t["relation"], t["tail"]))
    return by_doc


def run_one(lang: str, variant: str, program: Path, docs: Path, records: list, conn) -> dict:
    out = OUT / f"{lang}-{variant}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh job: every call is really made
    started = time.monotonic()
    report = extract(docs, lang, out, tasks=["KG"], programs=[program], connection=conn, workers=1)
    seconds = time.monotonic() - started
    graph = read_graph(out)
    gold = [(l["head"], l["relation"], l["tail"]) for r in records for l in r.labels]
    match = graph_vs_gold(graph, gold)
    predicted = _per_document_triples(out)
    ccks = ccks2023_score([([(l["head"], l["relation"], l["tail"]) for l in r.labels], predicted.get(r.id, [])) for r in records])
    merge = merge_quality(graph, gold_entities(records))
    u = report.usage
    # Per document: the triples it was asked for, matched exactly (for the paired interval).
    per_doc = []
    for r in records:
        gold_r, pred_r = [(l["head"], l["relation"], l["tail"]) for l in r.labels], predicted.get(r.id, [])
        per_doc.append([r.id, match_count(gold_r, pred_r), len(pred_r), len(gold_r)])
    return {
        "lang": lang, "program": variant, "program_file": str(program), "docs": len(records), "gold_triples": match["gold"],
        "edges": match["edges"], "triple_P": match["P"], "triple_R": match["R"], "triple_F1": match["F1"], "ccks": ccks,
        "nodes": len(graph.nodes), "mentions": sum(n.mentions for n in graph.nodes.values()), "merge": merge,
        "calls": u.get("calls", 0), "tokens": u.get("total_tokens", 0), "seconds": round(seconds, 1), "failed_calls": len(report.failed),
        "record_counts": per_doc,
    }


def merge_on_gold(lang: str) -> dict:
    """The merge alone: gold answers in OneKE's shape over every bundled record of ``lang``."""
    records = [r for split in ("train", "valid", "test") for r in read_instructie(CHECKOUT / "dataset" / "InstructIE" / f"{split}_{lang}.json")]
    units = []
    for r in records:
        labels = [{"head": l["head"], "head_type": r.cate or "", "relation": l["relation"], "tail": l["tail"]} for l in r.labels]
        units.append(({"doc": r.id, "chunk": 0, "task": "KG", "program": "gold"}, mentions_from_labels("KG", labels, r.text)))
    graph = build_graph(units)
    merge = merge_quality(graph, gold_entities(records))
    return {"lang": lang, "records": len(records), "nodes": len(graph.nodes), "edges": len(graph.edges), **merge}


def _row(r: dict) -> str:
    c, m = r["ccks"], r["merge"]
    return (
        f"| {r['lang']} | {r['program']} | {r['docs']} | {r['gold_triples']} | {r['edges']} | {r['triple_P']:.2f} | {r['triple_R']:.2f} "
        f"| {r['triple_F1']:.2f} | {c['F1']:.2f} | {c['rouge2']:.2f} | {c['score']:.2f} | {r['nodes']} | {r['mentions']} "
        f"| {m['split']} | {m['joined']} | {r['calls']} | {r['tokens']} | {r['seconds']:.0f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=10, help="test records (documents) per language")
    ap.add_argument("--langs", default="zh,en")
    ap.add_argument("--merge-only", action="store_true", help="measure the merge on gold answers (no model)")
    args = ap.parse_args()
    if args.merge_only:
        print("| lang | records | gold names found | nodes | untyped nodes | split names | joined names | examples |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for lang in args.langs.split(","):
            m = merge_on_gold(lang)
            ex = "; ".join(f"{e['name']}: gold {e['gold_types']} -> {e['nodes']}" for e in (m["split_examples"] + m["joined_examples"])[:3])
            print(f"| {lang} | {m['records']} | {m['gold_names_found']} | {m['nodes']} | {m['untyped']} | {m['split']} | {m['joined']} | {ex} |")
        return
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    OUT.mkdir(parents=True, exist_ok=True)
    conn = connect(resolve_endpoint(), cache=False)
    print(f"model: {conn.model} ({conn.identity}), no response cache\n")
    print(HEADER)
    print("|" + "---|" * 2 + "---:|" * (HEADER.count("|") - 3))
    differences = []
    for lang in args.langs.split(","):
        docs, records = _documents(lang, args.limit, OUT)
        rows = {}
        for variant, program in (("zero-shot", CHECKOUT / "programs" / f"KG_{lang}.json"), ("compiled", CHECKOUT / "compiled" / f"KG_{lang}.json")):
            rows[variant] = row = run_one(lang, variant, program, docs, records, conn)
            print(_row(row), flush=True)
            with open(OUT / "results.jsonl", "a", encoding="utf-8") as fh:
                fh.write(ujson.dumps(row, ensure_ascii=False) + "\n")
        a, b = ([RecordCount(*c) for c in rows[v]["record_counts"]] for v in ("zero-shot", "compiled"))
        differences.append((lang, paired_bootstrap(a, b)))
    print("\nPer-document triple F1 (exact match), compiled minus zero-shot, paired over documents:")
    for lang, d in differences:
        print(f"- {lang}: {d.line()}" + ("" if d.significant else f" (not significant at n = {d.n})"))


if __name__ == "__main__":
    main()
