"""Counts over an exported graph directory (``kgopt graph-stats DIR``).

The files are read with ``read_graph``, so a bad row is the same ``DataError`` (file and
line) here as in ``graph-load``.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from kgopt.graph.export import read_graph


def graph_stats(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Nodes by type, triples by relation, documents and grounding, from ``nodes.csv`` and ``triples.jsonl``."""
    graph = read_graph(out_dir)
    types = Counter(n.type or "(untyped)" for n in graph.nodes.values())
    relations = Counter(e.relation for e in graph.edges)
    observations = grounded = 0
    docs: set = set()
    for e in graph.edges:
        for p in e.provenance:
            observations += 1
            docs.add(str(p.get("doc")))  # as edge_docs names them (and a model's list id stays countable)
            grounded += bool(p.get("head_span") and p.get("tail_span"))
    return {
        "nodes": len(graph.nodes),
        "triples": len(graph.edges),
        "observations": observations,
        "grounded_observations": grounded,
        "documents_with_triples": len(docs),
        "nodes_by_type": dict(types.most_common()),
        "triples_by_relation": dict(relations.most_common()),
    }
