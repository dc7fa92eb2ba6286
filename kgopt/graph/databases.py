"""Graph databases: load a merged graph into FalkorDB or Neo4j, with the same Cypher.

To add a database, write a ``Target`` subclass with ``from_uri`` and register it for its URI
schemes with ``@register_database("scheme", ...)``; ``connect_target`` finds it by scheme.

The model is the one ``graph.cypher`` writes: ``(:Entity {id, name, type, aliases, mentions,
docs})`` nodes and one relationship per (head, relation, tail), typed by the relation, with
its ``count`` and the ``docs`` it was seen in. A relation that is not letters, digits,
underscores and spaces gets a safe type and keeps its text in a ``relation`` property (see
``kgopt.graph.export.relationship_type``): ``coalesce(r.relation, type(r))`` is the relation.
The statements are shared; a per-database ``Target`` only connects, creates the id index in
its own dialect and runs them, so callers never branch on the database.

All or nothing, where the database allows it:

- Every node and edge is checked (ids, names, types of values, relation types) before the
  first connection, so bad input never leaves a half-written graph.
- Neo4j: the id constraint first (Neo4j cannot mix schema and data in one transaction), then
  every node and edge in ONE transaction: a failure rolls the whole load back.
- FalkorDB has no multi-statement transactions (each query is atomic on its own), so a load
  cut off midway (lost connection, timeout) can leave part of the graph. Every statement
  MERGEs on ids, so running the same load again completes it and adds nothing twice.

URIs: ``falkordb://[[USER]:PASSWORD@]HOST[:PORT][/GRAPH]`` (``pip install 'kgopt[falkordb]'``;
password also from ``FALKORDB_PASSWORD``) and ``bolt://``/``neo4j://[USER[:PASSWORD]@]HOST``
(``kgopt[neo4j]``; password also from ``NEO4J_PASSWORD``). A password given to ``load_graph``
wins over the URI's, which wins over the environment's. Passwords are never logged or put in
an error: every message that names a URI goes through ``kgopt.redaction``.

Timeouts: every connection has a connect timeout and a socket (read/write) timeout of
``DEFAULT_TIMEOUT`` seconds, or ``KGOPT_GRAPH_DB_TIMEOUT`` seconds from the environment, or
``load_graph(timeout=...)``; a server that accepts and never answers is an ``EndpointError``,
not a hang. The Neo4j driver has no client-side read timeout once connected: its connect,
handshake and connection acquisition are bounded.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from loguru import logger

from kgopt.clients.credentials import read_secret_file
from kgopt.errors import ConfigError, DataError, EndpointError
from kgopt.graph.build import Graph
from kgopt.graph.export import cypher_name, edge_docs, is_mapped, relationship_type
from kgopt.redaction import redact_url, scrub

BATCH = 1000
DEFAULT_GRAPH = "kgopt"
DEFAULT_TIMEOUT = 30.0  # seconds; a load is many short statements, each well under this
TIMEOUT_ENV = "KGOPT_GRAPH_DB_TIMEOUT"

NODE_STATEMENT = (
    "UNWIND $rows AS r MERGE (n:Entity {id: r.id}) "
    "SET n.name = r.name, n.type = r.type, n.aliases = r.aliases, n.mentions = r.mentions, n.docs = r.docs"
)


def edge_statement(relation: str) -> str:
    # A relationship type cannot be a parameter in Cypher: one statement per relation.
    original = ", x.relation = r.relation" if is_mapped(relation) else ""
    return (
        "UNWIND $rows AS r MATCH (h:Entity {id: r.h}), (t:Entity {id: r.t}) "
        f"MERGE (h)-[x:{cypher_name(relation)}]->(t) SET x.count = r.count, x.docs = r.docs{original}"
    )


def load_timeout(timeout: float | None = None) -> float:
    """The connect/socket timeout in seconds: ``timeout``, else ``KGOPT_GRAPH_DB_TIMEOUT``, else 30."""
    source = "timeout"
    if timeout is None:
        raw = os.environ.get(TIMEOUT_ENV)
        if raw is None or not raw.strip():
            return DEFAULT_TIMEOUT
        source = TIMEOUT_ENV
        try:
            timeout = float(raw)
        except ValueError:
            raise ConfigError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ConfigError(f"{source} must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_node(key: Any, n: Any) -> None:
    if not isinstance(n.id, str) or not n.id or n.id != key:
        raise DataError(f"node {_short(key)}: id {_short(n.id)} is not a non-empty string equal to its key")
    if not isinstance(n.name, str) or not isinstance(n.type, str):
        raise DataError(f"node {_short(key)}: name and type must be strings")
    if not isinstance(n.aliases, list) or not all(isinstance(a, str) for a in n.aliases):
        raise DataError(f"node {_short(key)}: aliases must be a list of strings")
    if not (_whole(n.mentions) and _whole(n.docs)):
        raise DataError(f"node {_short(key)}: mentions and docs must be whole numbers")


def _check_edge(i: int, e: Any, graph: Graph) -> None:
    where = f"edge {i} ({_short(e.head)} -{_short(e.relation)}-> {_short(e.tail)})"
    if not isinstance(e.relation, str) or not e.relation:
        raise DataError(f"{where}: the relation is not a non-empty string")
    if not (isinstance(e.head, str) and e.head in graph.nodes and isinstance(e.tail, str) and e.tail in graph.nodes):
        raise DataError(f"{where}: names a node that is not in the graph")
    if not _whole(e.count):
        raise DataError(f"{where}: count must be a whole number")
    if not isinstance(e.provenance, list) or not all(isinstance(p, dict) for p in e.provenance):
        raise DataError(f"{where}: provenance must be a list of objects")


@dataclass
class LoadPlan:
    """Every statement of a load with its rows, made (and so checked) before any connection."""

    nodes: list[dict[str, Any]]
    edges: list[tuple[str, list[dict[str, Any]]]]  # (statement, rows), one per relation
    edge_count: int

    def batches(self) -> list[tuple[str, list[dict[str, Any]]]]:
        out = [(NODE_STATEMENT, self.nodes[i : i + BATCH]) for i in range(0, len(self.nodes), BATCH)]
        for statement, rows in self.edges:
            out += [(statement, rows[i : i + BATCH]) for i in range(0, len(rows), BATCH)]
        return out


def plan_load(graph: Graph) -> LoadPlan:
    """The statements and rows of ``graph``; a ``DataError`` for any node or edge a database
    would refuse or silently merge (so nothing is written when one is bad)."""
    for key, n in graph.nodes.items():
        _check_node(key, n)
    nodes = [
        {"id": n.id, "name": n.name, "type": n.type, "aliases": list(n.aliases), "mentions": n.mentions, "docs": n.docs}
        for n in graph.nodes.values()
    ]
    by_relation: dict[str, list[dict[str, Any]]] = {}
    owner: dict[str, str] = {}  # relationship type -> the relation it was made from
    seen: dict[tuple[str, str, str], int] = {}
    for i, e in enumerate(graph.edges):
        _check_edge(i, e, graph)
        rtype = relationship_type(e.relation)
        if owner.setdefault(rtype, e.relation) != e.relation:  # a 40-bit hash collision: refuse, never merge
            raise DataError(f"relations {_short(owner[rtype])} and {_short(e.relation)} map to one relationship type {_short(rtype)}")
        key = (e.head, e.relation, e.tail)
        if key in seen:  # MERGE would make the two one edge, and the count sent would lie
            raise DataError(f"edge {i} repeats edge {seen[key]} ({_short(e.head)} -{_short(e.relation)}-> {_short(e.tail)})")
        seen[key] = i
        row = {"h": e.head, "t": e.tail, "count": e.count, "docs": edge_docs(e.provenance)}
        if rtype != e.relation:
            row["relation"] = e.relation
        by_relation.setdefault(e.relation, []).append(row)
    return LoadPlan(nodes, [(edge_statement(r), rows) for r, rows in by_relation.items()], len(graph.edges))


class Target(ABC):
    """One graph database: connect, make the id index, run a load's statements."""

    name: str
    where: str  # the URI, redacted

    @classmethod
    @abstractmethod
    def from_uri(cls, uri: str, user: str | None, password: str | None, database: str | None, timeout: float) -> "Target":
        """Connect to the database ``uri`` names (``password``, when given, wins over the URI's)."""

    @abstractmethod
    def ensure_index(self) -> None: ...

    @abstractmethod
    def write(self, batches: list[tuple[str, list[dict[str, Any]]]]) -> None:
        """Run every (statement, rows), as one transaction where the database has them."""

    def close(self) -> None:  # noqa: B027 - most databases have nothing to close
        pass


DATABASES: dict[str, type[Target]] = {}  # URI scheme -> its database


def register_database(*schemes: str):
    """Class decorator: the ``Target`` that URIs with these schemes name."""

    def register(cls: type[Target]) -> type[Target]:
        for scheme in schemes:
            if scheme in DATABASES:
                raise ValueError(f"URI scheme {scheme!r} is already {DATABASES[scheme].name}'s")
            DATABASES[scheme] = cls
        return cls

    return register


def _uri_password(parts) -> str | None:
    return unquote(parts.password) if parts.password is not None else None


@register_database("falkordb")
class FalkorDBTarget(Target):
    name = "FalkorDB"

    @classmethod
    def from_uri(cls, uri, user, password, database, timeout):
        parts = urlsplit(uri)
        graph = unquote(parts.path.strip("/")) or DEFAULT_GRAPH
        in_uri = _uri_password(parts)
        secret = password if password is not None else (in_uri if in_uri else os.environ.get("FALKORDB_PASSWORD"))
        username = unquote(parts.username) if parts.username else None  # a redis ACL user; --user is Neo4j's
        return cls(parts.hostname or "127.0.0.1", parts.port or 6379, graph, secret, username, timeout)

    def __init__(self, host: str, port: int, graph: str, password: str | None, username: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT):
        try:
            import falkordb
            import redis.exceptions
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigError("loading into FalkorDB needs its client: pip install 'kgopt[falkordb]'") from None
        self._errors = (redis.exceptions.RedisError, OSError)
        self._timeouts = (redis.exceptions.TimeoutError, TimeoutError)
        self._secret, self._timeout = password, timeout
        self.where = f"falkordb://{host}:{port}/{graph}"
        try:
            # No retries: a retried statement would wait the timeout again, so "within the
            # timeout" would not hold (a re-run of the load is the retry, and is idempotent).
            self._db = falkordb.FalkorDB(host=host, port=port, password=password or None, username=username or None,
                                         socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
            self._graph = self._db.select_graph(graph)
            self._db.connection.ping()
        except self._errors as exc:
            raise EndpointError(f"FalkorDB at {self.where} is not reachable: {self._describe(exc)}") from None

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, self._timeouts):
            return f"no answer within {self._timeout:g} s (set {TIMEOUT_ENV} to wait longer)"
        return f"{type(exc).__name__}: {scrub(str(exc), self._secret)}"

    def ensure_index(self) -> None:
        try:
            self._graph.query("CREATE INDEX FOR (n:Entity) ON (n.id)")
        except self._errors as exc:
            if "already indexed" not in str(exc):
                raise EndpointError(f"FalkorDB at {self.where}: {self._describe(exc)}") from None

    def write(self, batches: list[tuple[str, list[dict[str, Any]]]]) -> None:
        done = 0
        for statement, rows in batches:
            try:
                self._graph.query(statement, {"rows": rows})
            except (self._errors + (ValueError,)) as exc:
                partial = f" ({done} of {len(batches)} statements were written; the same load again completes it)" if done else ""
                raise EndpointError(f"FalkorDB at {self.where}: {self._describe(exc)}{partial}") from None
            done += 1

    def close(self) -> None:
        try:
            self._db.connection.close()
        except self._errors:
            pass  # already broken (a timeout): nothing to close cleanly


@register_database("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
class Neo4jTarget(Target):
    name = "Neo4j"

    @classmethod
    def from_uri(cls, uri, user, password, database, timeout):
        parts = urlsplit(uri)
        in_uri = _uri_password(parts)
        # The driver refuses user info in a bolt:// URI (and puts the whole URI in its error).
        secret = password if password is not None else (in_uri if in_uri is not None else os.environ.get("NEO4J_PASSWORD", ""))
        name = user or (unquote(parts.username) if parts.username else None) or "neo4j"
        return cls(_netloc_without_userinfo(uri), name, secret, database, timeout)

    def __init__(self, uri: str, user: str, password: str, database: str | None, timeout: float = DEFAULT_TIMEOUT):
        try:
            import neo4j
        except ImportError:
            raise ConfigError("loading into Neo4j needs the official driver: pip install 'kgopt[neo4j]'") from None
        self._neo4j, self._database, self._secret = neo4j, database, password
        self.where = redact_url(uri) or uri
        self._errors = (neo4j.exceptions.DriverError, neo4j.exceptions.Neo4jError, OSError)
        try:
            self._driver = neo4j.GraphDatabase.driver(
                uri, auth=(user, password), connection_timeout=timeout, connection_acquisition_timeout=timeout,
            )
            self._driver.verify_connectivity()
        except (ValueError, TypeError) + self._errors as exc:
            raise EndpointError(f"Neo4j at {self.where} is not reachable: {type(exc).__name__}: {self._scrub(exc)}") from None

    def _scrub(self, exc: Exception) -> str:
        return " ".join(scrub(str(exc), self._secret).split())  # the driver's messages span lines: keep one

    def ensure_index(self) -> None:
        try:
            with self._driver.session(database=self._database) as session:
                session.run("CREATE CONSTRAINT kgopt_entity_id IF NOT EXISTS FOR (n:Entity) REQUIRE n.id IS UNIQUE").consume()
        except self._errors as exc:
            raise EndpointError(f"Neo4j at {self.where}: {self._scrub(exc)}") from None

    def write(self, batches: list[tuple[str, list[dict[str, Any]]]]) -> None:
        try:
            with self._driver.session(database=self._database) as session:
                # Leaving the block without commit() (any error) rolls everything back.
                with session.begin_transaction() as tx:
                    for statement, rows in batches:
                        tx.run(statement, rows=rows).consume()
                    tx.commit()
        except self._errors as exc:
            raise EndpointError(f"Neo4j at {self.where}: {self._scrub(exc)} (rolled back: nothing of this load was written)") from None

    def close(self) -> None:
        self._driver.close()


def warn_password_in_uri(uri: str, option: str = "--into", file_option: str = "--password-file") -> bool:
    """Warn (and say True) when a URI given on the command line carries a password."""
    try:
        has_password = bool(urlsplit(uri).password)
    except ValueError:
        return False
    if has_password:
        logger.warning("{} has a password in it: process arguments are visible to other users of this machine (ps); "
                       "give it in FALKORDB_PASSWORD / NEO4J_PASSWORD or with {} instead", option, file_option)
    return has_password


def cli_password(uri: str | None, password_file: str | os.PathLike | None, option: str = "--into",
                 file_option: str = "--password-file") -> str | None:
    """A command's database password: warns when the URI argument holds one, reads the file if given."""
    if uri:
        warn_password_in_uri(uri, option, file_option)
    if password_file is None:
        return None
    if not uri:
        raise ConfigError(f"{file_option} is the password of {option}, which is not given")
    return read_secret_file(password_file)  # the one reader of password files (clients/credentials.py)


def _netloc_without_userinfo(uri: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def connect_target(uri: str, user: str | None = None, password: str | None = None, database: str | None = None,
                   timeout: float | None = None) -> Target:
    """The database a URI names (see the module doc)."""
    seconds = load_timeout(timeout)
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - reading it checks it (a bad port raises ValueError)
    except ValueError as exc:
        raise ConfigError(f"bad graph database URI {redact_url(uri)}: {scrub(str(exc), uri)}") from None
    if parts.scheme not in DATABASES:
        known = ", ".join(f"{scheme}://" for scheme in DATABASES)
        raise ConfigError(f"unknown graph database URI {parts.scheme}://...: use one of {known} (e.g. falkordb://HOST:PORT/GRAPH, bolt://HOST:7687)")
    return DATABASES[parts.scheme].from_uri(uri, user, password, database, seconds)


def load_graph(graph: Graph, uri: str, user: str | None = None, password: str | None = None, database: str | None = None,
               timeout: float | None = None) -> dict[str, int]:
    """MERGE the graph's nodes and edges into the database at ``uri``; returns how many of each
    were written. Checks everything first (``DataError``, nothing written); see the module doc
    for what a failure midway leaves in each database."""
    plan = plan_load(graph)
    target = connect_target(uri, user, password, database, timeout)
    try:
        target.ensure_index()
        target.write(plan.batches())
    finally:
        target.close()
    logger.info("loaded {} nodes and {} edges into {} at {}", len(plan.nodes), plan.edge_count, target.name, target.where)
    return {"nodes": len(plan.nodes), "edges": plan.edge_count}
