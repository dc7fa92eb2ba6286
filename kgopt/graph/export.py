"""Write a merged graph in the formats people load: JSON lines, CSV, GraphML, Cypher.

Every file is written to a temporary name and renamed into place, so a reader (or a
killed run) never sees half a file.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from kgopt.data.jsonio import dumps, iter_json, write_atomic
from kgopt.errors import DataError
from kgopt.graph.build import Edge, Graph, Node

EXPORTS = ("triples.jsonl", "nodes.csv", "edges.csv", "graph.graphml", "graph.cypher")


def triple_rows(graph: Graph) -> list[dict[str, Any]]:
    rows = []
    for e in graph.edges:
        h, t = graph.nodes[e.head], graph.nodes[e.tail]
        rows.append(
            {
                "head": h.name,
                "head_type": h.type,
                "relation": e.relation,
                "tail": t.name,
                "tail_type": t.type,
                "count": e.count,
                "head_id": h.id,
                "tail_id": t.id,
                "provenance": e.provenance,
            }
        )
    return rows


def _triples(graph: Graph, fh) -> None:
    for row in triple_rows(graph):
        fh.write(dumps(row) + "\n")


def _nodes_csv(graph: Graph, fh) -> None:
    w = csv.writer(fh)
    w.writerow(["id", "name", "type", "aliases", "mentions", "docs"])
    for n in graph.nodes.values():
        w.writerow([n.id, n.name, n.type, "|".join(n.aliases), n.mentions, n.docs])


def _edges_csv(graph: Graph, fh) -> None:
    w = csv.writer(fh)
    w.writerow(["source", "target", "relation", "count", "docs"])
    for e in graph.edges:
        w.writerow([e.head, e.tail, e.relation, e.count, len(edge_docs(e.provenance))])


def to_networkx(graph: Graph):
    """A ``networkx.MultiDiGraph``: one edge per (head, relation, tail), keyed by the relation."""
    import networkx as nx

    g = nx.MultiDiGraph()
    for n in graph.nodes.values():
        g.add_node(n.id, name=n.name, type=n.type, aliases="|".join(n.aliases), mentions=n.mentions, docs=n.docs)
    for e in graph.edges:
        docs = edge_docs(e.provenance)
        g.add_edge(e.head, e.tail, key=e.relation, relation=e.relation, count=e.count, docs="|".join(docs))
    return g


def _graphml(graph: Graph, fh) -> None:
    import networkx as nx

    fh.write("\n".join(nx.generate_graphml(to_networkx(graph), encoding="utf-8")) + "\n")


def edge_docs(provenance: list[dict[str, Any]]) -> list[str]:
    """The documents an edge was seen in, sorted (the same list in every export and database)."""
    return sorted({str(p.get("doc")) for p in provenance})


def cypher_string(s: str) -> str:
    """A Cypher string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r") + "'"


def cypher_name(s: str) -> str:
    """A backtick-quoted Cypher name (relationship type); backticks doubled."""
    return "`" + (s or "RELATED_TO").replace("`", "``") + "`"


def _cypher(graph: Graph, fh) -> None:
    fh.write("// kgopt graph: run with cypher-shell -f graph.cypher (idempotent: MERGE on ids)\n")
    fh.write("CREATE CONSTRAINT kgopt_entity_id IF NOT EXISTS FOR (n:Entity) REQUIRE n.id IS UNIQUE;\n")
    for n in graph.nodes.values():
        aliases = "[" + ", ".join(cypher_string(a) for a in n.aliases) + "]"
        fh.write(
            f"MERGE (n:Entity {{id: {cypher_string(n.id)}}}) SET n.name = {cypher_string(n.name)}, "
            f"n.type = {cypher_string(n.type)}, n.aliases = {aliases}, n.mentions = {n.mentions}, n.docs = {n.docs};\n"
        )
    for e in graph.edges:
        docs = "[" + ", ".join(cypher_string(d) for d in edge_docs(e.provenance)) + "]"
        fh.write(
            f"MATCH (h:Entity {{id: {cypher_string(e.head)}}}), (t:Entity {{id: {cypher_string(e.tail)}}}) "
            f"MERGE (h)-[r:{cypher_name(e.relation)}]->(t) SET r.count = {e.count}, r.docs = {docs};\n"
        )


def write_exports(graph: Graph, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write every export under ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writers = {
        "triples.jsonl": _triples,
        "nodes.csv": _nodes_csv,
        "edges.csv": _edges_csv,
        "graph.graphml": _graphml,
        "graph.cypher": _cypher,
    }
    paths = {}
    for name, fn in writers.items():
        write_atomic(out / name, lambda fh, fn=fn: fn(graph, fh))
        paths[name] = out / name
    return paths


def export_files(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``nodes.csv`` and ``triples.jsonl`` of a ``kgopt extract --out`` directory (the files the
    graph is read back from); a clear error naming the one that is missing."""
    out = Path(out_dir)
    nodes_csv, triples = out / "nodes.csv", out / "triples.jsonl"
    for p in (nodes_csv, triples):
        if not p.is_file():
            raise DataError("missing; is this a `kgopt extract --out` directory?", str(p))
    return nodes_csv, triples


def read_graph(out_dir: str | os.PathLike) -> Graph:
    """The graph a ``kgopt extract --out`` directory holds, read back from ``nodes.csv`` and
    ``triples.jsonl`` (for loading it into a database later)."""
    nodes_csv, triples = export_files(out_dir)
    nodes: dict[str, Node] = {}
    with open(nodes_csv, encoding="utf-8", newline="") as fh:
        for lineno, row in enumerate(csv.DictReader(fh), start=2):
            try:
                aliases = row["aliases"].split("|") if row["aliases"] else []
                nodes[row["id"]] = Node(row["id"], row["name"], row["type"], aliases, int(row["mentions"]), int(row["docs"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"not a node row ({type(exc).__name__}: {exc})", str(nodes_csv), lineno) from None
    edges = []
    for lineno, row in iter_json(triples):
        try:
            edge = Edge(row["head_id"], row["relation"], row["tail_id"], int(row["count"]), list(row["provenance"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"not a triple row ({type(exc).__name__}: {exc})", str(triples), lineno) from None
        if edge.head not in nodes or edge.tail not in nodes:
            raise DataError(f"names a node that is not in {nodes_csv.name}", str(triples), lineno)
        edges.append(edge)
    return Graph(nodes, edges)
