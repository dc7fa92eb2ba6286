"""Benchmark: the knowledge graph `kgopt extract` builds, against the gold triples of its texts.

For each language: the first --limit bundled InstructIE test records (dataset/InstructIE/
test_<lang>.json; never read by the compiler) become the documents, with their topics. They
go through `kgopt extract --tasks KG` three times, on the configured model (the embedded Qwen
by default), with no response cache:

- zero-shot: the zero-shot baseline, programs/KG_<lang>.json;
- zero-shot-constrained: the same program with the chunk's answer schema enforced by the server
  (ProgramSettings(output="json"), no demonstrations; written to runs/bench-kg/ as
  KG_<lang>-zero-shot-constrained.json and given to extract as a program file);
- compiled: the compiled program, compiled/KG_<lang>.json.

Reported per job (one markdown row each, as `kgopt extract` builds the graph: its programs parse
answers leniently):

- triple precision, recall and F1 of the merged graph against the union of gold triples: an
  edge matches a gold triple when the relation is equal and the gold head and tail are among
  the surface forms (name or aliases, normalised as the merge does) of the edge's two nodes;
- the CCKS2023 score per record (triple F1, Rouge-2, their mean), from each document's calls;
- nodes, edges, mentions, merge statistics (see kgopt.graph.quality), and calls, tokens, seconds.

Then the headline, per language: each job's raw answers (results.jsonl) are re-scored per
document with kgopt's scorer (exact (head, relation, tail) matches, each gold triple matched at
most once), pooled into micro triple F1, the way `kgopt evaluate --vs-zero-shot` scores
(compare_with_zero_shot in kgopt/evaluation.py): the zero-shot baseline three ways on the same
documents, (i) strict: its answers parsed officially (bare json.loads), (ii) lenient: the same
answers parsed leniently (repaired JSON, validated against the chunk), (iii) constrained: the
constrained job's answers parsed officially; the compiled program's answers parsed officially. The strongest
baseline is the one with the highest F1 (two decimals; a tie goes to the first of strict,
lenient, constrained), and the compiled program's ΔF1 against it is given with n and its paired
95% bootstrap interval over documents (kgopt/core/stats.py), "not significant at n = N" when
the interval contains 0.

Rows are printed as markdown and appended as JSON to runs/bench-kg/results.jsonl (one per job;
the compiled row also holds the comparison: zero_shot_f1, compiled_f1, strongest, difference).
The per-document counts behind the headline go to benchmarks/counts/kg-<lang>.jsonl, one line
per run and document ({"run", "record", "tp", "pred", "gold"}; runs "zero-shot strict",
"zero-shot lenient", "zero-shot constrained", "compiled"), from which every F1 and interval
can be recomputed.

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
from dataclasses import replace
from pathlib import Path

import ujson
from loguru import logger

from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import connect
from kgopt.core.scoring import PredictionGroup, ccks2023_score, score_groups
from kgopt.core.stats import PairedDifference, RecordCount, micro_f1, paired_bootstrap
from kgopt.data.readers import read_instructie
from kgopt.evaluation import ZERO_SHOT_WAYS
from kgopt.evaluation import strongest_way  # the rule of kgopt evaluate --vs-zero-shot
from kgopt.locations import CHECKOUT
from kgopt.extraction import extract, plan_programs
from kgopt.graph.build import build_graph, mentions_from_labels
from kgopt.graph.export import read_graph
from kgopt.graph.quality import gold_entities, graph_vs_gold, merge_quality
from kgopt.program import load_program

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_compile import write_counts  # noqa: E402  (the one per-record counts format of benchmarks/counts/)

OUT = Path("runs/bench-kg")
COUNTS = Path("benchmarks/counts")
HEADER = (
    "| lang | program | docs | gold triples | edges | triple P | triple R | triple F1 | CCKS F1 | CCKS Rouge-2 | CCKS score "
    "| nodes | mentions | split entities | joined entities | calls | tokens | seconds |"
)
HEADLINE = (
    "| lang | n | zero-shot strict | zero-shot lenient | zero-shot constrained | compiled | strongest "
    "| ΔF1 vs strongest [95% CI] |"
)
# The extract jobs, in order, and the runs scored from them: (run, job, lenient parse).
JOBS = ("zero-shot", "zero-shot-constrained", "compiled")
RUNS = (
    ("zero-shot strict", "zero-shot", False),
    ("zero-shot lenient", "zero-shot", True),
    ("zero-shot constrained", "zero-shot-constrained", False),
    ("compiled", "compiled", False),
)


def _documents(lang: str, limit: int, out: Path) -> tuple[Path, list]:
    records = list(read_instructie(CHECKOUT / "dataset" / "InstructIE" / f"test_{lang}.json"))[:limit]
    path = out / f"docs_{lang}.jsonl"
    path.write_text("".join(ujson.dumps({"id": r.id, "cate": r.cate, "text": r.text}, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path, records


def constrained_program(lang: str, out: Path) -> Path:
    """The zero-shot baseline with the answer schema enforced (output "json"), as a program file in ``out``."""
    program, manifest = load_program(CHECKOUT / "programs" / f"KG_{lang}.json", task="KG", lang=lang)
    program.settings = replace(program.settings, output="json")  # re-checked by ProgramSettings
    return program.save_artifact(out / f"KG_{lang}-zero-shot-constrained.json", {**manifest, "zero_shot": "constrained"})


def _result_rows(out: Path) -> list[dict]:
    """The job's results log, the last line of each unit (a failed unit retried is superseded, as in the job)."""
    rows: dict[str, dict] = {}
    for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = ujson.loads(line)
            rows[row["key"]] = row
    return list(rows.values())


def answer_groups(out: Path, program: Path, lang: str, records: list) -> dict[str, PredictionGroup]:
    """Each document's raw answers in the job ``out``, with the schema chunk each call was asked
    (recovered from the program's plan: the row's topic and part), as the scorer's groups, keyed
    ``source/id`` (the scorer's record keys); every document has one, answered or not."""
    (tp,) = plan_programs(lang, ["KG"], [program])
    keys = {str(r.id): f"{r.source}\x1f{r.id}" for r in records}
    groups = {keys[str(r.id)]: PredictionGroup(source=r.source, gold=r.labels) for r in records}
    for row in _result_rows(out):
        g = groups[keys[str(row["doc"])]]
        g.outputs.append(row.get("output", ""))
        g.chunks.append(tp.program.chunks(tp.topics[row["topic"]])[row["part"]])
    return groups


def doc_counts(groups: dict[str, PredictionGroup], lenient: bool) -> list[RecordCount]:
    """Per document: exact triple matches, predicted and gold triples (kgopt's scorer, official or lenient parse)."""
    return score_groups("KG", groups, lenient=lenient, ccks=False).records


def pooled_f1(counts: list[RecordCount]) -> float:
    """Micro triple F1 over the documents' counts (the paired interval's F1), two decimals."""
    return round(float(micro_f1(sum(c.tp for c in counts), sum(c.pred for c in counts), sum(c.gold for c in counts))), 2)


def compare(lang: str, groups: dict[str, dict[str, PredictionGroup]]) -> tuple[dict, PairedDifference]:
    """The runs' counts (written to benchmarks/counts/kg-<lang>.jsonl), the strongest zero-shot way,
    and the compiled program's F1 minus its, paired over documents."""
    runs = {run: doc_counts(groups[job], lenient) for run, job, lenient in RUNS}
    counts = COUNTS / f"kg-{lang}.jsonl"
    write_counts(counts, runs)
    f1s = {way: pooled_f1(runs[f"zero-shot {way}"]) for way in ZERO_SHOT_WAYS}
    best = strongest_way(f1s)
    d = paired_bootstrap(runs[f"zero-shot {best}"], runs["compiled"])
    summary = {"n": d.n, "zero_shot_f1": f1s, "compiled_f1": pooled_f1(runs["compiled"]), "strongest": best,
               "difference": d.to_json(), "counts": str(counts)}
    return summary, d


def run_one(lang: str, variant: str, program: Path, docs: Path, records: list, conn) -> tuple[dict, dict[str, PredictionGroup]]:
    out = OUT / f"{lang}-{variant}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh job: every call is really made
    started = time.monotonic()
    report = extract(docs, lang, out, tasks=["KG"], programs=[program], connection=conn, workers=1)
    seconds = time.monotonic() - started
    graph = read_graph(out)
    gold = [(l["head"], l["relation"], l["tail"]) for r in records for l in r.labels]
    match = graph_vs_gold(graph, gold)
    predicted = _per_document_triples(out)
    ccks = ccks2023_score([([(l["head"], l["relation"], l["tail"]) for l in r.labels], predicted.get(str(r.id), [])) for r in records])
    merge = merge_quality(graph, gold_entities(records))
    u = report.usage
    row = {
        "lang": lang, "program": variant, "program_file": str(program), "docs": len(records), "gold_triples": match["gold"],
        "edges": match["edges"], "triple_P": match["P"], "triple_R": match["R"], "triple_F1": match["F1"], "ccks": ccks,
        "nodes": len(graph.nodes), "mentions": sum(n.mentions for n in graph.nodes.values()), "merge": merge,
        "calls": u.get("calls", 0), "tokens": u.get("total_tokens", 0), "seconds": round(seconds, 1), "failed_calls": len(report.failed),
    }
    return row, answer_groups(out, program, lang, records)


def _per_document_triples(out: Path) -> dict[str, list[tuple]]:
    """Each document's triples as the graph got them (the job's mentions), for the CCKS columns."""
    by_doc: dict[str, list[tuple]] = {}
    for row in _result_rows(out):
        for t in (row.get("mentions") or {}).get("triples", ()):
            by_doc.setdefault(str(row["doc"]), []).append((t["head"], t["relation"], t["tail"]))
    return by_doc


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
    headlines = []
    for lang in args.langs.split(","):
        docs, records = _documents(lang, args.limit, OUT)
        programs = {"zero-shot": CHECKOUT / "programs" / f"KG_{lang}.json", "zero-shot-constrained": constrained_program(lang, OUT),
                    "compiled": CHECKOUT / "compiled" / f"KG_{lang}.json"}
        groups = {}
        for variant in JOBS:
            row, groups[variant] = run_one(lang, variant, programs[variant], docs, records, conn)
            print(_row(row), flush=True)
            if variant == "compiled":  # its row also holds the comparison, made once every job has run
                summary, d = compare(lang, groups)
                row.update(summary)
                headlines.append((lang, summary, d))
            with open(OUT / "results.jsonl", "a", encoding="utf-8") as fh:
                fh.write(ujson.dumps(row, ensure_ascii=False) + "\n")
    print("\nPer-document triple F1 (exact match, pooled over documents), each job's answers re-scored; "
          "the compiled program minus the strongest zero-shot baseline, paired over documents:\n")
    print(HEADLINE)
    print("|---|" + "---:|" * 5 + "---|---|")
    for lang, summary, d in headlines:
        print(_headline(lang, summary, d))


def _headline(lang: str, summary: dict, d: PairedDifference) -> str:
    f1s = summary["zero_shot_f1"]
    verdict = f" ({d.verdict()})" if d.verdict() else ""
    return (
        f"| {lang} | {d.n} | {f1s['strict']:.2f} | {f1s['lenient']:.2f} | {f1s['constrained']:.2f} | {summary['compiled_f1']:.2f} "
        f"| {summary['strongest']} | {d.line()} vs zero-shot {summary['strongest']}{verdict} |"
    )

if __name__ == "__main__":
    main()
