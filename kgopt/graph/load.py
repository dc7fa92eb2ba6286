"""Load a merged graph into a graph database: FalkorDB or Neo4j, with the same Cypher.

The model is the one ``graph.cypher`` writes: ``(:Entity {id, name, type, aliases, mentions,
docs})`` nodes and one relationship per (head, relation, tail), typed by the relation, with
its ``count`` and the ``docs`` it was seen in. Every statement MERGEs on ids, so loading twice
adds nothing. The statements are shared; a per-database ``Target`` only connects, creates the
id index in its own dialect and runs them, so callers never branch on the database.

URIs: ``falkordb://[:PASSWORD@]HOST[:PORT][/GRAPH]`` (``pip install 'kgopt[falkordb]'``;
password also from ``FALKORDB_PASSWORD``) and ``bolt://``/``neo4j://`` (``kgopt[neo4j]``;
password from ``NEO4J_PASSWORD``). Passwords are never logged.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any
from urllib.parse import unquote, urlsplit

from loguru import logger

from kgopt.errors import ConfigError, EndpointError
from kgopt.graph.build import Graph
from kgopt.graph.export import cypher_name, edge_docs

BATCH = 1000
DEFAULT_GRAPH = "kgopt"

NODE_STATEMENT = (
    "UNWIND $rows AS r MERGE (n:Entity {id: r.id}) "
    "SET n.name = r.name, n.type = r.type, n.aliases = r.aliases, n.mentions = r.mentions, n.docs = r.docs"
)


def edge_statement(relation: str) -> str:
    # A relationship type cannot be a parameter in Cypher: one statement per relation.
    return (
        "UNWIND $rows AS r MATCH (h:Entity {id: r.h}), (t:Entity {id: r.t}) "
        f"MERGE (h)-[x:{cypher_name(relation)}]->(t) SET x.count = r.count, x.docs = r.docs"
    )


def graph_rows(graph: Graph) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    nodes = [
        {"id": n.id, "name": n.name, "type": n.type, "aliases": n.aliases, "mentions": n.mentions, "docs": n.docs}
        for n in graph.nodes.values()
    ]
    by_relation: dict[str, list[dict[str, Any]]] = {}
    for e in graph.edges:
        by_relation.setdefault(e.relation, []).append({"h": e.head, "t": e.tail, "count": e.count, "docs": edge_docs(e.provenance)})
    return nodes, by_relation


class Target(ABC):
    """One graph database: connect, make the id index, run a statement over rows."""

    name: str

    @abstractmethod
    def ensure_index(self) -> None: ...

    @abstractmethod
    def run(self, statement: str, rows: list[dict[str, Any]]) -> None: ...

    def close(self) -> None:
        pass


class FalkorDBTarget(Target):
    name = "FalkorDB"

    def __init__(self, host: str, port: int, graph: str, password: str | None):
        try:
            import falkordb
            import redis.exceptions
        except ImportError:
            raise ConfigError("loading into FalkorDB needs its client: pip install 'kgopt[falkordb]'") from None
        self._errors = (redis.exceptions.RedisError, OSError)
        self.where = f"falkordb://{host}:{port}/{graph}"
        try:
            self._db = falkordb.FalkorDB(host=host, port=port, password=password or None)
            self._graph = self._db.select_graph(graph)
            self._db.connection.ping()
        except self._errors as exc:
            raise EndpointError(f"FalkorDB at {self.where} is not reachable: {type(exc).__name__}: {exc}") from None

    def ensure_index(self) -> None:
        try:
            self._graph.query("CREATE INDEX FOR (n:Entity) ON (n.id)")
        except self._errors as exc:
            if "already indexed" not in str(exc):
                raise EndpointError(f"FalkorDB at {self.where}: {exc}") from None

    def run(self, statement: str, rows: list[dict[str, Any]]) -> None:
        try:
            self._graph.query(statement, {"rows": rows})
        except self._errors as exc:
            raise EndpointError(f"FalkorDB at {self.where}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self._db.connection.close()


class Neo4jTarget(Target):
    name = "Neo4j"

    def __init__(self, uri: str, user: str, password: str, database: str | None):
        try:
            import neo4j
        except ImportError:
            raise ConfigError("loading into Neo4j needs the official driver: pip install 'kgopt[neo4j]'") from None
        self._neo4j, self.where, self._database = neo4j, uri, database
        try:
            self._driver = neo4j.GraphDatabase.driver(uri, auth=(user, password))
            self._driver.verify_connectivity()
        except (neo4j.exceptions.DriverError, neo4j.exceptions.Neo4jError, OSError) as exc:
            raise EndpointError(f"Neo4j at {uri} is not reachable: {type(exc).__name__}: {exc}") from None

    def ensure_index(self) -> None:
        self.run("CREATE CONSTRAINT kgopt_entity_id IF NOT EXISTS FOR (n:Entity) REQUIRE n.id IS UNIQUE", None)

    def run(self, statement: str, rows: list[dict[str, Any]] | None) -> None:
        try:
            with self._driver.session(database=self._database) as session:
                session.run(statement, rows=rows).consume()
        except (self._neo4j.exceptions.Neo4jError, self._neo4j.exceptions.DriverError, OSError) as exc:
            raise EndpointError(f"Neo4j at {self.where}: {exc}") from None

    def close(self) -> None:
        self._driver.close()


def connect_target(uri: str, user: str | None = None, password: str | None = None, database: str | None = None) -> Target:
    """The database a URI names (see the module doc)."""
    parts = urlsplit(uri)
    if parts.scheme == "falkordb":
        graph = unquote(parts.path.strip("/")) or DEFAULT_GRAPH
        secret = password if password is not None else (unquote(parts.password) if parts.password else os.environ.get("FALKORDB_PASSWORD"))
        return FalkorDBTarget(parts.hostname or "127.0.0.1", parts.port or 6379, graph, secret)
    if parts.scheme in ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"):
        secret = password if password is not None else os.environ.get("NEO4J_PASSWORD", "")
        return Neo4jTarget(uri, user or "neo4j", secret, database)
    raise ConfigError(f"unknown graph database URI {parts.scheme}://...: use falkordb://HOST:PORT/GRAPH, bolt://HOST:7687 or neo4j://HOST:7687")


def load_graph(graph: Graph, uri: str, user: str | None = None, password: str | None = None, database: str | None = None) -> dict[str, int]:
    """MERGE the graph's nodes and edges into the database at ``uri``; returns how many of each were sent."""
    target = connect_target(uri, user, password, database)
    nodes, by_relation = graph_rows(graph)
    try:
        target.ensure_index()
        for i in range(0, len(nodes), BATCH):
            target.run(NODE_STATEMENT, nodes[i : i + BATCH])
        for relation, rows in by_relation.items():
            for i in range(0, len(rows), BATCH):
                target.run(edge_statement(relation), rows[i : i + BATCH])
    finally:
        target.close()
    logger.info("loaded {} nodes and {} edges into {} at {}", len(nodes), len(graph.edges), target.name, target.where)
    return {"nodes": len(nodes), "edges": len(graph.edges)}
