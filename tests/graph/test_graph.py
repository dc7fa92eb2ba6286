"""The pure parts of KG construction: mentions, entity merging, exports."""

import csv
import re
import sys

import networkx as nx
import pytest
import ujson

from kgopt.errors import DataError
from kgopt.graph.build import build_graph, mentions_from_labels, normalise
from kgopt.graph.export import cypher_name, cypher_string, read_graph, relationship_type, write_exports
from kgopt.graph.stats import graph_stats


def test_nodes_keep_their_first_mentions_as_evidence():
    where = {"doc": "d1", "chunk": 0, "task": "KG", "program": "p"}
    mentions = mentions_from_labels("KG", [{"head": "张三", "relation": "出生地", "tail": "北京"}], "张三出生于北京。")
    g = build_graph([(where, mentions), ({**where, "doc": "d2"}, mentions)])
    zhang = next(n for n in g.nodes.values() if n.name == "张三")
    assert [(ev["doc"], ev["text"], ev["span"]) for ev in zhang.evidence] == [("d1", "张三", [0, 2]), ("d2", "张三", [0, 2])]


def test_mentions_of_each_task():
    text = "马云创立了阿里巴巴。"
    kg = mentions_from_labels("KG", [{"head": "马云", "head_type": "人物", "relation": "创立", "tail": "阿里巴巴", "tail_type": "组织"}], text, 10)
    assert kg["triples"][0]["head_span"] == [10, 12] and kg["triples"][0]["tail_span"] == [15, 19]
    re_ = mentions_from_labels("RE", [{"head": "马云", "relation": "创始人", "tail": "不在文中"}], text)
    assert re_["triples"][0]["tail_span"] is None and re_["triples"][0]["head_type"] == ""
    ner = mentions_from_labels("NER", [{"entity": "马云", "entity_type": "人物"}], text)
    assert ner == {"triples": [], "entities": [{"name": "马云", "type": "人物", "span": [0, 2]}]}
    ee = mentions_from_labels(
        "EE", [{"event_trigger": "创立", "event_type": "成立", "arguments": [{"argument": "马云", "role": "创始人"}]}], text
    )
    assert ee["triples"][0]["head"] == "创立" and ee["triples"][0]["relation"] == "创始人"


def test_entities_merge_by_normalised_name_and_type():
    where = lambda doc: {"doc": doc, "chunk": 0, "task": "KG", "program": "p"}  # noqa: E731
    t = lambda h, ht, r, tl, tt: {"head": h, "head_type": ht, "relation": r, "tail": tl, "tail_type": tt}  # noqa: E731
    g = build_graph(
        [
            (where("a"), {"triples": [t("《红楼梦》", "作品", "作者", "曹雪芹", "人物")]}),
            (where("b"), {"triples": [t("红楼梦", "作品", "作者", "曹雪芹", "人物"), t("红楼梦", "作品", "作者", "曹雪芹", "人物")]}),
            (where("c"), {"triples": [t("红楼梦", "作品", "作者", "曹雪芹", "人物")]}),
            # An untyped mention (RE) joins the only typed entity of that name.
            ({"doc": "d", "chunk": 0, "task": "RE", "program": "p"}, {"triples": [t("曹雪芹", "", "出生地", "南京", "")]}),
            (where("e"), {"entities": [{"name": "Apple", "type": "组织"}, {"name": "apple", "type": "水果"}, {"name": "APPLE ", "type": "组织"}]}),
        ]
    )
    names = sorted((n.name, n.type, tuple(n.aliases)) for n in g.nodes.values())
    assert names == [
        ("Apple", "组织", ("APPLE ",)),
        ("apple", "水果", ()),
        ("南京", "", ()),
        ("曹雪芹", "人物", ()),
        ("红楼梦", "作品", ("《红楼梦》",)),
    ]
    author = [e for e in g.edges if e.relation == "作者"]
    assert len(author) == 1 and author[0].count == 3  # doc b said it twice in one chunk: counted once
    birth = [e for e in g.edges if e.relation == "出生地"][0]
    assert g.nodes[birth.head].type == "人物"


def test_an_untyped_mention_of_an_ambiguous_name_joins_the_entity_typed_in_its_document():
    """OneKE answers type only the head: "Paris" the city (doc a) and "Paris" the person (doc b)
    are two entities; an untyped "Paris" tail in doc b is the person, not a third node."""
    kg = lambda doc, h, ht, r, tl: ({"doc": doc, "chunk": 0, "task": "KG", "program": "p"},  # noqa: E731
                                    {"triples": [{"head": h, "head_type": ht, "relation": r, "tail": tl, "tail_type": ""}]})
    g = build_graph([
        kg("a", "Paris", "Geographic_Location", "located in", "France"),
        kg("b", "Paris", "Person", "live in", "Troy"),
        kg("b", "Helen", "Person", "spouse", "Paris"),
        kg("c", "Priam", "Person", "father of", "Paris"),  # no typed Paris in doc c: left untyped
    ])
    nodes = sorted((n.name, n.type) for n in g.nodes.values() if n.name == "Paris")
    assert nodes == [("Paris", ""), ("Paris", "Geographic_Location"), ("Paris", "Person")]
    spouse = next(e for e in g.edges if e.relation == "spouse")
    assert g.nodes[spouse.tail].type == "Person"


def test_normalise():
    assert normalise("  《红楼梦》 ") == normalise("红楼梦") == "红楼梦"
    assert normalise("ＡＢＣ\u3000Corp") == "abc corp"


def test_exports_escape_and_round_trip(tmp_path):
    tricky = "it's a `rel`\\n"
    g = build_graph([({"doc": "d", "chunk": 0, "task": "RE", "program": "p"}, {"triples": [{"head": 'O\'Neil "x"', "relation": tricky, "tail": "b,c\nd"}]})])
    write_exports(g, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "nodes.csv", encoding="utf-8", newline="")))
    assert {r["name"] for r in rows} == {'O\'Neil "x"', "b,c\nd"}
    back = nx.read_graphml(tmp_path / "graph.graphml")
    assert [d["relation"] for _, _, d in back.edges(data=True)] == [tricky]
    assert cypher_string("a'b\\c") == "'a\\'b\\\\c'"
    # The relation's type is made safe; its text is kept, escaped, in r.relation.
    script = (tmp_path / "graph.cypher").read_text(encoding="utf-8")
    assert f"[r:{cypher_name(tricky)}]" in script and "r.relation = 'it\\'s a `rel`\\\\n'" in script


def test_relationship_types_keep_safe_names_and_map_the_rest_without_collisions():
    """Letters (CJK too), digits, underscores and spaces stay as they are, so graph.cypher is
    unchanged for them; anything else (a backtick, a quote, a newline, a brace, a name that
    only looks like a mapped one) becomes safe characters plus a hash of the original."""
    for safe in ("出生地", "located in", "founded_by", "P31", "Straße"):
        assert relationship_type(safe) == safe and cypher_name(safe) == f"`{safe}`"
    tricky = ["x`y", "x'y", 'x"y', "x\ny", "x}y", "x{y", "x_y", "x y", "x`y`", "", "a_b__0123456789"]
    types = [relationship_type(r) for r in tricky]
    assert types[6:8] == ["x_y", "x y"]  # already safe
    assert len(set(types)) == len(types)  # x`y, x'y, x"y ... all different, and none is "x_y"
    for r, t in zip(tricky, types):
        assert re.fullmatch(r"[\w ]+", t), t
        assert relationship_type(r) == t  # deterministic
    assert re.fullmatch(r"x_y__[0-9a-f]{10}", relationship_type("x`y"))
    assert relationship_type("a_b__0123456789") != "a_b__0123456789"  # would pass for a mapped name


# --- Reading an export back: a bad file is one DataError naming file and line ---------------

def _export(tmp_path):
    """A small export whose first node's name spans two lines of nodes.csv (a quoted newline)."""
    where = {"doc": "d", "chunk": 0, "task": "RE", "program": "p"}
    g = build_graph([(where, {"triples": [{"head": "two\nlines", "relation": "r", "tail": "b"}, {"head": "b", "relation": "s", "tail": "c"}]})])
    write_exports(g, tmp_path)
    return tmp_path


def _nodes_lines(out):
    # Records end in \r\n, the quoted newline is \n: [header, 'n..,"two\nlines",...', node b (line 4), node c (line 5), '']
    return (out / "nodes.csv").read_bytes().split(b"\r\n")


def _bad_nodes_utf8(out):
    lines = _nodes_lines(out)
    lines[2] = lines[2].replace(b",b,", b",b\xff,")
    (out / "nodes.csv").write_bytes(b"\r\n".join(lines))
    return "nodes.csv:4: not UTF-8"


def _bad_nodes_huge_field(out):
    lines = _nodes_lines(out)
    lines[2] = lines[2].replace(b",b,", b"," + b"x" * 200_000 + b",")
    (out / "nodes.csv").write_bytes(b"\r\n".join(lines))
    return r"nodes.csv:4: not readable as CSV: field larger than field limit"


def _bad_nodes_extra_field(out):
    lines = _nodes_lines(out)
    lines[3] += b",surplus"
    (out / "nodes.csv").write_bytes(b"\r\n".join(lines))
    return "nodes.csv:5: 7 fields where the header has 6"


def _bad_nodes_missing_field(out):
    lines = _nodes_lines(out)
    lines[3] = lines[3].rsplit(b",", 1)[0]
    (out / "nodes.csv").write_bytes(b"\r\n".join(lines))
    return "nodes.csv:5: 5 fields where the header has 6"


def _bad_nodes_not_a_number(out):
    lines = _nodes_lines(out)
    head, _, _ = lines[2].rsplit(b",", 2)
    lines[2] = head + b",many,1"  # line 4: after the record that spans lines 2-3
    (out / "nodes.csv").write_bytes(b"\r\n".join(lines))
    return "nodes.csv:4: not a node row: mentions is 'many', not a whole number"


def _rewrite_triple(out, line, change):
    rows = [ujson.loads(x) for x in (out / "triples.jsonl").read_text(encoding="utf-8").splitlines()]
    rows[line - 1] = change(rows[line - 1])
    (out / "triples.jsonl").write_text("".join(ujson.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _bad_triples_json(out):
    (out / "triples.jsonl").write_text((out / "triples.jsonl").read_text(encoding="utf-8") + '{"head_id": \n', encoding="utf-8")
    return "triples.jsonl:3: invalid JSON"


def _bad_triples_count(out):
    _rewrite_triple(out, 2, lambda r: {**r, "count": "3"})
    return "triples.jsonl:2: not a triple row: count is '3', not a whole number"


def _bad_triples_provenance(out):
    _rewrite_triple(out, 1, lambda r: {**r, "provenance": 5})
    return "triples.jsonl:1: not a triple row: provenance is not a list of objects"


def _bad_triples_provenance_item(out):
    _rewrite_triple(out, 2, lambda r: {**r, "provenance": [1]})
    return "triples.jsonl:2: not a triple row: provenance is not a list of objects"


def _bad_triples_relation(out):
    _rewrite_triple(out, 1, lambda r: {**r, "relation": ["r"]})
    return r"triples.jsonl:1: not a triple row: relation is \['r'\], not a non-empty string"


BAD_FILES = [_bad_nodes_utf8, _bad_nodes_huge_field, _bad_nodes_extra_field, _bad_nodes_missing_field, _bad_nodes_not_a_number,
             _bad_triples_json, _bad_triples_count, _bad_triples_provenance, _bad_triples_provenance_item, _bad_triples_relation]


@pytest.mark.parametrize("spoil", BAD_FILES, ids=lambda f: f.__name__[5:])
def test_a_bad_export_is_a_data_error_naming_file_and_line(tmp_path, spoil):
    """graph-stats and graph-load read the same files the same way: a non-UTF-8 byte, an
    over-long field, a row of the wrong width or a wrong value is a DataError at its line
    (the line a record starts on, counted in the file, past a record that spans two lines)."""
    out = _export(tmp_path)
    assert graph_stats(out)["nodes"] == 3 and len(read_graph(out).edges) == 2
    expected = spoil(out)
    with pytest.raises(DataError, match=expected) as err:
        read_graph(out)
    assert err.value.path == str(out / expected.split(":")[0]) and err.value.line == int(expected.split(":")[1])
    with pytest.raises(DataError, match=expected):
        graph_stats(out)


@pytest.fixture()
def cli():
    """typer's runner; graph-load points loguru at the runner's stderr, so it is put back after."""
    from typer.testing import CliRunner

    from kgopt.cli.main import app

    yield lambda *args: CliRunner().invoke(app, [str(a) for a in args])
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr)


@pytest.mark.parametrize("spoil", [_bad_nodes_utf8, _bad_nodes_huge_field, _bad_nodes_extra_field, _bad_nodes_not_a_number,
                                   _bad_triples_provenance, _bad_triples_provenance_item], ids=lambda f: f.__name__[5:])
def test_graph_stats_and_graph_load_say_one_error_line_and_exit_2(tmp_path, spoil, cli):
    out = _export(tmp_path)
    expected = spoil(out)
    # Port 1: nothing listens there, and the bad row must be found before any connection is tried.
    for args in (["graph-stats", out], ["graph-load", out, "--into", "falkordb://127.0.0.1:1/kg"]):
        res = cli(*args)
        assert res.exit_code == 2, (args, res.output, res.exception)
        assert res.stdout == "" and len(res.stderr.splitlines()) == 1, res.stderr
        assert re.fullmatch(rf"error: {re.escape(str(out))}/{expected}.*\n", res.stderr), res.stderr
