"""``graph.html``: a self-contained, offline picture of a merged graph.

One HTML file with the graph as JSON and cytoscape.js (vendored from npm, checked by hash)
inlined, so it opens from disk with no network. Entities are coloured by type, relations are
labelled directed edges; a search box and type/relation filters narrow what is shown; clicking
an entity or relation shows its aliases, count and provenance: each document with the sentence
and the span highlighted at its character offsets.

Big graphs stay usable: the ``max_nodes`` most-mentioned entities (and the edges between them)
are drawn, and the page says how many were left out. Model output is untrusted: names reach
the page as JSON data (``<`` escaped) and are shown through ``textContent`` only.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from kgopt.core.windows import sentence_around
from kgopt.data.jsonio import dumps, write_atomic
from kgopt.errors import ArtifactError
from kgopt.graph.build import Graph

VIEW = "graph.html"
CYTOSCAPE = Path(__file__).parent / "vendor" / "cytoscape.min.js"
CYTOSCAPE_SHA256 = "081591ab735b2b6a3b31a3c60f8f3a3e2fee8c92939e0c7820ad1208571b6cd8"
MAX_NODES = 400  # drawn at first; a force layout of more is slow and unreadable
MAX_EVIDENCE = 5  # provenance entries per edge shown in the panel (all are in triples.jsonl)
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#17becf",
)


def _cytoscape_js() -> str:
    data = CYTOSCAPE.read_bytes()
    if hashlib.sha256(data).hexdigest() != CYTOSCAPE_SHA256:
        raise ArtifactError(f"{CYTOSCAPE} does not match its recorded SHA-256 (see kgopt/graph/vendor/README.md)")
    return data.decode("utf-8")


def _quote(where: dict[str, Any], span, documents: dict[str, str]) -> dict[str, Any]:
    """Provenance for the panel: document, window, task, and the sentence with the span's offsets in it."""
    out = {"doc": where.get("doc"), "chunk": where.get("chunk"), "task": where.get("task"), "text": where.get("text")}
    text = documents.get(str(where.get("doc")))
    if text is not None and span and 0 <= span[0] < span[1] <= len(text):
        s, e = sentence_around(text, span[0], span[1])
        out.update(sentence=text[s:e], mark=[span[0] - s, span[1] - s], offsets=list(span))
    return out


def view_data(graph: Graph, documents: dict[str, str] | None = None, max_nodes: int = MAX_NODES) -> dict[str, Any]:
    """What the page draws: the ``max_nodes`` most-mentioned nodes, the edges between them, and totals."""
    documents = documents or {}
    degree: Counter = Counter()
    for e in graph.edges:
        degree[e.head] += 1
        degree[e.tail] += 1
    ranked = sorted(graph.nodes.values(), key=lambda n: (-(n.mentions + degree[n.id]), n.name, n.id))
    drawn = {n.id for n in ranked[:max_nodes]}
    nodes = [
        {
            "id": n.id, "name": n.name, "type": n.type, "aliases": n.aliases, "mentions": n.mentions, "docs": n.docs,
            "evidence": [_quote(w, w.get("span"), documents) for w in n.evidence],
        }
        for n in graph.nodes.values()
        if n.id in drawn
    ]
    edges = []
    for i, e in enumerate(graph.edges):
        if e.head in drawn and e.tail in drawn:
            evidence = []
            for p in e.provenance[:MAX_EVIDENCE]:
                head, tail = _quote({**p, "text": p.get("head_text")}, p.get("head_span"), documents), _quote(
                    {**p, "text": p.get("tail_text")}, p.get("tail_span"), documents
                )
                evidence.append({"head": head, "tail": tail})
            edges.append({"id": f"e{i}", "source": e.head, "target": e.tail, "relation": e.relation, "count": e.count, "evidence": evidence})
    types = [t for t, _ in Counter(n.type for n in graph.nodes.values()).most_common()]
    return {
        "nodes": nodes,
        "edges": edges,
        "total": {"nodes": len(graph.nodes), "edges": len(graph.edges)},
        "colours": {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(types)},
        "relations": sorted({e.relation for e in graph.edges}),
    }


def render(data: dict[str, Any]) -> str:
    # JSON inside <script>: escaping "<" keeps a name like "</script>" from closing the tag.
    payload = dumps(data).replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return PAGE.replace("/*CYTOSCAPE*/", _cytoscape_js()).replace("/*GRAPH*/null", payload)


def write_view(graph: Graph, path: str | Path, documents: dict[str, str] | None = None, max_nodes: int = MAX_NODES) -> Path:
    path = Path(path)
    html = render(view_data(graph, documents, max_nodes))
    write_atomic(path, lambda fh: fh.write(html))
    return path


PAGE = r"""<!DOCTYPE html>
<html lang="mul">
<head>
<meta charset="utf-8">
<title>kgopt graph</title>
<style>
  html, body { margin: 0; height: 100%; font: 14px/1.4 system-ui, "Noto Sans CJK SC", "Noto Sans", "Microsoft YaHei", sans-serif; }
  body { display: grid; grid-template-rows: auto 1fr; grid-template-columns: 1fr 340px; }
  header { grid-column: 1 / 3; display: flex; gap: 8px; align-items: center; padding: 6px 10px; border-bottom: 1px solid #ddd; flex-wrap: wrap; }
  header input, header select { font: inherit; padding: 2px 4px; }
  #status { color: #555; margin-left: auto; }
  #cy { min-height: 0; }
  aside { border-left: 1px solid #ddd; padding: 8px 12px; overflow: auto; overflow-wrap: anywhere; }
  aside h2 { font-size: 16px; margin: 4px 0; }
  aside .muted { color: #666; }
  aside blockquote { margin: 6px 0; padding: 4px 8px; background: #f6f6f6; border-left: 3px solid #bbb; }
  mark { background: #ffe066; }
  #legend span { display: inline-block; margin-right: 8px; }
  #legend i { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 3px; }
</style>
</head>
<body>
<header>
  <input id="search" type="search" placeholder="search entities" aria-label="search entities">
  <select id="type-filter" aria-label="entity type"><option value="">all types</option></select>
  <select id="relation-filter" aria-label="relation"><option value="">all relations</option></select>
  <span id="legend"></span>
  <span id="status"></span>
</header>
<div id="cy"></div>
<aside id="details"><p class="muted">Click an entity or a relation to see where it comes from.</p></aside>
<script>/*CYTOSCAPE*/</script>
<script>
"use strict";
const GRAPH = /*GRAPH*/null;
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) { const e = document.createElement(tag); if (text != null) e.textContent = String(text); if (cls) e.className = cls; return e; }

const colour = (t) => GRAPH.colours[t] || "#999";
const cy = cytoscape({
  container: $("cy"),
  elements: [
    ...GRAPH.nodes.map((n) => ({ group: "nodes", data: { id: n.id, label: n.name, type: n.type, colour: colour(n.type) } })),
    ...GRAPH.edges.map((e) => ({ group: "edges", data: { id: e.id, source: e.source, target: e.target, label: e.relation } })),
  ],
  style: [
    { selector: "node", style: { "background-color": "data(colour)", label: "data(label)", "font-size": 10, "text-valign": "bottom", "text-margin-y": 2, width: 16, height: 16 } },
    { selector: "edge", style: { label: "data(label)", "font-size": 8, "curve-style": "bezier", "target-arrow-shape": "triangle", "line-color": "#bbb", "target-arrow-color": "#bbb", width: 1.2, "text-rotation": "autorotate", color: "#555" } },
    { selector: ".faded", style: { opacity: 0.15 } },
    { selector: ".hit", style: { "border-width": 3, "border-color": "#222" } },
    { selector: ":selected", style: { "border-width": 3, "border-color": "#d62728", "line-color": "#d62728", "target-arrow-color": "#d62728" } },
  ],
  layout: { name: GRAPH.nodes.length > 1 ? "cose" : "grid", animate: false, randomize: false, nodeDimensionsIncludeLabels: true },
  wheelSensitivity: 0.3,
});

const byId = new Map([...GRAPH.nodes.map((n) => [n.id, n]), ...GRAPH.edges.map((e) => [e.id, e])]);

function setStatus() {
  const shown = cy.elements().filter((x) => x.style("display") !== "none");
  const st = $("status");
  const n = GRAPH.nodes.length, m = GRAPH.edges.length, N = GRAPH.total.nodes, M = GRAPH.total.edges;
  st.dataset.drawnNodes = cy.nodes().length;
  st.dataset.drawnEdges = cy.edges().length;
  st.dataset.visibleNodes = shown.nodes().length;
  st.dataset.visibleEdges = shown.edges().length;
  st.dataset.totalNodes = N;
  st.dataset.totalEdges = M;
  let text = `${n} of ${N} entities, ${m} of ${M} relations drawn`;
  if (n < N || m < M) text += ` (the most-mentioned first; the rest are in nodes.csv and edges.csv)`;
  if (shown.nodes().length < n || shown.edges().length < m) text += ` · ${shown.nodes().length} entities, ${shown.edges().length} relations match the filters`;
  st.textContent = text;
}

function quote(q) {
  const box = el("blockquote");
  const src = el("div", `document ${q.doc} · chunk ${q.chunk} · ${q.task}` + (q.offsets ? ` · characters ${q.offsets[0]}–${q.offsets[1]}` : ""), "muted");
  box.appendChild(src);
  const p = el("div");
  if (q.sentence != null) {
    const [s, e] = q.mark;
    p.appendChild(document.createTextNode(q.sentence.slice(0, s)));
    p.appendChild(el("mark", q.sentence.slice(s, e)));
    p.appendChild(document.createTextNode(q.sentence.slice(e)));
  } else {
    p.appendChild(el("span", `“${q.text}” (not found verbatim in the document)`, "muted"));
  }
  box.appendChild(p);
  return box;
}

function show(id) {
  const d = $("details"), x = byId.get(id);
  d.replaceChildren();
  if (!x) return;
  d.dataset.shown = id;
  if (x.source) {
    const h = byId.get(x.source), t = byId.get(x.target);
    d.appendChild(el("h2", `${h.name} —${x.relation}→ ${t.name}`));
    d.appendChild(el("div", `seen ${x.count} time${x.count === 1 ? "" : "s"}`, "muted"));
    for (const ev of x.evidence) { d.appendChild(el("div", "head:", "muted")); d.appendChild(quote(ev.head)); d.appendChild(el("div", "tail:", "muted")); d.appendChild(quote(ev.tail)); }
    if (x.count > x.evidence.length) d.appendChild(el("div", `${x.count - x.evidence.length} more in triples.jsonl`, "muted"));
  } else {
    d.appendChild(el("h2", x.name));
    d.appendChild(el("div", `type: ${x.type || "(none)"} · ${x.mentions} mention${x.mentions === 1 ? "" : "s"} in ${x.docs} document${x.docs === 1 ? "" : "s"}`, "muted"));
    if (x.aliases.length) d.appendChild(el("div", `also written: ${x.aliases.join(", ")}`));
    for (const q of x.evidence) d.appendChild(quote(q));
  }
}

function applyFilters() {
  const type = $("type-filter").value, rel = $("relation-filter").value, q = $("search").value.trim().toLowerCase();
  cy.batch(() => {
    cy.nodes().forEach((n) => n.style("display", !type || n.data("type") === type ? "element" : "none"));
    cy.edges().forEach((e) => e.style("display", !rel || e.data("label") === rel ? "element" : "none"));
    if (rel) cy.nodes().forEach((n) => { if (n.style("display") !== "none" && n.connectedEdges().filter((e) => e.style("display") !== "none").length === 0) n.style("display", "none"); });
    cy.elements().removeClass("faded hit");
    if (q) {
      const hits = cy.nodes().filter((n) => { const x = byId.get(n.id()); return [x.name, ...x.aliases].some((s) => s.toLowerCase().includes(q)); });
      cy.elements().not(hits.closedNeighborhood()).addClass("faded");
      hits.addClass("hit");
    }
  });
  setStatus();
}

for (const t of Object.keys(GRAPH.colours)) {
  $("type-filter").appendChild(Object.assign(el("option", t || "(no type)"), { value: t }));
  const item = el("span"); const dot = el("i"); dot.style.background = colour(t); item.append(dot, document.createTextNode(t || "(no type)")); $("legend").appendChild(item);
}
for (const r of GRAPH.relations) $("relation-filter").appendChild(Object.assign(el("option", r), { value: r }));
$("type-filter").addEventListener("change", applyFilters);
$("relation-filter").addEventListener("change", applyFilters);
$("search").addEventListener("input", applyFilters);
$("search").addEventListener("keydown", (ev) => { if (ev.key === "Enter") { const hit = cy.nodes(".hit")[0]; if (hit) { cy.elements().unselect(); hit.select(); show(hit.id()); cy.center(hit); } } });
cy.on("tap", "node, edge", (ev) => show(ev.target.id()));

// graph.html#show=<node or edge id> opens with that element's details (links, and the tests).
const wanted = new URLSearchParams(location.hash.slice(1)).get("show");
if (wanted && byId.has(wanted)) { cy.getElementById(wanted).select(); show(wanted); }
setStatus();
document.body.dataset.ready = "1";
</script>
</body>
</html>
"""


def view_path(out_dir: str | Path) -> Path:
    """``graph.html`` of a ``kgopt extract --out`` directory; a clear error if there is none."""
    path = Path(out_dir) / VIEW
    if not path.is_file():
        raise ArtifactError(f"no {VIEW} in {out_dir}: run `kgopt extract --out {out_dir}` (a finished job re-writes it without new calls)")
    return path


def serve_view(out_dir: str | Path, port: int = 0):
    """An HTTP server on 127.0.0.1 for the directory's ``graph.html`` (start it with
    ``serve_forever``); its URL is ``http://127.0.0.1:<server.server_port>/graph.html``.

    The page is self-contained (cytoscape.js and the graph are inlined), so it is the only
    thing served: any other path is 404 (no listing, no other file of the folder). A
    ``graph.html`` that is a link out of the folder is refused. A request whose Host header is
    not ``127.0.0.1:PORT`` or ``localhost:PORT`` is 403: a web page on another origin cannot
    reach the server through a DNS name it re-points at 127.0.0.1 (DNS rebinding)."""
    import http.server

    root = Path(out_dir).resolve()
    page = root / VIEW

    def contained() -> Path | None:
        # Checked on every request: the file may be re-written (or replaced by a link) while served.
        try:
            target = page.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        return target if target.is_relative_to(root) and target.is_file() else None

    view_path(out_dir)
    if contained() is None:
        raise ArtifactError(f"{page} links outside {root}: refusing to serve it")

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "kgopt"
        sys_version = ""

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            pass

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", head: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _serve(self, head: bool) -> None:
            bound = self.server.server_address[1]
            host = (self.headers.get("Host") or "").strip().lower()
            if host not in (f"127.0.0.1:{bound}", f"localhost:{bound}"):
                return self._reply(403, b"forbidden: use http://127.0.0.1:%d/graph.html\n" % bound, head=head)
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            target = contained() if path == "/" + VIEW else None
            if target is None:
                return self._reply(404, b"not found\n", head=head)
            try:
                body = target.read_bytes()
            except OSError:
                return self._reply(404, b"not found\n", head=head)
            self._reply(200, body, "text/html; charset=utf-8", head=head)

        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            self._serve(head=False)

        def do_HEAD(self) -> None:  # noqa: N802 - the base class's name
            self._serve(head=True)

    return http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
