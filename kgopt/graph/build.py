"""From extracted labels to one merged knowledge graph. Pure: no I/O, no providers.

Two steps:
1. ``mentions_from_labels`` turns one call's parsed labels (any task) into graph mentions
   with character offsets in the document: typed triples, and bare entities.
2. ``GraphBuilder`` merges mentions from many documents. An entity is its normalised name
   plus its type (the surface forms it was seen under are kept as aliases); a mention
   without a type (RE heads/tails, event arguments, OneKE KG tails) joins the typed entity
   of the same name when exactly one exists, or else the one typed in its own document.
   Duplicate triples collapse into one edge with a count and the provenance of every window
   that produced it.

Everything is ordered by the input's order, never by completion order, so the graph of a
run does not depend on how many workers ran it or where it was interrupted.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from kgopt.core.windows import find_span
from kgopt.core.shapes import shape_named
from kgopt.core.tasks import TASKS, get_task

# The tasks that run on raw text (EEA needs given triggers, so its shape builds no graph).
EXTRACT_TASKS = tuple(name for name, spec in TASKS.items() if shape_named(spec.shape).builds_graph)
EVIDENCE = 5  # mentions kept per node for the graph view (edges keep all their provenance)
_EDGE_QUOTES = "\"'“”‘’《》「」『』【】()（）[]<>"
_SPACES = re.compile(r"\s+")


def normalise(name: str) -> str:
    """The merge key of a name: NFKC, casefolded, single spaces, no wrapping quotes/brackets."""
    s = unicodedata.normalize("NFKC", name)
    s = _SPACES.sub(" ", s).strip().strip(_EDGE_QUOTES).strip()
    return s.casefold()


def node_id(name_key: str, type_: str) -> str:
    return "n" + hashlib.sha1(f"{type_}\x1f{name_key}".encode("utf-8")).hexdigest()[:16]


def mentions_from_labels(task: str, labels: list[dict[str, Any]], text: str, offset: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Graph mentions of one call's labels; spans are ``[start, end]`` in the document or None."""
    shape = shape_named(get_task(task).shape)
    if not shape.builds_graph:
        raise ValueError(f"task {task} cannot build a graph; use one of {', '.join(EXTRACT_TASKS)}")
    return shape.mentions(labels, lambda s: find_span(text, s, offset))


@dataclass
class Node:
    id: str
    name: str
    type: str
    aliases: list[str] = field(default_factory=list)
    mentions: int = 0
    docs: int = 0
    evidence: list[dict[str, Any]] = field(default_factory=list)  # the first EVIDENCE mentions: where + surface + span


@dataclass
class Edge:
    head: str  # node ids
    relation: str
    tail: str
    count: int = 0
    provenance: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Graph:
    nodes: dict[str, Node]
    edges: list[Edge]

    def node(self, nid: str) -> Node:
        return self.nodes[nid]


class GraphBuilder:
    """Collect mentions (``add``) in input order, then ``build`` the merged graph."""

    def __init__(self):
        self._entities: list[tuple[str, str, str, dict]] = []  # (key, type, surface, where + span)
        self._triples: list[tuple[int, str, int, dict]] = []  # (head entity idx, relation, tail entity idx, provenance)

    def _entity(self, name: str, type_: str, where: dict, span=None) -> int:
        self._entities.append((normalise(name), type_, name, {**where, "text": name, "span": span}))
        return len(self._entities) - 1

    def add(self, where: dict[str, Any], mentions: dict[str, list[dict[str, Any]]]) -> None:
        """``where``: the unit's provenance (doc, chunk, task, program)."""
        for e in mentions.get("entities", ()):
            if normalise(e["name"]):
                self._entity(e["name"], e.get("type", ""), where, e.get("span"))
        for t in mentions.get("triples", ()):
            if not (normalise(t["head"]) and normalise(t["tail"]) and t.get("relation")):
                continue
            h = self._entity(t["head"], t.get("head_type", ""), where, t.get("head_span"))
            tl = self._entity(t["tail"], t.get("tail_type", ""), where, t.get("tail_span"))
            prov = {
                **where,
                "head_text": t["head"],
                "tail_text": t["tail"],
                "head_span": t.get("head_span"),
                "tail_span": t.get("tail_span"),
            }
            self._triples.append((h, t["relation"], tl, prov))

    def build(self) -> Graph:
        typed: dict[str, list[str]] = {}
        typed_in_doc: dict[tuple[str, Any], list[str]] = {}
        for key, type_, _, where in self._entities:
            if type_:
                for seen in (typed.setdefault(key, []), typed_in_doc.setdefault((key, where.get("doc")), [])):
                    if type_ not in seen:
                        seen.append(type_)

        def resolved(i: int) -> tuple[str, str]:
            """An untyped mention takes the type of the one typed entity of its name; when the
            name has several, the one typed in the same document (OneKE answers type only the
            head: "Paris" the city and "Paris" the person are told apart by their documents)."""
            key, type_, _, where = self._entities[i]
            if not type_:
                candidates = typed.get(key, ())
                if len(candidates) > 1:
                    candidates = typed_in_doc.get((key, where.get("doc")), ())
                if len(candidates) == 1:
                    type_ = candidates[0]
            return key, type_

        surfaces: dict[tuple[str, str], Counter] = {}
        first_seen: dict[tuple[str, str], dict[str, int]] = {}
        docs: dict[tuple[str, str], set] = {}
        evidence: dict[tuple[str, str], list[dict]] = {}
        order: list[tuple[str, str]] = []
        for i, (_, _, surface, where) in enumerate(self._entities):
            k = resolved(i)
            if k not in surfaces:
                surfaces[k], first_seen[k], docs[k], evidence[k] = Counter(), {}, set(), []
                order.append(k)
            surfaces[k][surface] += 1
            first_seen[k].setdefault(surface, i)
            docs[k].add(where.get("doc"))
            if len(evidence[k]) < EVIDENCE and where not in evidence[k]:
                evidence[k].append(where)

        nodes: dict[str, Node] = {}
        ids: dict[tuple[str, str], str] = {}
        for k in order:
            forms = sorted(surfaces[k], key=lambda s: (-surfaces[k][s], first_seen[k][s]))
            nid = node_id(*k)
            ids[k] = nid
            nodes[nid] = Node(nid, forms[0], k[1], forms[1:], sum(surfaces[k].values()), len(docs[k]), evidence[k])

        edges: dict[tuple[str, str, str], Edge] = {}
        seen_units: dict[tuple[str, str, str], set] = {}
        for h, rel, t, prov in self._triples:
            ek = (ids[resolved(h)], rel, ids[resolved(t)])
            edge = edges.get(ek)
            if edge is None:
                edge = edges[ek] = Edge(ek[0], rel, ek[2])
                seen_units[ek] = set()
            unit = (prov.get("doc"), prov.get("chunk"), prov.get("task"))
            if unit in seen_units[ek]:
                continue  # one window saying it twice is still one observation
            seen_units[ek].add(unit)
            edge.count += 1
            edge.provenance.append(prov)
        return Graph(nodes, list(edges.values()))


def build_graph(units: Iterable[tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]]) -> Graph:
    """``units``: ``(where, mentions)`` pairs in input order."""
    b = GraphBuilder()
    for where, mentions in units:
        b.add(where, mentions)
    return b.build()
