"""Graph quality against gold: triple P/R/F1 after merging, and split / joined entities."""

from types import SimpleNamespace

from kgopt.graph.build import build_graph, mentions_from_labels
from kgopt.graph.quality import gold_entities, graph_vs_gold, merge_quality


def _graph(*calls):
    units = []
    for i, (text, labels) in enumerate(calls):
        units.append(({"doc": f"d{i}", "chunk": 0, "task": "KG", "program": "p"}, mentions_from_labels("KG", labels, text)))
    return build_graph(units)


def test_an_alias_of_a_merged_node_still_matches_gold():
    g = _graph(
        ("张三出生于北京。", [{"head": "张三", "head_type": "人物", "relation": "出生地点", "tail": "北京"}]),
        ("《张三》出生于北京。", [{"head": "张三 ", "head_type": "人物", "relation": "出生地点", "tail": "北京"}]),
        ("李四是作家。", [{"head": "李四", "head_type": "人物", "relation": "职业", "tail": "医生"}]),
    )
    gold = [("张三", "出生地点", "北京"), ("李四", "职业", "作家"), ("王五", "职业", "警察")]
    m = graph_vs_gold(g, gold)
    assert (m["edges"], m["matched_edges"], m["gold"], m["matched_gold"]) == (2, 1, 3, 1)
    assert (m["P"], m["R"], m["F1"]) == (50.0, 33.33, 40.0)


def test_split_and_joined_entities_are_counted_against_gold():
    g = _graph(
        ("Apple makes phones.", [{"head": "Apple", "head_type": "organization", "relation": "product", "tail": "phones"}]),
        ("Apple is a fruit.", [{"head": "Apple", "head_type": "fruit", "relation": "is a", "tail": "fruit"}]),
    )
    records = [SimpleNamespace(labels=[{"head": "Apple", "head_type": "organization", "relation": "product", "tail": "phones"}])]
    q = merge_quality(g, gold_entities(records))
    assert q["split"] == 1 and q["joined"] == 0
    assert {t for _, t in q["split_examples"][0]["nodes"]} == {"organization", "fruit"}


def test_one_node_for_a_name_the_gold_gives_two_types_is_a_join():
    g = _graph(("Paris is in France.", [{"head": "Paris", "head_type": "location", "relation": "located in", "tail": "France"}]))
    records = [SimpleNamespace(labels=[{"head": "Paris", "head_type": "location", "relation": "located in", "tail": "France", "tail_type": "location"},
                                       {"head": "Helen", "head_type": "person", "relation": "spouse", "tail": "Paris", "tail_type": "person"}])]
    q = merge_quality(g, gold_entities(records))
    assert (q["split"], q["joined"]) == (0, 1) and q["joined_examples"][0]["gold_types"] == ["location", "person"]
