"""Answer shapes: what a task's answer looks like, one class per shape. Pure: no I/O.

A ``TaskSpec`` names its shape (``spec.shape``); everything that depends on it lives in the
shape's class, not in branches elsewhere:

- ``parse``: a decoded answer object -> unified labels, validated against the schema chunk
  (model output is untrusted: nothing raises, what is dropped is recorded with why);
- ``official``: a decoded answer object -> the tuples IEPile's evaluator compares, with its
  exact semantics (a non-list value or an item of the wrong type is skipped);
- ``properties``: the JSON-schema properties one chunk item contributes to the answer schema
  for constrained decoding;
- ``normalise_top``: near-misses of the top-level shape accepted in lenient mode;
- ``mentions``: a call's labels -> graph mentions (typed triples and bare entities, with
  their spans in the document), for the shapes that can build a graph from raw text;
- the encoding, the inverse of ``parse``: ``schema_items`` (what one instruction's "schema"
  field lists), ``item_label`` (the name an item answers under), ``gold_answer`` (a gold record
  -> the answer OneKE was trained to give for a chunk, for demonstrations) and ``gold_tuples``
  (gold unified labels -> the tuples the scorer compares, IEPile's ``eval_func``);
- ``record``: the gold label items of the unified record format the shape's labels are in
  (``RecordItems``: their spans, schema labels and JSON schema, for augmentation's samples).

Adding a shape is one subclass registered in ``SHAPES``.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

from kgopt.core.schema import Record, Schema

NAN = "NAN"  # OneKE's "no value" for an argument


# --- values in model answers ---------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def clean_str(value: Any) -> str | None:
    """A usable span string, or None (NAN, empty, or not a scalar)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str) or value == NAN or not value.strip():
        return None
    return value


class Collector:
    """Labels read from one answer, and what was dropped (and why)."""

    def __init__(self) -> None:
        self.labels: list[dict[str, Any]] = []
        self.problems: list[str] = []

    def drop(self, why: str) -> None:
        if len(self.problems) < 50:  # a runaway output must not make a runaway report
            self.problems.append(why)


def keyed_strings(obj: dict, allowed: set, col: Collector, what: str, report_non_strings: bool = True) -> Iterator[tuple[str, str]]:
    """``(key, string)`` for each string value of ``obj`` under an allowed key; a key not
    allowed is dropped with its reason (``what``: how the reason names it)."""
    for key, values in obj.items():
        if key not in allowed:
            col.drop(f"{what} not in schema: {key!r}")
            continue
        for v in as_list(values):
            s = clean_str(v)
            if s is None:
                if report_non_strings and v != NAN and v != "":
                    col.drop(f"{key}: not a string: {str(v)[:40]!r}")
                continue
            yield key, s


def json_key(x: Any) -> Any:
    """Hashable stand-in for a decoded JSON value (non-strings never equal gold strings)."""
    try:
        hash(x)
        return x
    except TypeError:
        return ("\x00unhashable", json.dumps(x, sort_keys=True, ensure_ascii=False, default=str))


def official_items(obj: dict, kind: type) -> list[tuple[str, Any]]:
    """``(label, item)`` for every item of type ``kind`` in the object's list values (as upstream:
    a value that is not a list, or an item of the wrong type, is skipped)."""
    return [(key, v) for key, values in obj.items() if isinstance(values, list) for v in values if isinstance(v, kind)]


def _official_arguments(arguments: dict) -> tuple:
    args = []
    for role, value in arguments.items():
        for v in value if isinstance(value, list) else [value]:
            if v != NAN:
                args.append((json_key(v), role))
    return tuple(args)


# --- JSON schema pieces ----------------------------------------------------------------------


def json_string(max_len: int | None) -> dict[str, Any]:
    return {"type": "string", **({"maxLength": max_len} if max_len else {})}


def json_array(items: dict[str, Any], max_items: int | None) -> dict[str, Any]:
    return {"type": "array", "items": items, **({"maxItems": max_items} if max_items else {})}


def json_enum(values) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def json_object(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


# --- gold label items of the unified record format -------------------------------------------


class RecordItems:
    """One kind of gold label item (``record[key]`` is a list of them): what augmentation asks
    the model to write, and checks in what it wrote."""

    key: str  # the record's list key: "entity", "relation" or "event"
    label_field: str  # the field that names the item's schema label
    fields: tuple[str, ...]  # the fields every item has
    example: str  # the item format, shown in prompts

    def problem(self, item: dict[str, Any]) -> str | None:
        """What is wrong with an item whose fields are all there (nested parts), or None."""
        return None

    def spans(self, item: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    def labels_ok(self, item: dict[str, Any], schema: Any) -> bool:
        raise NotImplementedError

    def schema_labels(self, schema: Any) -> list[str]:
        """The labels a schema offers for these items (augmentation asks for them one by one)."""
        return list(schema.types)

    def well_formed(self, item: dict[str, Any]) -> bool:
        return all(isinstance(s, str) for s in self.spans(item))

    def item_schema(self, s: dict[str, Any], schema: Any) -> dict[str, Any]:
        """The JSON-schema properties of one item: spans are strings ``s``, labels are limited
        to the schema's (constrained decoding then cannot write a label the schema lacks)."""
        raise NotImplementedError


class EntityItems(RecordItems):
    key, label_field = "entity", "entity_type"
    fields = ("entity", "entity_type")
    example = '{"text": "...", "entity": [{"entity": "...", "entity_type": "..."}]}'

    def spans(self, item):
        return [item["entity"]]

    def labels_ok(self, item, schema):
        return item["entity_type"] in schema.types

    def item_schema(self, s, schema):
        return {"entity": s, "entity_type": json_enum(schema.types)}


class RelationItems(RecordItems):
    key, label_field = "relation", "relation"
    fields = ("head", "relation", "tail")
    example = '{"text": "...", "relation": [{"head": "...", "relation": "...", "tail": "..."}]}'

    def spans(self, item):
        return [item["head"], item["tail"]]

    def labels_ok(self, item, schema):
        return item["relation"] in schema.roles

    def schema_labels(self, schema):
        return list(schema.roles)

    def item_schema(self, s, schema):
        return {"head": s, "relation": json_enum(schema.roles), "tail": s}


class TypedRelationItems(RelationItems):
    """InstructIE's relations carry the head and tail types."""

    example = '{"text": "...", "relation": [{"head": "...", "head_type": "...", "relation": "...", "tail": "...", "tail_type": "..."}]}'

    def well_formed(self, item):
        return super().well_formed(item) and all(isinstance(item.get(k), str) for k in ("head_type", "tail_type"))

    def item_schema(self, s, schema):
        return {"head": s, "head_type": s, "relation": json_enum(schema.roles), "tail": s, "tail_type": s}


class EventItems(RecordItems):
    key, label_field = "event", "event_type"
    fields = ("event_type", "event_trigger", "arguments")
    example = '{"text": "...", "event": [{"event_trigger": "...", "event_type": "...", "arguments": [{"argument": "...", "role": "..."}]}]}'

    def problem(self, item):
        args = item["arguments"]
        if not isinstance(args, list) or not all(isinstance(a, dict) and "argument" in a and "role" in a for a in args):
            return "arguments must be a list of {argument, role}"
        return None

    def spans(self, item):
        return [item["event_trigger"]] + [a["argument"] for a in item["arguments"]]

    def labels_ok(self, item, schema):
        roles = schema.type_roles.get(item["event_type"])
        return item["event_type"] in schema.types and roles is not None and all(a["role"] in roles for a in item["arguments"])

    def item_schema(self, s, schema):
        roles = sorted({r for rs in schema.type_roles.values() for r in rs})  # which roles go with which type is checked after
        arg = {"type": "object", "properties": {"argument": s, "role": json_enum(roles) if roles else s}, "required": ["argument", "role"]}
        return {"event_trigger": s, "event_type": json_enum(schema.types), "arguments": {"type": "array", "items": arg, "maxItems": 4}}


# The record list keys a unified record may carry, and their items (readers check gold with them).
RECORD_ITEMS: dict[str, RecordItems] = {items.key: items for items in (EntityItems(), RelationItems(), EventItems())}


# --- graph mentions ---------------------------------------------------------------------------

Span = Callable[[str], "list[int] | None"]  # where a string is in the document, or None


def _triple(head: str, head_type: str, relation: str, tail: str, tail_type: str, span: Span) -> dict[str, Any]:
    return {"head": head, "head_type": head_type, "relation": relation, "tail": tail, "tail_type": tail_type,
            "head_span": span(head), "tail_span": span(tail)}


def _triple_mentions(labels: list[dict[str, Any]], span: Span) -> dict[str, list[dict[str, Any]]]:
    triples = []
    for it in labels:
        h, t = it.get("head", ""), it.get("tail", "")
        if h and t:
            triples.append(_triple(h, it.get("head_type", "") or "", it.get("relation", ""), t, it.get("tail_type", "") or "", span))
    return {"triples": triples, "entities": []}


def _event_mentions(labels: list[dict[str, Any]], span: Span) -> dict[str, list[dict[str, Any]]]:
    """A trigger is a node typed by its event type, with an edge per argument role."""
    triples, entities = [], []
    for it in labels:
        trig, etype = it.get("event_trigger", ""), it.get("event_type", "")
        if not trig:
            continue
        args = it.get("arguments") or []
        if not args:
            entities.append({"name": trig, "type": etype, "span": span(trig)})
        for a in args:
            if a.get("argument", ""):
                triples.append(_triple(trig, etype, a.get("role", ""), a["argument"], "", span))
    return {"triples": triples, "entities": entities}


# --- the shapes ------------------------------------------------------------------------------


# --- encoding helpers: the schema and gold records in OneKE's answer format ------------------


def _uniq(seq):
    seen, out = set(), []
    for x in seq:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _args_dict(roles: list[str], arguments: list[dict[str, Any]]) -> dict[str, Any]:
    values: dict[str, list[str]] = {r: [] for r in roles}
    for arg in arguments:
        values.setdefault(arg["role"], []).append(arg["argument"])
    return {r: (NAN if not v else v[0] if len(v) == 1 else v) for r, v in values.items()}


def _by_label(chunk: list[Any], labels: list[dict[str, Any]], key: str, value: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """``{label: [value(item) for each gold item labelled so]}`` for every label of the chunk."""
    out: dict[str, Any] = {label: [] for label in chunk}
    for item in labels:
        if item.get(key) in out:
            out[item[key]].append(value(item))
    return out


def _gold_triples(labels):
    return [(it.get("head", ""), it.get("relation", ""), it.get("tail", "")) for it in labels]


class AnswerShape:
    name: str
    record: RecordItems  # the gold label items its labels are
    builds_graph = True  # its labels make graph mentions from raw text

    def schema_items(self, schema: Schema, record: Record | None) -> list[Any]:
        return list(schema.types)

    def item_label(self, item: Any) -> str:
        return item

    def gold_answer(self, record: Record, chunk: list[Any]) -> dict[str, Any]:
        raise NotImplementedError

    def gold_tuples(self, labels: list[dict[str, Any]]) -> list[tuple]:
        raise NotImplementedError

    def normalise_top(self, obj: Any) -> Any:
        """Lenient mode: a list holding one object is that object."""
        if isinstance(obj, list) and len(obj) == 1 and isinstance(obj[0], dict):
            return obj[0]
        return obj

    def parse(self, obj: dict, chunk: list[Any], col: Collector) -> None:
        raise NotImplementedError

    def official(self, obj: dict) -> list[tuple]:
        raise NotImplementedError

    def properties(self, item: Any, label: Callable[[Any], str], s: dict[str, Any], max_items: int | None) -> dict[str, Any]:
        """JSON-schema properties for one chunk item (``label(item)`` is its key in the answer)."""
        raise NotImplementedError

    def mentions(self, labels: list[dict[str, Any]], span: Span) -> dict[str, list[dict[str, Any]]]:
        raise NotImplementedError


class Entities(AnswerShape):
    """NER: ``{type: [entity, ...]}``."""

    name, item_key, type_key = "entities", "entity", "entity_type"
    record = EntityItems()

    def gold_answer(self, record, chunk):
        return _by_label(chunk, record.labels, "entity_type", lambda ent: ent["entity"])

    def gold_tuples(self, labels):
        return [(it["entity"], it["entity_type"]) for it in labels]

    def parse(self, obj, chunk, col):
        for label, s in keyed_strings(obj, set(chunk), col, "label"):
            col.labels.append(self.label(s, label))

    def label(self, span: str, label: str) -> dict[str, Any]:
        return {self.item_key: span, self.type_key: label}

    def official(self, obj):
        return [(v, key) for key, v in official_items(obj, str)]

    def properties(self, item, label, s, max_items):
        return {label(item): json_array(s, max_items)}

    def mentions(self, labels, span):
        entities = [{"name": it["entity"], "type": it.get("entity_type", ""), "span": span(it["entity"])} for it in labels if it.get("entity")]
        return {"triples": [], "entities": entities}


class Triggers(Entities):
    """EET: ``{event type: [trigger, ...]}``; labels are events without arguments."""

    name, item_key, type_key = "triggers", "event_trigger", "event_type"
    record = EventItems()

    def gold_answer(self, record, chunk):
        return _by_label(chunk, record.labels, "event_type", lambda ev: ev["event_trigger"])

    def gold_tuples(self, labels):
        return [(it["event_trigger"], it["event_type"]) for it in labels]

    def label(self, span, label):
        return {**super().label(span, label), "arguments": []}

    def mentions(self, labels, span):
        return _event_mentions(labels, span)


def _pair(v: Any) -> tuple[Any, Any, dict]:
    if isinstance(v, dict):
        return v.get("subject", v.get("head")), v.get("object", v.get("tail")), v
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return v[0], v[1], {}
    return None, None, {}


class Triples(AnswerShape):
    """RE: ``{relation: [{"subject", "object"}, ...]}`` (``head``/``tail`` and pairs accepted)."""

    name = "triples"
    record = RelationItems()

    def schema_items(self, schema, record):
        return list(schema.roles)

    def gold_answer(self, record, chunk):
        return _by_label(chunk, record.labels, "relation", lambda rel: {"subject": rel["head"], "object": rel["tail"]})

    def gold_tuples(self, labels):
        return _gold_triples(labels)

    def relations(self, chunk: list[Any]) -> set[str]:
        return set(chunk)

    def item(self, head: str, rel: str, tail: str, extra: dict) -> dict[str, Any]:
        return {"head": head, "relation": rel, "tail": tail}

    def normalise_top(self, obj):
        if isinstance(obj, list):
            # InstructIE style: [{"head","relation","tail",...}] -> {relation: [...]}
            grouped: dict[str, list] = {}
            for it in obj:
                if isinstance(it, dict) and isinstance(it.get("relation"), str):
                    grouped.setdefault(it["relation"], []).append(it)
            return grouped if grouped else obj
        return obj

    def parse(self, obj, chunk, col):
        allowed = self.relations(chunk)
        for rel, values in obj.items():
            if rel not in allowed:
                col.drop(f"relation not in schema: {rel!r}")
                continue
            for v in as_list(values):
                h, t, extra = _pair(v)
                h, t = clean_str(h), clean_str(t)
                if h is None or t is None:
                    col.drop(f"{rel}: incomplete triple {str(v)[:60]!r}")
                    continue
                col.labels.append(self.item(h, rel, t, extra))

    def official(self, obj):
        out = []
        for key, it in official_items(obj, dict):
            head = it.get("subject", it.get("head", ""))
            tail = it.get("object", it.get("tail", ""))
            if isinstance(head, str) and isinstance(tail, str):
                out.append((head, key, tail))
        return out

    def properties(self, item, label, s, max_items):
        return {item: json_array(json_object({"subject": s, "object": s}), max_items)}

    def mentions(self, labels, span):
        return _triple_mentions(labels, span)


class TypedTriples(Triples):
    """KG (kgopt's format): ``{relation: [{"head", "head_type", "tail", "tail_type"}]}``."""

    name = "typed_triples"
    record = TypedRelationItems()

    def schema_items(self, schema, record):
        topic = schema.types[0] if schema.types else ""
        return [{"topic": topic, "relations": list(schema.roles)}]

    def item_label(self, item):
        return item["topic"]

    def gold_answer(self, record, chunk):
        typed = lambda t: {"head": t["head"], "head_type": t.get("head_type", ""), "tail": t["tail"], "tail_type": t.get("tail_type", "")}  # noqa: E731
        return _by_label([r for it in chunk for r in it["relations"]], record.labels, "relation", typed)

    def relations(self, chunk):
        return {r for it in chunk for r in it["relations"]}

    def item(self, head, rel, tail, extra):
        return {
            "head": head,
            "head_type": clean_str(extra.get("head_type", extra.get("subject_type"))) or "",
            "relation": rel,
            "tail": tail,
            "tail_type": clean_str(extra.get("tail_type", extra.get("object_type"))) or "",
        }

    def properties(self, item, label, s, max_items):
        triple = json_object({"head": s, "head_type": s, "tail": s, "tail_type": s})
        return {rel: json_array(triple, max_items) for rel in item["relations"]}


def _arguments(args: Any, roles: set[str], label: str, col: Collector) -> list[dict[str, str]]:
    out = []
    if not isinstance(args, dict):
        if args not in (None, NAN, "", [], {}):
            col.drop(f"{label}: arguments are not an object")
        return out
    for role, s in keyed_strings(args, roles, col, f"{label}: role", report_non_strings=False):
        out.append({"argument": s, "role": role})
    return out


class Events(AnswerShape):
    """EE: ``{event type: [{"trigger", "arguments": {role: value | [values] | "NAN"}}]}``."""

    name = "events"
    record = EventItems()

    def schema_items(self, schema, record):
        return [{"event_type": t, "trigger": True, "arguments": list(schema.type_roles.get(t, ()))} for t in schema.types]

    def item_label(self, item):
        return item["event_type"]

    def gold_answer(self, record, chunk):
        roles = {it["event_type"]: it["arguments"] for it in chunk}
        out: dict[str, Any] = {t: [] for t in roles}
        for ev in record.labels:
            t = ev.get("event_type")
            if t in out:
                out[t].append(self.gold_event(ev, roles[t]))
        return out

    def gold_event(self, ev: dict[str, Any], roles: list[str]) -> Any:
        return {"trigger": ev["event_trigger"], "arguments": _args_dict(roles, ev.get("arguments", []))}

    def gold_tuples(self, labels):
        return [(it["event_type"], it["event_trigger"], tuple((a["argument"], a["role"]) for a in it["arguments"])) for it in labels]

    def parse(self, obj, chunk, col):
        roles = {it["event_type"]: set(it["arguments"]) for it in chunk}
        triggers = {it["event_type"]: it.get("trigger") for it in chunk}
        for etype, values in obj.items():
            if etype not in roles:
                col.drop(f"event type not in schema: {etype!r}")
                continue
            for v in as_list(values):
                if not isinstance(v, dict):
                    if v not in (NAN, "", None):
                        col.drop(f"{etype}: event is not an object")
                    continue
                event = self.event(etype, v, roles[etype], triggers.get(etype), col)
                if event is not None:
                    col.labels.append(event)

    def event(self, etype: str, v: dict, roles: set[str], given: Any, col: Collector) -> dict[str, Any] | None:
        trig = clean_str(v.get("trigger"))
        if trig is None:
            col.drop(f"{etype}: event without a trigger")
            return None
        return {"event_trigger": trig, "event_type": etype, "arguments": _arguments(v.get("arguments", {}), roles, etype, col)}

    def official(self, obj):
        out = []
        for key, v in official_items(obj, dict):
            trigger = v.get("trigger", "")
            if not isinstance(trigger, str):
                continue
            arguments = v.get("arguments", {})
            out.append((key, trigger, _official_arguments(arguments) if isinstance(arguments, dict) else ()))
        return out

    def properties(self, item, label, s, max_items):
        # One string per role ("NAN" when absent). IEPile also allows a list for a multi-valued
        # role, but an anyOf makes llama-cpp-python's grammar sampler crawl (measured: calls
        # timing out at 120 s that take ~10 s unconstrained); plain mode keeps lists.
        args = json_object({r: s for r in item["arguments"]})
        return {item["event_type"]: json_array(json_object({"trigger": s, "arguments": args}), max_items)}

    def mentions(self, labels, span):
        return _event_mentions(labels, span)


class Arguments(Events):
    """EEA: ``{event type: [{role: value | [values] | "NAN"}]}``; the trigger was given in the schema."""

    name = "arguments"
    builds_graph = False  # EEA needs the triggers given: not for raw text

    def schema_items(self, schema, record):
        # EEA is given the triggers: only the record's own event types, as IEPile builds it.
        if record is None:
            raise ValueError("EEA needs the record's gold events (their triggers are part of the schema)")
        triggers: dict[str, list[str]] = {}
        for ev in record.labels:
            triggers.setdefault(ev.get("event_type", ""), []).append(ev.get("event_trigger", ""))
        return [{"event_type": t, "trigger": _uniq(trs), "arguments": list(schema.type_roles.get(t, ()))} for t, trs in triggers.items()]

    def gold_event(self, ev, roles):
        return _args_dict(roles, ev.get("arguments", []))

    def gold_tuples(self, labels):
        return [(it["event_type"], "", tuple((a["argument"], a["role"]) for a in it["arguments"])) for it in labels]

    def event(self, etype, v, roles, given, col):
        trig = given[0] if isinstance(given, list) and len(given) == 1 else ""
        return {"event_trigger": trig, "event_type": etype, "arguments": _arguments(v, roles, etype, col)}

    def official(self, obj):
        return [(key, "", _official_arguments(v)) for key, v in official_items(obj, dict)]

    def properties(self, item, label, s, max_items):
        return {item["event_type"]: json_array(json_object({r: s for r in item["arguments"]}), max_items)}


class EntityAttributes(AnswerShape):
    """KG (OneKE's format): ``{entity_type: {head: {attribute: tail or [tails]}}}`` -> typed-head triples."""

    name = "entity_attributes"
    record = TypedRelationItems()

    def schema_items(self, schema, record):
        # OneKE: the InstructIE topic is the entity type, its relations the attributes.
        topic = schema.types[0] if schema.types else ""
        return [{"entity_type": topic, "attributes": list(schema.roles)}]

    def item_label(self, item):
        return item["entity_type"]

    def gold_answer(self, record, chunk):
        """OneKE's KG answer, as IEPile's ``KGConverter`` writes it: entity type -> head -> attribute
        -> tail (a string, or a list when several), heads and tails in order of first position."""
        text = record.text
        by_head: dict[str, dict[str, list[str]]] = {}
        for t in record.labels:
            by_head.setdefault(t["head"], {}).setdefault(t["relation"], []).append(t["tail"])
        heads = sorted(by_head.items(), key=lambda kv: text.find(kv[0]))
        out: dict[str, Any] = {}
        for it in chunk:
            per_head: dict[str, Any] = {}
            for head, rels in heads:
                attrs: dict[str, Any] = {}
                for attr in it["attributes"]:
                    if attr in rels:
                        tails = [t for _, t in sorted(((text.find(t), t) for t in rels[attr]), key=lambda x: x[0])]
                        attrs[attr] = tails[0] if len(tails) == 1 else tails
                per_head[head] = attrs
            out[it["entity_type"]] = per_head
        return out

    def gold_tuples(self, labels):
        return _gold_triples(labels)

    def parse(self, obj, chunk, col):
        attributes = {it["entity_type"]: set(it["attributes"]) for it in chunk}
        for etype, heads in obj.items():
            if etype not in attributes:
                col.drop(f"entity type not in schema: {etype!r}")
                continue
            if not isinstance(heads, dict):
                if heads not in (NAN, "", None, [], {}):
                    col.drop(f"{etype}: entities are not an object")
                continue
            for head, attrs in heads.items():
                h = clean_str(head)
                if h is None or not isinstance(attrs, dict):
                    if attrs not in (NAN, "", None, [], {}):
                        col.drop(f"{etype}: {str(head)[:40]!r} has no attribute object")
                    continue
                for attr, tails in attrs.items():
                    if attr not in attributes[etype]:
                        col.drop(f"{etype}: attribute not in schema: {attr!r}")
                        continue
                    for v in as_list(tails):
                        t = clean_str(v)
                        if t is not None:
                            col.labels.append({"head": h, "head_type": etype, "relation": attr, "tail": t, "tail_type": ""})

    def official(self, obj):
        out = []
        for heads in obj.values():
            if not isinstance(heads, dict):
                continue
            for head, attrs in heads.items():
                if not isinstance(attrs, dict):
                    continue
                for attr, tails in attrs.items():
                    out.extend((head, attr, t) for t in (tails if isinstance(tails, list) else [tails]) if isinstance(t, str))
        return out

    def properties(self, item, label, s, max_items):
        # Heads are the model's own keys; attributes are optional (absent ones are not output).
        # Always a list of values (OneKE writes one value as a string): an anyOf of the two would
        # slow the grammar sampler, and multi-valued attributes are common in InstructIE.
        attrs = {"type": "object", "properties": {a: json_array(s, None) for a in item["attributes"]}, "additionalProperties": False}
        return {item["entity_type"]: {"type": "object", "additionalProperties": attrs, **({"maxProperties": max_items} if max_items else {})}}

    def mentions(self, labels, span):
        return _triple_mentions(labels, span)


SHAPES: dict[str, AnswerShape] = {
    shape.name: shape for shape in (Entities(), Triggers(), Triples(), TypedTriples(), Events(), Arguments(), EntityAttributes())
}


def shape_named(name: str) -> AnswerShape:
    try:
        return SHAPES[name]
    except KeyError:
        raise ValueError(f"no answer shape {name!r}; known: {', '.join(SHAPES)}") from None
