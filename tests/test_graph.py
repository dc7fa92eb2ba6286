"""The pure parts of KG construction: chunking with offsets, mentions, entity merging, exports."""

import csv

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from kgopt.core.chunking import chunk_spans, find_span, sentence_around
from kgopt.graph.build import build_graph, mentions_from_labels, normalise
from kgopt.graph.export import cypher_name, cypher_string, write_exports


def test_chunks_cut_at_sentence_ends_and_keep_offsets():
    text = "华为公司总部位于深圳。任正非于1987年创立华为。Huawei is based in Shenzhen. It was founded in 1987."
    spans = chunk_spans(text, 30)
    assert [text[s:e] for s, e in spans] == [
        "华为公司总部位于深圳。任正非于1987年创立华为。",
        "Huawei is based in Shenzhen.",
        "It was founded in 1987.",
    ]


def test_chunks_of_blank_unpunctuated_and_short_texts():
    assert chunk_spans("   \n ", 10) == []
    assert chunk_spans("短文本", 10) == [(0, 3)]
    long = "字" * 25  # no break anywhere: hard cuts
    assert chunk_spans(long, 10) == [(0, 10), (10, 20), (20, 25)]
    assert chunk_spans("aaa bbb ccc ddd", 8) == [(0, 7), (8, 15)]  # cut at a space, the space dropped


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab 。.\n华为x!?", max_size=200), st.integers(1, 40))
def test_chunks_cover_all_content_in_order(text, size):
    spans = chunk_spans(text, size)
    pos = 0
    for s, e in spans:
        assert pos <= s < e <= len(text) and e - s <= size
        assert text[pos:s].strip() == ""  # nothing but whitespace is left out
        assert not text[s].isspace() and not text[e - 1].isspace()
        pos = e
    assert text[pos:].strip() == ""


def test_find_span_offsets_into_the_document():
    assert find_span("北京大学位于北京", "北京", 100) == [100, 102]
    assert find_span("abc", "z") is None and find_span("abc", "") is None


def test_sentence_around_a_span():
    text = "张三出生于北京。他在上海工作！Bob lives in Paris. He likes it."
    s, e = sentence_around(text, text.index("上海"), text.index("上海") + 2)
    assert text[s:e] == "他在上海工作！"
    s, e = sentence_around(text, text.index("Paris"), text.index("Paris") + 5)
    assert text[s:e] == "Bob lives in Paris."
    long = "x" * 1000 + "目标" + "y" * 1000
    s, e = sentence_around(long, 1000, 1002, max_chars=40)
    assert s <= 1000 and e >= 1002 and e - s <= 40


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
