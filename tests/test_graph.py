"""The pure parts of KG construction: mentions, entity merging, exports."""

import csv

import networkx as nx

from kgopt.graph.build import build_graph, mentions_from_labels, normalise
from kgopt.graph.export import cypher_name, cypher_string, write_exports


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
    assert cypher_string("a'b\\c") == "'a\\'b\\\\c'" and cypher_name("x`y") == "`x``y`"
    assert "[r:`it's a ``rel``\\n`]" in (tmp_path / "graph.cypher").read_text(encoding="utf-8")
