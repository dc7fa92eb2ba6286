"""``kgopt extract``: run compiled programs over documents and build one knowledge graph.

The unit of work is one LLM call: (document window, task, schema chunk). Units are planned
from the input in a stable order, run ``workers`` at a time, and each result is appended
to ``OUT/results.jsonl`` as it arrives (``ResultLog``). A re-run skips every finished
unit, so a killed job resumes where it stopped; the graph is then built from the log in
input order, so it is the same however the run was split, and exports are written
atomically. Failed calls (after the client's retries) are recorded with their reason and
retried by the next run; ``max_failures`` stops a job that keeps failing.

Input is read twice (streaming): once to check every line before the first LLM call and
count the work, once to run it, and a third time to build the graph.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from loguru import logger
from tqdm import tqdm

from kgopt.clients.lm import UsageSpan, as_connection
from kgopt.core.windows import window_spans
from kgopt.core.parsing import EMPTY, ERROR, INVALID
from kgopt.core.schema import Schema, merge_schemas
from kgopt.core.tasks import check_lang, get_task
from kgopt.data.documents import BadLine, Document, check_documents
from kgopt.data.jsonio import dumps, write_atomic
from kgopt.errors import BudgetExceeded, ConfigError, DataError, ExtractAborted, KgoptError
from kgopt.extraction.results import FAILED, ResultLog
from kgopt.graph.build import EXTRACT_TASKS, GraphBuilder, mentions_from_labels
from kgopt.graph.export import write_exports
from kgopt.graph.view import VIEW, write_view
from kgopt.locations import baseline_program, find_program

DEFAULT_WINDOW_CHARS = 500  # fits OneKE-sized prompts (IEPile inputs are sentences to short paragraphs)
UNPARSABLE = "unparsable"


@dataclass
class TaskProgram:
    """One task's program and the schema it asks with."""

    task: str
    program: Any  # IEProgram
    path: Path
    program_id: str  # file name + content hash: results of another program are not reused
    schema: Schema | None = None  # IEPile tasks
    topics: dict[str, Schema] = field(default_factory=dict)  # InstructIE tasks (KG): topic -> schema
    topics_from: str = ""

    def schemas_for(self, doc: Document) -> list[tuple[str, Schema]]:
        """``(topic, schema)`` pairs a document is asked with (topic "" for IEPile tasks)."""
        if not self.topics:  # IEPile tasks: one schema for every document
            return [("", self.schema)]
        if doc.cate:
            if doc.cate not in self.topics:
                raise DataError(f"cate {doc.cate!r} is not a topic of {self.topics_from} (topics: {', '.join(self.topics)})", doc.path, doc.line)
            return [(doc.cate, self.topics[doc.cate])]
        return list(self.topics.items())  # no topic given: ask every topic


@dataclass(frozen=True)
class Unit:
    key: str
    doc: Document
    doc_index: int
    window: int  # index of the document window (stored as "chunk" in results and provenance)
    start: int
    end: int
    task: TaskProgram
    part: int
    topic: str
    schema_chunk: list

    @property
    def text(self) -> str:
        return self.doc.text[self.start : self.end]


def _program_id(path: Path) -> str:
    return f"{path.name}@{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def _default_program(task: str, lang: str) -> Path:
    """``compiled/<TASK>_<lang>.json`` if there is one, else the zero-shot baseline in ``programs/``."""
    try:
        return find_program(task, lang)
    except KgoptError:
        path = baseline_program(task, lang)
        if not path.is_file():
            raise ConfigError(f"no compiled or baseline program for {task}/{lang} ({path})") from None
        return path


def _iepile_schema(task: str, lang: str, manifest: dict, data_dir) -> Schema:
    """The union of the manifest's schemas, else of the data's source schemas."""
    from kgopt.data.layouts import layout_of

    if manifest.get("schemas"):
        return merge_schemas(Schema.coerce(v) for v in manifest["schemas"].values())
    spec = get_task(task)
    schema = merge_schemas(layout_of(spec, data_dir).schemas(spec, lang).values())  # an IEPile tree's sources, or a user's schema
    if not (schema.types or schema.roles):
        raise ConfigError(f"no schema for {task}/{lang}: pass --schema {task}=FILE (a schema.json: IEPile's, or a {{\"labels\": [...]}} one)")
    return schema


def plan_programs(
    lang: str,
    tasks: list[str],
    programs: list[str | os.PathLike] = (),
    schemas: dict[str, str | os.PathLike] | None = None,
    data_dir=None,
) -> list[TaskProgram]:
    """Load each task's program (given, compiled, or baseline) and its schema."""
    from kgopt.data.readers import instructie_root, read_instructie_schema, read_schema_file
    from kgopt.program import load_program

    lang = check_lang(lang)
    schemas = dict(schemas or {})
    given: dict[str, tuple[Path, Any, dict]] = {}  # task -> (path, program, manifest)
    for p in programs:
        path = Path(p)
        prog, manifest = load_program(path)
        if prog.lang != lang:
            raise ConfigError(f"{path}: a {prog.task}/{prog.lang} program, but --lang is {lang}")
        given[prog.task] = (path, prog, manifest)
    names = [get_task(t).name for t in tasks] or list(given)
    for t in list(given):
        if t not in names:
            names.append(t)
    out = []
    for task in names:
        if task not in EXTRACT_TASKS:
            raise ConfigError(f"task {task} cannot run on raw text; choose from {', '.join(EXTRACT_TASKS)}")
        if task in given:
            path, program, manifest = given[task]
        else:
            path = _default_program(task, lang)
            program, manifest = load_program(path, task=task, lang=lang)
        tp = TaskProgram(task, program, path, _program_id(path))
        if get_task(task).asks_topics:
            sp = Path(schemas.pop(task, None) or instructie_root(data_dir) / f"schema_{lang}.json")
            tp.topics, tp.topics_from = read_instructie_schema(sp), str(sp)
        elif task in schemas:
            tp.schema = read_schema_file(schemas.pop(task), task)  # IEPile's three lines, or a user's {"labels": [...]}
        else:
            tp.schema = _iepile_schema(task, lang, manifest, data_dir)
        logger.info("{}: {} ({})", task, path, "given" if task in given else "compiled" if path.parent.name == "compiled" else "zero-shot baseline")
        out.append(tp)
    if schemas:
        raise ConfigError(f"--schema for {', '.join(schemas)}, which is not among the tasks run ({', '.join(names)})")
    return out


def _unit_key(doc: Document, window: int, start: int, end: int, tp: TaskProgram, schema_chunk: list) -> str:
    blob = dumps([doc.id, window, start, end, tp.task, tp.program_id, schema_chunk, doc.text[start:end]])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def iter_units(
    docs: Iterator[Document | BadLine], tasks: list[TaskProgram], window_chars: int
) -> Iterator[Unit | Document | BadLine]:
    """Units in input order; documents and bad lines are passed through (for counting)."""
    index = 0
    for doc in docs:
        yield doc
        if isinstance(doc, BadLine):
            continue
        spans = window_spans(doc.text, window_chars)
        for tp in tasks:
            for topic, schema in tp.schemas_for(doc):
                for part, sc in enumerate(tp.program.chunks(schema)):
                    for wi, (s, e) in enumerate(spans):
                        yield Unit(_unit_key(doc, wi, s, e, tp, sc), doc, index, wi, s, e, tp, part, topic, sc)
        index += 1


@dataclass
class ExtractReport:
    out_dir: Path
    documents: int = 0
    empty_documents: int = 0
    bad_lines: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    units: int = 0
    already_done: int = 0
    ran: int = 0
    ok: int = 0
    unparsable: int = 0
    failed: list[dict] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    aborted: str | None = None
    graph: dict[str, int] = field(default_factory=dict)
    exports: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items()}
        d["out_dir"] = str(self.out_dir)
        return d


MAX_LISTED = 1000  # warnings kept in the report; the rest are counted


def _survey(options: ExtractOptions, plan: list[TaskProgram], report: ExtractReport) -> int:
    """The checking pass: every line read and every topic resolved before any LLM call."""
    warnings = 0
    for item in iter_units(check_documents(options.input_path, options.skip_bad), plan, options.window_chars):
        if isinstance(item, BadLine):
            report.bad_lines.append(item.as_dict())
        elif isinstance(item, Document):
            report.documents += 1
            report.empty_documents += not item.text.strip()
            if item.warning:
                warnings += 1
                if warnings <= MAX_LISTED:
                    report.warnings.append(f"{item.where}: {item.warning}")
        else:
            report.units += 1
    if warnings > MAX_LISTED:
        report.warnings.append(f"... and {warnings - MAX_LISTED} more documents with invalid UTF-8")
    for b in report.bad_lines:
        logger.warning("skipped {}:{}: {}", b["path"], b["line"], b["reason"])
    for w in report.warnings[:20]:
        logger.warning(w)
    return report.units


def _run_unit(unit: Unit) -> dict[str, Any]:
    started = time.monotonic()
    pred = unit.task.program(text=unit.text, chunk=unit.schema_chunk)
    call = pred.calls[0] if pred.calls else {"status": ERROR, "error": "no call made", "output": "", "problems": []}
    row = {
        "key": unit.key,
        "doc": unit.doc.id,
        "chunk": unit.window,  # the file field keeps its first name: existing logs resume
        "start": unit.start,
        "end": unit.end,
        "task": unit.task.task,
        "topic": unit.topic,
        "part": unit.part,
        "program": unit.task.program_id,
        "output": call.get("output", ""),
        "parse": call.get("status"),
        "problems": call.get("problems", []),
        "seconds": round(time.monotonic() - started, 3),
    }
    if call.get("status") == ERROR:
        row.update(status=FAILED, error=call.get("error") or "LLM call failed", mentions={})
    else:
        # Unusable output (not JSON, or empty) is an answer too: recorded, not retried.
        status = UNPARSABLE if call.get("status") in (INVALID, EMPTY) and call.get("output", "").strip() else "ok"
        row.update(status=status, error=None, mentions=mentions_from_labels(unit.task.task, pred.result, unit.doc.text[unit.start : unit.end], unit.start))
    return row


@dataclass
class ExtractOptions:
    """What one ``kgopt extract`` job does (everything but the connection)."""

    input_path: str | os.PathLike
    lang: str
    out_dir: Path
    tasks: list[str] = field(default_factory=lambda: ["KG"])
    programs: list[str | os.PathLike] = field(default_factory=list)
    schemas: dict[str, str | os.PathLike] = field(default_factory=dict)
    workers: int = 4
    max_failures: int | None = None
    window_chars: int = DEFAULT_WINDOW_CHARS
    skip_bad: bool = False
    data_dir: str | os.PathLike | None = None
    progress: bool = True
    graph_db: str | None = None  # also load the graph into FalkorDB or Neo4j (kgopt.graph.databases)
    graph_db_user: str | None = None
    graph_db_password: str | None = field(default=None, repr=False)  # never in a log line

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.workers < 1:
            raise ConfigError("workers must be >= 1")


def extract(input_path: str | os.PathLike, lang: str, out_dir: str | os.PathLike, connection=None, **options: Any) -> ExtractReport:
    """Build (or resume) a graph from ``input_path`` into ``out_dir``; see the module doc.

    ``connection``: a Connection, a function returning one, or None (the configured endpoint).
    ``options``: the other fields of ``ExtractOptions``, by name (an unknown name is a TypeError).
    """
    return run_extract(ExtractOptions(input_path=input_path, lang=lang, out_dir=out_dir, **options), connection)


def run_extract(options: ExtractOptions, connection=None) -> ExtractReport:
    """The job as steps: plan and check everything, call the model, build the graph, write it."""
    started = time.monotonic()
    report = ExtractReport(options.out_dir)
    plan = plan_programs(options.lang, options.tasks, options.programs, options.schemas, options.data_dir)
    _survey(options, plan, report)
    with ResultLog(options.out_dir / "results.jsonl") as log:
        _call_model(options, plan, log, report, connection, started)  # connects only now: bad input costs no model start
        graph, texts = _build(options, plan, log)
    _write_outputs(options, graph, texts, report)
    report.seconds = round(time.monotonic() - started, 3)
    _write_report(options.out_dir, report)
    return report


def _call_model(options: ExtractOptions, plan, log: ResultLog, report: ExtractReport, connection, started: float) -> None:
    lm = as_connection(connection).lm
    for tp in plan:
        tp.program.set_lm(lm)
    spent = UsageSpan(lm.usage)
    try:
        _execute(options, plan, log, report, lm)
    finally:
        report.usage = spent.counts()
        report.seconds = round(time.monotonic() - started, 3)
        if report.aborted:
            _write_report(options.out_dir, report)


def _write_outputs(options: ExtractOptions, graph, texts: dict[str, str], report: ExtractReport) -> None:
    """The exports and the view, then the graph database if one is named."""
    report.graph = {"nodes": len(graph.nodes), "triples": len(graph.edges)}
    report.exports = {k: str(v) for k, v in write_exports(graph, options.out_dir).items()}
    report.exports[VIEW] = str(write_view(graph, options.out_dir / VIEW, texts))
    if options.graph_db:
        from kgopt.graph.databases import load_graph

        load_graph(graph, options.graph_db, user=options.graph_db_user, password=options.graph_db_password)


def _write_report(out: Path, report: ExtractReport) -> None:
    write_atomic(out / "report.json", lambda fh: fh.write(dumps(report.as_dict(), indent=2) + "\n"))


def _execute(options: ExtractOptions, plan: list[TaskProgram], log: ResultLog, report: ExtractReport, lm) -> None:
    workers, max_failures = options.workers, options.max_failures
    docs_total = report.documents
    remaining: dict[int, int] = {}  # doc index -> units not yet finished
    docs_done = 0
    bar = tqdm(total=report.units, desc="extract", unit="call", dynamic_ncols=True, disable=not options.progress)
    pending: dict[Future, Unit] = {}
    failures = 0
    spent = UsageSpan(lm.usage)

    def finish_doc(i: int) -> None:
        nonlocal docs_done
        remaining[i] -= 1
        if remaining[i] == 0:
            del remaining[i]
            docs_done += 1

    def settle(done_futures) -> None:
        nonlocal failures
        for fut in done_futures:
            unit = pending.pop(fut)
            row = fut.result()  # BudgetExceeded propagates from here
            log.append(row)
            report.ran += 1
            if row["status"] == FAILED:
                failures += 1
                report.failed.append(
                    {k: row.get(k) for k in ("doc", "chunk", "start", "end", "task", "topic", "part", "error")}
                )
                logger.debug("{} window {} {}: {}", row["doc"], row["chunk"], row["task"], row["error"])
            elif row["status"] == UNPARSABLE:
                report.unparsable += 1
            else:
                report.ok += 1
            finish_doc(unit.doc_index)
            bar.update(1)
        bar.set_postfix(docs=f"{docs_done}/{docs_total}", tokens=spent.counts()["total_tokens"], failed=failures, refresh=False)
        if max_failures is not None and failures > max_failures:
            raise ExtractAborted(f"{failures} failed calls, more than --max-failures {max_failures}")

    last_doc = -1
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kgopt-extract")
    try:
        for item in iter_units(check_documents(options.input_path, skip_bad=True), plan, options.window_chars):
            if isinstance(item, (Document, BadLine)):
                if isinstance(item, Document):
                    last_doc += 1
                    remaining[last_doc] = 1  # a sentinel until the document's units are all planned
                    if last_doc > 0:
                        finish_doc(last_doc - 1)
                continue
            if log.done(item.key):
                report.already_done += 1
                bar.update(1)
                continue
            remaining[item.doc_index] += 1
            pending[pool.submit(_run_unit, item)] = item
            if len(pending) >= 2 * workers:  # a bounded window: the input is never all in memory
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                settle(done)
        if last_doc >= 0:
            finish_doc(last_doc)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            settle(done)
    except KeyboardInterrupt:
        report.aborted = "interrupted"
        raise
    except (ExtractAborted, BudgetExceeded) as exc:
        report.aborted = str(exc)
        raise ExtractAborted(f"{exc}; finished calls are kept in {log.path}, re-run to resume") from None
    finally:
        for fut in pending:
            fut.cancel()
        # Calls already running finish in the background; their answers are in the response cache.
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()


def _build(options: ExtractOptions, plan: list[TaskProgram], log: ResultLog):
    """The graph from the log, in input order (the current job's units only), and the texts of
    the documents it came from (the graph view quotes their sentences)."""
    builder = GraphBuilder()
    texts: dict[str, str] = {}
    for item in iter_units(check_documents(options.input_path, skip_bad=True), plan, options.window_chars):
        if isinstance(item, Unit):
            row = log.get(item.key)
            if row and row["status"] != FAILED:
                where = {"doc": row["doc"], "chunk": row["chunk"], "task": row["task"], "program": row["program"]}
                builder.add(where, row.get("mentions") or {})
                if row.get("mentions"):
                    texts[str(item.doc.id)] = item.doc.text
    return builder.build(), texts
