"""Load a merged graph into Neo4j with the official driver (``pip install kgopt[neo4j]``).

Same model as ``graph.cypher``: ``(:Entity {id, name, type, aliases, mentions})`` nodes and
one relationship per (head, relation, tail) whose type is the relation, with its count.
MERGE on ids makes a re-load idempotent. The password comes from the caller or
``NEO4J_PASSWORD`` and is never logged.
"""

from __future__ import annotations

import os
from typing import Any

from loguru import logger

from kgopt.errors import ConfigError, EndpointError
from kgopt.graph.build import Graph
from kgopt.graph.export import cypher_name

BATCH = 1000


def _batches(rows: list[Any], size: int = BATCH):
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def load_into_neo4j(graph: Graph, uri: str, user: str = "neo4j", password: str | None = None, database: str | None = None) -> dict[str, int]:
    """MERGE the graph's nodes and edges; returns how many of each were sent."""
    try:
        import neo4j
    except ImportError:
        raise ConfigError("--neo4j-uri needs the Neo4j driver: pip install 'kgopt[neo4j]'") from None
    password = password if password is not None else os.environ.get("NEO4J_PASSWORD", "")
    nodes = [
        {"id": n.id, "name": n.name, "type": n.type, "aliases": n.aliases, "mentions": n.mentions} for n in graph.nodes.values()
    ]
    by_relation: dict[str, list[dict[str, Any]]] = {}
    for e in graph.edges:
        by_relation.setdefault(e.relation, []).append({"h": e.head, "t": e.tail, "count": e.count})
    try:
        with neo4j.GraphDatabase.driver(uri, auth=(user, password)) as driver:
            driver.verify_connectivity()
            with driver.session(database=database) as session:
                session.run("CREATE CONSTRAINT kgopt_entity_id IF NOT EXISTS FOR (n:Entity) REQUIRE n.id IS UNIQUE").consume()
                for batch in _batches(nodes):
                    session.run(
                        "UNWIND $rows AS r MERGE (n:Entity {id: r.id}) "
                        "SET n.name = r.name, n.type = r.type, n.aliases = r.aliases, n.mentions = r.mentions",
                        rows=batch,
                    ).consume()
                for rel, rows in by_relation.items():
                    for batch in _batches(rows):
                        session.run(
                            "UNWIND $rows AS r MATCH (h:Entity {id: r.h}), (t:Entity {id: r.t}) "
                            f"MERGE (h)-[x:{cypher_name(rel)}]->(t) SET x.count = r.count",
                            rows=batch,
                        ).consume()
    except neo4j.exceptions.Neo4jError as exc:
        raise EndpointError(f"Neo4j at {uri}: {exc}") from None
    except (neo4j.exceptions.DriverError, OSError) as exc:
        raise EndpointError(f"Neo4j at {uri} is not reachable: {type(exc).__name__}: {exc}") from None
    logger.info("loaded {} nodes and {} edges into Neo4j at {}", len(nodes), len(graph.edges), uri)
    return {"nodes": len(nodes), "edges": len(graph.edges)}
