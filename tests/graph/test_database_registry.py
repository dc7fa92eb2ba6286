"""Graph databases are a URI scheme -> ``Target`` registry: the contract every registered database
meets, and a test-only database that shows adding one is one class plus its registration."""

import pytest

from kgopt.errors import ConfigError
from kgopt.graph import databases
from kgopt.graph.build import build_graph
from kgopt.graph.databases import DATABASES, Target, connect_target, load_graph, register_database

LABELS = [{"head": "Ada", "head_type": "person", "relation": "works at", "tail": "Analytical Engine Co", "tail_type": "org"},
          {"head": "Ada", "head_type": "person", "relation": "born in", "tail": "London", "tail_type": "place"}]


@pytest.mark.parametrize("scheme", sorted(DATABASES))
def test_every_registered_database_is_a_target_with_a_name(scheme):
    cls = DATABASES[scheme]
    assert issubclass(cls, Target) and cls.name
    assert callable(cls.from_uri) and cls.from_uri is not Target.from_uri


def test_the_built_in_schemes():
    assert DATABASES["falkordb"].name == "FalkorDB"
    assert {s for s, c in DATABASES.items() if c.name == "Neo4j"} == {"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"}


def test_an_unknown_scheme_lists_the_registered_ones():
    with pytest.raises(ConfigError, match=r"unknown graph database URI redis://\.\.\.: use one of falkordb://"):
        connect_target("redis://127.0.0.1:6379")


def test_a_scheme_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already FalkorDB's"):
        register_database("falkordb")(type("Other", (Target,), {"name": "Other"}))


@pytest.fixture()
def memory_database(monkeypatch):
    """A test-only database: a dict that runs nothing, registered for memory:// for the test."""
    monkeypatch.setattr(databases, "DATABASES", dict(DATABASES))
    written = []

    @register_database("memory")
    class MemoryTarget(Target):
        name = "Memory"

        def __init__(self, uri, password):
            self.where, self.password = uri, password

        @classmethod
        def from_uri(cls, uri, user, password, database, timeout):
            return cls(uri, password)

        def ensure_index(self):
            written.append(("index", None))

        def write(self, batches):
            written.extend(batches)

    return written


def test_a_new_database_is_one_class_plus_its_registration(memory_database):
    graph = build_graph([({"doc": "d1", "chunk": 0, "task": "KG"}, {"triples": LABELS})])
    sent = load_graph(graph, "memory://here", password="s3cret")
    assert sent == {"nodes": 3, "edges": 2} == {"nodes": len(graph.nodes), "edges": len(graph.edges)}
    assert memory_database[0] == ("index", None)
    (node_statement, node_rows), *edge_batches = memory_database[1:]
    assert node_statement == databases.NODE_STATEMENT and {r["name"] for r in node_rows} == {"Ada", "Analytical Engine Co", "London"}
    assert sum(len(rows) for _, rows in edge_batches) == 2
