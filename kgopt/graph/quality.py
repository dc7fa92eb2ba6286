"""How good a merged graph is, against gold triples. Pure: no I/O.

- ``graph_vs_gold``: triple precision/recall/F1 after merging. An edge matches a gold triple
  when the relation is equal and the gold head and tail are among the surface forms (name or
  aliases, normalised as the merge does) of the edge's two nodes.
- ``merge_quality``: how often the merge split one real entity over several nodes, or joined
  several real entities into one node, judged by the gold entities of the same texts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

from kgopt.graph.build import Graph, normalise


def _forms(graph: Graph) -> dict[str, set[str]]:
    return {n.id: {normalise(n.name), *map(normalise, n.aliases)} for n in graph.nodes.values()}


def graph_vs_gold(graph: Graph, gold: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    forms = _forms(graph)
    gold_set = {(normalise(h), r, normalise(t)) for h, r, t in gold}
    matched_gold: set[tuple[str, str, str]] = set()
    matched_edges = 0
    for e in graph.edges:
        hits = {g for g in gold_set if g[1] == e.relation and g[0] in forms[e.head] and g[2] in forms[e.tail]}
        matched_edges += bool(hits)
        matched_gold |= hits
    p = matched_edges / len(graph.edges) if graph.edges else 0.0
    r = len(matched_gold) / len(gold_set) if gold_set else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"gold": len(gold_set), "edges": len(graph.edges), "matched_edges": matched_edges, "matched_gold": len(matched_gold),
            "P": round(p * 100, 2), "R": round(r * 100, 2), "F1": round(f1 * 100, 2)}


def gold_entities(records: Iterable[Any]) -> set[tuple[str, str]]:
    """``(normalised name, type)`` of every head and tail in InstructIE-style records' labels."""
    out = set()
    for r in records:
        for label in r.labels:
            out.add((normalise(label["head"]), label.get("head_type") or ""))
            out.add((normalise(label["tail"]), label.get("tail_type") or ""))
    return out


def merge_quality(graph: Graph, gold: set[tuple[str, str]]) -> dict[str, Any]:
    """``split``: gold entities found in more than one node (with examples); ``joined``: nodes
    holding more than one gold entity; ``untyped``: nodes without a type."""
    forms = _forms(graph)
    nodes_of: dict[str, list[str]] = defaultdict(list)
    for nid, fs in forms.items():
        for f in fs:
            nodes_of[f].append(nid)
    gold_names = {name for name, _ in gold}
    split = sorted(name for name in gold_names if len(nodes_of.get(name, ())) > 1)
    joined = []
    for nid, fs in forms.items():
        held = {name for name in fs if name in gold_names}
        if len(held) > 1:
            joined.append(sorted(held))
    examples = [{"name": name, "nodes": [(graph.nodes[i].name, graph.nodes[i].type) for i in nodes_of[name]]} for name in split[:10]]
    return {"split": len(split), "joined": len(joined), "untyped": sum(not n.type for n in graph.nodes.values()),
            "split_examples": examples, "joined_examples": joined[:10]}
