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
    """Per gold name: more nodes than the gold has entities of that name is a ``split``
    (one real entity over several nodes); fewer is a ``joined`` (several real entities in one
    node). ``untyped``: nodes without a type. Names the graph does not have are not counted."""
    nodes_of: dict[str, list[str]] = defaultdict(list)
    for nid, fs in _forms(graph).items():
        for f in fs:
            nodes_of[f].append(nid)
    entities_of: dict[str, set[str]] = defaultdict(set)
    for name, type_ in gold:
        entities_of[name].add(type_)
    split, joined = [], []
    for name, types in sorted(entities_of.items()):
        found = nodes_of.get(name, [])
        if len(found) > len(types):
            split.append(name)
        elif 0 < len(found) < len(types):
            joined.append(name)

    def example(name: str) -> dict[str, Any]:
        return {"name": name, "gold_types": sorted(entities_of[name]), "nodes": [(graph.nodes[i].name, graph.nodes[i].type) for i in nodes_of[name]]}

    return {
        "gold_names_found": sum(1 for name in entities_of if name in nodes_of),
        "split": len(split), "joined": len(joined), "untyped": sum(not n.type for n in graph.nodes.values()),
        "split_examples": [example(n) for n in split[:10]], "joined_examples": [example(n) for n in joined[:10]],
    }
