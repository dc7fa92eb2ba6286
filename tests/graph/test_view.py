"""graph.html: what `kgopt extract` writes for people to look at, checked in headless Chromium.

The page reports what it drew in ``#status``'s data attributes (from cytoscape's own counts),
so the test compares the browser's numbers with nodes.csv and edges.csv.
"""

import csv
import html
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import ujson

from kgopt.errors import ArtifactError
from kgopt.graph.build import build_graph
from kgopt.graph.view import VIEW, view_data, write_view


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _dom(browser: str, url: str) -> str:
    res = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    assert "data-ready" in res.stdout, res.stderr[-2000:]
    return res.stdout


def _status(dom: str) -> dict[str, int]:
    tag = re.search(r'<span id="status"([^>]*)>', dom).group(1)
    return {k: int(v) for k, v in re.findall(r'data-([a-z-]+)="(\d+)"', tag)}


def test_the_browser_draws_every_exported_node_and_edge(browser, extraction, tmp_path):
    nodes, edges = _rows(extraction / "nodes.csv"), _rows(extraction / "edges.csv")
    assert nodes and edges
    st = _status(_dom(browser, (extraction / VIEW).as_uri()))
    assert st["drawn-nodes"] == st["total-nodes"] == len(nodes)
    assert st["drawn-edges"] == st["total-edges"] == len(edges)
    shot = tmp_path / "graph.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000", "--window-size=1400,900",
         f"--screenshot={shot}", (extraction / VIEW).as_uri()],
        capture_output=True, timeout=120, check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_details_quote_the_sentence_with_the_span_marked(browser, extraction):
    row = next(r for r in map(ujson.loads, (extraction / "triples.jsonl").read_text(encoding="utf-8").splitlines())
               if r["provenance"][0]["head_span"])
    edge_index = [i for i, e in enumerate(_rows(extraction / "edges.csv"))
                  if (e["source"], e["relation"], e["target"]) == (row["head_id"], row["relation"], row["tail_id"])][0]
    dom = _dom(browser, (extraction / VIEW).as_uri() + f"#show=e{edge_index}")
    panel = re.search(r'<aside id="details" data-shown="e\d+">(.*?)</aside>', dom, re.S).group(1)
    marks = [html.unescape(m) for m in re.findall(r"<mark>(.*?)</mark>", panel)]
    p = row["provenance"][0]
    assert p["head_text"] in marks and p["tail_text"] in marks
    assert f"document {p['doc']}" in html.unescape(panel) and f"characters {p['head_span'][0]}–{p['head_span'][1]}" in panel


def _graph(names: list[str]):
    units = []
    for i, (h, t) in enumerate(zip(names, names[1:])):
        mentions = {"triples": [{"head": h, "head_type": "人物", "relation": "朋友", "tail": t, "tail_type": "人物",
                                 "head_span": None, "tail_span": None}]}
        units.append(({"doc": f"d{i}", "chunk": 0, "task": "KG", "program": "p"}, mentions))
    return build_graph(units)


def test_a_big_graph_is_capped_and_says_what_it_left_out(browser, tmp_path):
    graph = _graph([f"人{i}" for i in range(30)])
    data = view_data(graph, max_nodes=10)
    assert len(data["nodes"]) == 10 and data["total"] == {"nodes": 30, "edges": 29}
    drawn = {n["id"] for n in data["nodes"]}
    assert all(e["source"] in drawn and e["target"] in drawn for e in data["edges"])
    write_view(graph, tmp_path / VIEW, max_nodes=10)
    dom = _dom(browser, (tmp_path / VIEW).as_uri())
    st = _status(dom)
    assert st["drawn-nodes"] == 10 and st["total-nodes"] == 30 and st["drawn-edges"] == len(data["edges"])
    assert "10 of 30 entities" in dom and "the rest are in nodes.csv and edges.csv" in dom


def test_model_output_cannot_inject_markup(browser, tmp_path):
    evil = '</script><img src=x onerror="document.title=\'pwned\'">'
    write_view(_graph([evil, "张三", "Bob"]), tmp_path / VIEW)
    dom = _dom(browser, (tmp_path / VIEW).as_uri())
    assert _status(dom)["drawn-nodes"] == 3  # the page still ran
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom).group(1)
    assert "<img src=x" not in dom.split("<script>")[0]


def test_graph_view_serves_on_loopback_and_names_a_missing_page(extraction, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "kgopt", "graph-view", str(extraction), "--serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/graph\.html", line).group(0)
        for _ in range(50):
            try:
                body = urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        assert body == (extraction / VIEW).read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    res = subprocess.run([sys.executable, "-m", "kgopt", "graph-view", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 2 and f"no graph.html in {tmp_path}" in res.stderr
    with pytest.raises(ArtifactError):
        from kgopt.graph.view import view_path

        view_path(tmp_path)


def test_cli_extract_on_the_bundled_sample_writes_a_view_the_browser_draws(browser, tmp_path):
    """The fresh-clone path: `kgopt extract` on dataset/documents/sample_zh.jsonl writes graph.html."""
    import os

    from kgopt.testing.fake_endpoint import FakeEndpoint
    from tests.conftest import BUNDLED

    out = tmp_path / "kg-out"
    with FakeEndpoint() as ep:
        env = {**os.environ, "KGOPT_API_BASE": ep.url, "KGOPT_MODEL": "fake"}
        res = subprocess.run([sys.executable, "-m", "kgopt", "extract", "--lang", "zh", "--input", str(BUNDLED / "documents" / "sample_zh.jsonl"),
                              "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    st = _status(_dom(browser, (out / VIEW).as_uri()))
    assert st["drawn-nodes"] == len(_rows(out / "nodes.csv")) > 0
    assert st["drawn-edges"] == len(_rows(out / "edges.csv")) > 0


@pytest.fixture()
def served(tmp_path):
    """serve_view on a folder like extract's, with a secret beside it and links pointing out."""
    import threading

    from kgopt.graph.view import serve_view

    out = tmp_path / "out"
    write_view(_graph(["张三", "Bob"]), out / VIEW)
    (out / "nodes.csv").write_text("id,name\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("not for the browser", encoding="utf-8")
    (out / "link.txt").symlink_to(tmp_path / "secret.txt")
    (out / "sub").mkdir()
    server = serve_view(out)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield out, server
    finally:
        server.shutdown()
        server.server_close()


def _get(server, path: str, host: str | None = "default", method: str = "GET"):
    import http.client

    port = server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True)
        if host is not None:
            conn.putheader("Host", f"127.0.0.1:{port}" if host == "default" else host.format(port=port))
        conn.endheaders()
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


def test_serve_gives_graph_html_and_nothing_else(served):
    out, server = served
    assert server.server_address[0] == "127.0.0.1"
    assert _get(server, "/graph.html") == (200, (out / VIEW).read_bytes())
    assert _get(server, "/graph.html?x=1", host="localhost:{port}")[0] == 200
    assert _get(server, "/graph.html", method="HEAD") == (200, b"")
    # The rest of the folder, its listing, a link out of it, and ways around the path check.
    for path in ("/", "/nodes.csv", "/link.txt", "/sub/", "/../", "/../secret.txt", "/%2e%2e/secret.txt", "//etc/passwd",
                 "/graph.html/", "/./graph.html", "/favicon.ico"):
        status, body = _get(server, path)
        assert status == 404 and b"not for the browser" not in body and b"nodes.csv" not in body, (path, status, body[:200])


def test_serve_refuses_other_host_names(served):
    """DNS rebinding: a page of evil.example re-points its name at 127.0.0.1 and reads the
    answer as same-origin; the Host header it sends is not 127.0.0.1:PORT or localhost:PORT."""
    _, server = served
    port = server.server_address[1]
    for host in ("evil.example", "evil.example:{port}", "127.0.0.1", "localhost:1", "127.0.0.1:{port}.evil.example", ""):
        status, body = _get(server, "/graph.html", host=host)
        assert status == 403 and b"cytoscape" not in body, (host, status)
    assert _get(server, "/graph.html", host=None)[0] == 403  # no Host header at all
    assert _get(server, "/graph.html", host=f"LocalHost:{port}")[0] == 200


def test_serve_follows_no_link_out_of_the_folder(served, tmp_path):
    from kgopt.graph.view import serve_view

    out, server = served
    page = out / VIEW
    page.unlink()
    page.symlink_to(tmp_path / "secret.txt")  # replaced while served
    status, body = _get(server, "/graph.html")
    assert status == 404 and b"not for the browser" not in body
    with pytest.raises(ArtifactError, match="links outside"):
        serve_view(out)
    inside = out / "graph-v2.html"  # a link that stays in the folder is still the page
    write_view(_graph(["a", "b"]), inside)
    page.unlink()
    page.symlink_to(inside)
    assert _get(server, "/graph.html") == (200, inside.read_bytes())
