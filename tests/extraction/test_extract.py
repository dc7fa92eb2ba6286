"""kgopt extract: documents -> chunks -> LLM calls -> merged graph, with resume, faults and bad input.

A deterministic fake endpoint (kgopt.testing) stands in for the model, so two runs can be
compared exactly; the last test runs the real embedded model.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import pytest
import ujson

from kgopt.clients.lm import Connection
from kgopt.data.readers import read_instructie
from kgopt.errors import DataError, EndpointError
from kgopt.extraction import ExtractAborted, extract
from kgopt.extraction.results import ResultLog
from kgopt.graph.export import EXPORTS
from kgopt.graph.stats import graph_stats
from kgopt.testing.fake_endpoint import FakeEndpoint, FaultProxy, fake_connection

from tests.conftest import BUNDLED as DATA_DIR

REPO = Path(__file__).resolve().parents[2]
KGOPT = [sys.executable, "-m", "kgopt"]


def connection(url: str, cache_dir: Path | None = None, timeout: float = 30.0, max_calls=None) -> Connection:
    return fake_connection(url, cache_dir=cache_dir, timeout=timeout, max_calls=max_calls)


@pytest.fixture(scope="module")
def docs_file(tmp_path_factory) -> Path:
    """Real InstructIE test texts (with their topics), one long document, one empty, one mixed zh/en."""
    recs = list(read_instructie(DATA_DIR / "InstructIE" / "test_zh.json"))[:10]
    rows = [{"id": f"d{i}", "cate": r.cate, "text": r.text} for i, r in enumerate(recs)]
    rows.append({"id": "long", "cate": recs[0].cate, "text": "".join(r.text + "。" for r in recs[:6])})
    rows.append({"id": "empty", "cate": recs[0].cate, "text": "   "})
    rows.append({"id": "mixed", "cate": recs[1].cate, "text": "阿里巴巴集团（Alibaba Group）由马云于1999年在杭州创立, headquartered in Hangzhou."})
    path = tmp_path_factory.mktemp("docs") / "docs.jsonl"
    path.write_text("".join(ujson.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def exports_of(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in EXPORTS}


def run(docs, out, url, lang="zh", **kw):
    conn = kw.pop("conn", None) or connection(url)
    kw.setdefault("workers", 4)
    kw.setdefault("window_chars", 120)
    return extract(docs, lang, out, connection=conn, progress=False, data_dir=DATA_DIR, **kw), conn


@pytest.fixture(scope="module")
def reference(docs_file, tmp_path_factory):
    """A fault-free, uninterrupted run: the graph every other run must reproduce."""
    out = tmp_path_factory.mktemp("ref")
    with FakeEndpoint() as ep:
        report, _ = run(docs_file, out, ep.url)
    return out, report


def test_graph_from_documents(docs_file, reference):
    out, report = reference
    assert report.documents == 13 and report.empty_documents == 1
    assert report.units > 13  # the long document is split into several chunks
    assert report.ran == report.units == report.ok and not report.failed
    rows = [ujson.loads(line) for line in (out / "triples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == report.graph["triples"] > 0
    text_of = {r["id"]: r["text"] for r in map(ujson.loads, docs_file.read_text(encoding="utf-8").splitlines())}
    for row in rows:
        assert row["count"] == len(row["provenance"]) >= 1
        for p in row["provenance"]:
            # Offsets point into the original document, not the chunk.
            s, e = p["head_span"]
            assert text_of[p["doc"]][s:e] == p["head_text"]
            assert p["program"].startswith("KG_zh.json@")
    # The long document repeats six texts: their triples collapse, with a count per chunk.
    assert any(r["count"] > 1 and {p["doc"] for p in r["provenance"]} >= {"long"} for r in rows)
    # GraphML and CSV agree with triples.jsonl.
    g = nx.read_graphml(out / "graph.graphml")
    assert g.number_of_edges() == len(rows)
    with open(out / "nodes.csv", encoding="utf-8") as fh:
        nodes = list(csv.DictReader(fh))
    assert g.number_of_nodes() == len(nodes) == report.graph["nodes"]
    cypher = (out / "graph.cypher").read_text(encoding="utf-8")
    assert cypher.count("MERGE (n:Entity") == len(nodes) and cypher.count("MERGE (h)-[r:") == len(rows)
    stats = graph_stats(out)
    assert stats["triples"] == len(rows) and stats["nodes"] == len(nodes)
    assert stats["observations"] == sum(r["count"] for r in rows) == stats["grounded_observations"]


def test_rerun_makes_no_calls_and_cache_answers_a_new_job(docs_file, reference, tmp_path):
    ref_out, ref = reference
    with FakeEndpoint() as ep:
        cache = tmp_path / "cache"
        out = tmp_path / "out"
        first, _ = run(docs_file, out, ep.url, conn=connection(ep.url, cache))
        assert len(ep.requests) == first.units
        again, conn = run(docs_file, out, ep.url, conn=connection(ep.url, cache))
        assert again.already_done == again.units and again.ran == 0 and conn.lm.usage.calls == 0
        other, conn = run(docs_file, tmp_path / "other", ep.url, conn=connection(ep.url, cache))
        assert other.ran == other.units and conn.lm.usage.calls == 0 and conn.lm.usage.cache_hits == other.units
        assert len(ep.requests) == first.units  # nothing reached the server after the first run
    assert exports_of(out) == exports_of(tmp_path / "other") == exports_of(ref_out)


def test_workers_do_not_change_the_graph(docs_file, reference, tmp_path):
    with FakeEndpoint(delay=0.01) as ep:
        run(docs_file, tmp_path / "w1", ep.url, workers=1)
        run(docs_file, tmp_path / "w16", ep.url, workers=16)
    assert exports_of(tmp_path / "w1") == exports_of(tmp_path / "w16") == exports_of(reference[0])


def test_options_are_given_by_name_and_an_unknown_one_is_refused(docs_file, tmp_path):
    """The older aliases (``chunk_chars``, ``neo4j=``) are gone: a misspelt option fails before any work."""
    for bad in ({"chunk_chars": 120}, {"neo4j": {"uri": "bolt://127.0.0.1:1"}}):
        with pytest.raises(TypeError, match=next(iter(bad))):
            extract(docs_file, "zh", tmp_path / "old", connection=None, progress=False, data_dir=DATA_DIR, **bad)
    assert not (tmp_path / "old").exists()


def test_faults_are_retried_and_the_graph_is_unchanged(docs_file, reference, tmp_path):
    with FakeEndpoint() as ep, FaultProxy(ep.url, share=0.6, attempts=2, stall=2.0) as proxy:
        report, conn = run(docs_file, tmp_path / "out", proxy.url, conn=connection(proxy.url, timeout=1.0))
    assert all(n > 0 for n in proxy.injected.values()), proxy.injected
    assert conn.lm.usage.retries == sum(proxy.injected.values())
    assert not report.failed and report.ok == report.units
    assert exports_of(tmp_path / "out") == exports_of(reference[0])


def test_a_call_that_keeps_failing_is_reported_then_retried(docs_file, reference, tmp_path):
    out = tmp_path / "out"
    with FakeEndpoint() as ep, FaultProxy(ep.url, share=0.3, faults=("500",), always=True) as proxy:
        report, _ = run(docs_file, out, proxy.url)
    assert report.failed and all("InternalServerError" in f["error"] for f in report.failed)
    assert ujson.loads((out / "report.json").read_text())["failed"] == report.failed
    # The graph lacks the failed calls' triples; a re-run asks only those and completes it.
    with FakeEndpoint() as ep:
        again, conn = run(docs_file, out, ep.url)
        assert again.ran == len(report.failed) == len(ep.requests) and not again.failed
    assert exports_of(out) == exports_of(reference[0])


def test_max_failures_stops_cleanly(docs_file, tmp_path):
    out = tmp_path / "out"
    with FakeEndpoint() as ep, FaultProxy(ep.url, share=1.0, faults=("500",), always=True) as proxy:
        with pytest.raises(ExtractAborted, match="max-failures 2"):
            run(docs_file, out, proxy.url, max_failures=2, workers=1)
    rows = (out / "results.jsonl").read_text().splitlines()
    assert len(rows) == 3 and all(ujson.loads(r)["status"] == "failed" for r in rows)
    assert ujson.loads((out / "report.json").read_text())["aborted"].startswith("3 failed calls")
    assert not (out / "triples.jsonl").exists()


def test_bad_line_stops_before_any_call_or_is_skipped(docs_file, reference, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = docs_file.read_text(encoding="utf-8").splitlines()
    lines.insert(3, '{"id": "x", "text": 5}')
    lines.insert(6, '{"id": "y", "text": "unterminated')
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with FakeEndpoint() as ep:
        with pytest.raises(DataError) as err:
            run(bad, tmp_path / "out", ep.url)
        assert f"{bad}:4: field 'text'" in str(err.value)
        assert len(ep.requests) == 0
        report, _ = run(bad, tmp_path / "skip", ep.url, skip_bad=True)
    assert [(b["line"], b["reason"][:14]) for b in report.bad_lines] == [(4, "field 'text' i"), (7, "invalid JSON (")]
    assert exports_of(tmp_path / "skip") == exports_of(reference[0])


def test_unknown_topic_and_duplicate_id_name_the_line(docs_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x", "cate": "no-such-topic"}\n', encoding="utf-8")
    with FakeEndpoint() as ep:
        with pytest.raises(DataError, match=r"bad.jsonl:1: cate 'no-such-topic' is not a topic"):
            run(bad, tmp_path / "out", ep.url)
        bad.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', encoding="utf-8")
        with pytest.raises(DataError, match=r"bad.jsonl:2: duplicate id 'a' \(first at .*bad.jsonl:1\)"):
            run(bad, tmp_path / "out", ep.url, tasks=["NER"])
        assert len(ep.requests) == 0


def test_plain_text_folder_and_non_utf8(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("华为技术有限公司总部位于深圳。任正非创立了华为。", encoding="utf-8")
    (folder / "sub" / "b.txt").write_bytes("北京大学位于北京".encode() + b"\xff\xfe" + "海淀区。".encode())
    with FakeEndpoint() as ep:
        report, _ = run(folder, tmp_path / "out", ep.url, tasks=["NER", "RE"])
    assert report.documents == 2 and report.ok == report.units > 0
    assert report.warnings == [f"{folder / 'sub' / 'b.txt'}: invalid UTF-8 at byte 24 replaced with U+FFFD"]
    types = {r["type"] for r in csv.DictReader(open(tmp_path / "out" / "nodes.csv", encoding="utf-8"))}
    assert types  # NER entities typed by the schema; RE ends join them by name
    docs = {p["doc"] for r in map(ujson.loads, open(tmp_path / "out" / "triples.jsonl", encoding="utf-8")) for p in r["provenance"]}
    assert docs == {"a.txt", "sub/b.txt"}
    text = tmp_path / "lines.txt"
    text.write_text("第一行文本，关于清华大学。\n\nsecond line about MIT.\n", encoding="utf-8")
    with FakeEndpoint() as ep:
        report, _ = run(text, tmp_path / "out2", ep.url, tasks=["NER"])
    assert report.documents == 2


def test_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"key": "a", "status": "ok"}\n{"key": "b", "sta')
    with ResultLog(path) as log:
        assert log.repaired and log.done("a") and not log.done("b")
        log.append({"key": "b", "status": "ok"})
    assert path.read_bytes() == b'{"key": "a", "status": "ok"}\n{"key":"b","status":"ok"}\n'
    path.write_bytes(b'{"key": "a", "status": "ok"}\nnot json\n{"key": "c", "status": "ok"}\n')
    with pytest.raises(DataError, match="results.jsonl:2: damaged results line"):
        ResultLog(path)


def test_one_writer_per_output_directory(tmp_path):
    with ResultLog(tmp_path / "results.jsonl"):
        with pytest.raises(Exception, match="another kgopt extract is writing"):
            ResultLog(tmp_path / "results.jsonl")


def _cli_env(tmp_path, url):
    env = dict(os.environ, KGOPT_API_BASE=url, KGOPT_MODEL="fake", KGOPT_HOME=str(tmp_path / "home"), KGOPT_DATA_DIR=str(DATA_DIR))
    env.pop("KGOPT_CONFIG", None)
    return env


def test_kill_minus_9_and_resume_gives_the_same_graph(docs_file, reference, tmp_path):
    out = tmp_path / "out"
    cmd = KGOPT + ["extract", "--input", str(docs_file), "--lang", "zh", "--out", str(out), "--workers", "2", "--window-chars", "120", "--no-cache"]
    with FakeEndpoint(delay=0.15) as ep:
        env = _cli_env(tmp_path, ep.url)
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        results = out / "results.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and (not results.exists() or results.read_bytes().count(b"\n") < 5):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done_before = results.read_bytes().count(b"\n")
        assert 5 <= done_before < reference[1].units, "the kill should land part-way"
        asked_before = len(ep.requests)
        res = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        # Only the unfinished calls were asked again (at most the two in flight were lost).
        assert len(ep.requests) - asked_before == reference[1].units - done_before
    assert exports_of(out) == exports_of(reference[0])
    report = ujson.loads((out / "report.json").read_text())
    assert report["already_done"] == done_before and report["ran"] == reference[1].units - done_before


def test_cli_exit_codes_and_graph_stats(docs_file, tmp_path):
    with FakeEndpoint() as ep, FaultProxy(ep.url, share=0.3, faults=("500",), always=True) as proxy:
        env = _cli_env(tmp_path, proxy.url)
        cmd = KGOPT + ["extract", "--input", str(docs_file), "--lang", "zh", "--out", str(tmp_path / "out"), "--window-chars", "120"]
        res = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 1 and "calls failed" in res.stderr and "InternalServerError" in res.stderr
        res = subprocess.run(cmd + ["--max-failures", "0", "--out", str(tmp_path / "o2")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 2 and "max-failures 0" in res.stderr
    # Bad input with no endpoint configured: the error comes before the embedded model is started.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "ok"}\n["not", "an", "object"]\n', encoding="utf-8")
    env = {k: v for k, v in _cli_env(tmp_path, "").items() if k not in ("KGOPT_API_BASE", "KGOPT_MODEL")}
    res = subprocess.run(KGOPT + ["extract", "--input", str(bad), "--lang", "zh", "--out", str(tmp_path / "o3")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and f"{bad}:2: expected a JSON object, got list" in res.stderr
    assert "starting the embedded model" not in res.stderr
    res = subprocess.run(KGOPT + ["graph-stats", str(tmp_path / "out"), "--json"], capture_output=True, text=True)
    assert res.returncode == 0 and ujson.loads(res.stdout)["triples"] > 0
    res = subprocess.run(KGOPT + ["graph-stats", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert res.returncode == 2 and "nodes.csv: missing" in res.stderr


def test_neo4j_unreachable_is_a_clear_error(tmp_path):
    pytest.importorskip("neo4j")
    from kgopt.graph.build import build_graph
    from kgopt.graph.databases import load_graph

    g = build_graph([({"doc": "d", "chunk": 0, "task": "RE"}, {"triples": [{"head": "a", "relation": "r", "tail": "b"}]})])
    with pytest.raises(EndpointError, match="Neo4j at bolt://127.0.0.1:1 is not reachable"):
        load_graph(g, "bolt://127.0.0.1:1", password="secret")


@pytest.mark.llm
def test_embedded_model_builds_a_graph_from_the_bundled_samples(tmp_path):
    env = dict(os.environ, KGOPT_HOME=str(tmp_path / "home"))
    for k in ("KGOPT_API_BASE", "KGOPT_MODEL", "KGOPT_CONFIG"):
        env.pop(k, None)
    out = tmp_path / "out"
    cmd = KGOPT + ["extract", "--input", str(REPO / "dataset/documents/sample_en.jsonl"), "--lang", "en", "--tasks", "NER,KG", "--out", str(out)]
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-2000:]
    report = ujson.loads((out / "report.json").read_text())
    assert report["documents"] == 3 and report["ran"] == report["units"] > 0 and report["usage"]["calls"] == report["units"]
    assert report["ok"] + report["unparsable"] == report["units"]
    assert all((out / name).is_file() for name in EXPORTS)
    stats = graph_stats(out)
    assert stats["nodes"] == report["graph"]["nodes"] and stats["triples"] == report["graph"]["triples"]


def test_given_program_and_its_language_are_checked(tmp_path):
    from kgopt.errors import ConfigError

    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"id": "a", "text": "Geoffrey Hinton works at the University of Toronto."}\n', encoding="utf-8")
    program = REPO / "compiled" / "NER_en.json"
    with FakeEndpoint() as ep:
        report, _ = run(docs, tmp_path / "out", ep.url, tasks=[], programs=[program], lang="en")
        assert report.ok == report.units > 0
        rows = [ujson.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
        assert {r["program"].split("@")[0] for r in rows} == {"NER_en.json"} and {r["task"] for r in rows} == {"NER"}
        with pytest.raises(ConfigError, match="a NER/en program, but --lang is zh"):
            run(docs, tmp_path / "out2", ep.url, tasks=["NER"], programs=[program])
