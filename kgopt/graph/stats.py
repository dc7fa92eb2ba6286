"""Counts over an exported graph directory (``kgopt graph-stats DIR``)."""

from __future__ import annotations

import csv
import os
from collections import Counter
from typing import Any

from kgopt.data.jsonio import iter_json
from kgopt.errors import DataError
from kgopt.graph.export import export_files


def graph_stats(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Nodes by type, triples by relation, documents and grounding, from ``nodes.csv`` and ``triples.jsonl``."""
    nodes_csv, triples = export_files(out_dir)
    types: Counter = Counter()
    with open(nodes_csv, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            types[row.get("type") or "(untyped)"] += 1
    relations: Counter = Counter()
    observations = grounded = 0
    docs: set = set()
    for lineno, row in iter_json(triples):
        if not isinstance(row, dict) or "relation" not in row:
            raise DataError("not a triple object", str(triples), lineno)
        relations[row["relation"]] += 1
        for p in row.get("provenance", ()):
            observations += 1
            docs.add(p.get("doc"))
            grounded += bool(p.get("head_span") and p.get("tail_span"))
    return {
        "nodes": sum(types.values()),
        "triples": sum(relations.values()),
        "observations": observations,
        "grounded_observations": grounded,
        "documents_with_triples": len(docs),
        "nodes_by_type": dict(types.most_common()),
        "triples_by_relation": dict(relations.most_common()),
    }
