"""Write a merged graph in the formats people load: JSON lines, CSV, GraphML, Cypher.

Every file is written to a temporary name and renamed into place, so a reader (or a
killed run) never sees half a file.

Reading back (``read_graph``, used by ``graph-stats`` and ``graph-load``) checks every row: a
file that is not UTF-8, not CSV, has a row of the wrong width or a wrong value is a
``DataError`` naming the file and line, never a traceback.

Relationship types: a relation is model output (any text), but a Cypher relationship type is
a name. ``relationship_type`` keeps a relation made of letters (CJK too), digits, underscores
and spaces as it is; any other is mapped to those characters plus a hash of the original
(``"a`b"`` -> ``"a_b__<10 hex>"``), and the original is stored in the relationship's
``relation`` property. So ``coalesce(r.relation, type(r))`` is always the relation as extracted.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Iterator

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


# Names every Cypher engine takes between backticks as they are (FalkorDB refuses a doubled
# backtick, so quoting alone cannot carry any text).
_SAFE_TYPE = re.compile(r"[\w ]+")
_UNSAFE_RUN = re.compile(r"[^\w ]+")
_MAPPED_TYPE = re.compile(r"__[0-9a-f]{10}\Z")
_TYPE_BASE = 64  # characters of a mapped name kept before its hash


def relationship_type(relation: str) -> str:
    """The relationship type a relation is stored under: itself when it is letters, digits,
    underscores and spaces (and does not look like a mapped name), else those characters plus
    ``__`` and 10 hex digits of the original's SHA-1, so two originals never share a type."""
    if relation and _SAFE_TYPE.fullmatch(relation) and not _MAPPED_TYPE.search(relation):
        return relation
    digest = hashlib.sha1(relation.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{_UNSAFE_RUN.sub('_', relation)[:_TYPE_BASE]}__{digest}"


def is_mapped(relation: str) -> bool:
    """Whether the relation's type differs from it (its edges then carry a ``relation`` property)."""
    return relationship_type(relation) != relation


def cypher_name(s: str) -> str:
    """A backtick-quoted Cypher relationship type for relation ``s`` (see ``relationship_type``)."""
    return "`" + relationship_type(s) + "`"


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
        original = f", r.relation = {cypher_string(e.relation)}" if is_mapped(e.relation) else ""
        fh.write(
            f"MATCH (h:Entity {{id: {cypher_string(e.head)}}}), (t:Entity {{id: {cypher_string(e.tail)}}}) "
            f"MERGE (h)-[r:{cypher_name(e.relation)}]->(t) SET r.count = {e.count}, r.docs = {docs}{original};\n"
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


NODE_COLUMNS = ("id", "name", "type", "aliases", "mentions", "docs")
_WHOLE = re.compile(r"[0-9]+")


def _decoded_lines(path: Path) -> Iterator[str]:
    # Decoded here, line by line, so a bad byte is reported at its line (a text-mode file
    # decodes in blocks and raises a UnicodeDecodeError with no line at all).
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or type(exc).__name__}", str(path)) from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"not UTF-8 ({exc.reason} at byte {exc.start} of the line)", str(path), lineno) from None


def iter_csv(path: str | os.PathLike, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` for each record of a CSV file whose header has ``columns`` (any order);
    the line is where the record starts (a quoted field may span lines). Every row must be as
    wide as the header."""
    path = Path(path)
    lines = _decoded_lines(path)
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"empty; expected a header with {', '.join(columns)}", str(path), 1)
        missing = [c for c in columns if c not in header]
        if missing or len(set(header)) != len(header):
            raise DataError(f"header {','.join(header)!r} is not {','.join(columns)!r}", str(path), 1)
        start = reader.line_num + 1
        for row in reader:
            if row:  # a blank line
                if len(row) != len(header):
                    raise DataError(f"{len(row)} fields where the header has {len(header)}", str(path), start)
                yield start, dict(zip(header, row))
            start = reader.line_num + 1
    except csv.Error as exc:  # e.g. "field larger than field limit (131072)"
        raise DataError(f"not readable as CSV: {exc}", str(path), reader.line_num or 1) from None
    finally:
        lines.close()  # the file, now, also when a bad row stops the reading


def _whole(row: dict[str, str], column: str) -> int:
    value = row[column]
    if not _WHOLE.fullmatch(value):
        raise ValueError(f"{column} is {value[:40]!r}, not a whole number")
    return int(value)


def read_nodes(path: str | os.PathLike) -> dict[str, Node]:
    """The nodes of a ``nodes.csv``, every row checked (a ``DataError`` names the line)."""
    nodes: dict[str, Node] = {}
    lines: dict[str, int] = {}
    for lineno, row in iter_csv(path, NODE_COLUMNS):
        try:
            if not row["id"]:
                raise ValueError("empty id")
            if row["id"] in nodes:
                raise ValueError(f"id {row['id']!r} is also the node of line {lines[row['id']]}")
            aliases = row["aliases"].split("|") if row["aliases"] else []
            nodes[row["id"]] = Node(row["id"], row["name"], row["type"], aliases, _whole(row, "mentions"), _whole(row, "docs"))
            lines[row["id"]] = lineno
        except ValueError as exc:
            raise DataError(f"not a node row: {exc}", str(path), lineno) from None
    return nodes


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} is {value!r}, not a non-empty string")
    return value


def triple_edge(row: Any) -> Edge:
    """The edge one ``triples.jsonl`` row describes; ``ValueError`` saying what is wrong."""
    if not isinstance(row, dict):
        raise ValueError(f"a JSON {type(row).__name__}, not an object")
    head, relation, tail = _text(row, "head_id"), _text(row, "relation"), _text(row, "tail_id")
    count = row.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"count is {count!r}, not a whole number")
    provenance = row.get("provenance")
    if not isinstance(provenance, list) or not all(isinstance(p, dict) for p in provenance):
        raise ValueError("provenance is not a list of objects")
    return Edge(head, relation, tail, count, provenance)


def read_graph(out_dir: str | os.PathLike) -> Graph:
    """The graph a ``kgopt extract --out`` directory holds, read back from ``nodes.csv`` and
    ``triples.jsonl`` (for loading it into a database later)."""
    nodes_csv, triples = export_files(out_dir)
    nodes = read_nodes(nodes_csv)
    edges = []
    seen: dict[tuple[str, str, str], int] = {}
    try:
        rows = list(iter_json(triples))
    except OSError as exc:  # unreadable (permissions): the same one-line error as a bad row
        raise DataError(f"cannot read: {exc.strerror or type(exc).__name__}", str(triples)) from None
    for lineno, row in rows:
        try:
            edge = triple_edge(row)
        except ValueError as exc:
            raise DataError(f"not a triple row: {exc}", str(triples), lineno) from None
        if edge.head not in nodes or edge.tail not in nodes:
            raise DataError(f"names a node that is not in {nodes_csv.name}", str(triples), lineno)
        key = (edge.head, edge.relation, edge.tail)
        if key in seen:  # a database would MERGE the two into one edge
            raise DataError(f"the same (head, relation, tail) as line {seen[key]}", str(triples), lineno)
        seen[key] = lineno
        edges.append(edge)
    return Graph(nodes, edges)
