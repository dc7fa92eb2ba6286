"""The task registry: every IE task is data (a ``TaskSpec``), not a class of its own.

A spec says how a task's schema is shown to the model (the chunk items of IEPile's
instruction JSON), how a gold record becomes the JSON answer OneKE was trained to give,
and which answer shape the parser and scorer expect. The instruction templates are
IEPile's (``ie2instruction/convert/utils/instruction.py``); KG's follows the same style
for InstructIE's typed triples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from kgopt.core.schema import Record, Schema, split_round_robin
from kgopt.errors import UnknownTaskError

LANGS = ("zh", "en")
NAN = "NAN"

TEMPLATES: dict[str, dict[str, str]] = {
    "NER": {
        "zh": "你是专门进行实体抽取的专家。请从input中抽取出符合schema定义的实体，不存在的实体类型返回空列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in named entity recognition. Please extract entities that match the schema definition from the input. Return an empty list if the entity type does not exist. Please respond in the format of a JSON string.",
    },
    "RE": {
        "zh": "你是专门进行关系抽取的专家。请从input中抽取出符合schema定义的关系三元组，不存在的关系返回空列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in relationship extraction. Please extract relationship triples that match the schema definition from the input. Return an empty list for relationships that do not exist. Please respond in the format of a JSON string.",
    },
    "EE": {
        "zh": "你是专门进行事件提取的专家。请从input中抽取出符合schema定义的事件，不存在的事件返回空列表，不存在的论元返回NAN，如果论元存在多值请返回列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in event extraction. Please extract events from the input that conform to the schema definition. Return an empty list for events that do not exist, and return NAN for arguments that do not exist. If an argument has multiple values, please return a list. Respond in the format of a JSON string.",
    },
    "EET": {
        "zh": "你是专门进行事件提取的专家。请从input中抽取出符合schema定义的事件类型及事件触发词，不存在的事件返回空列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in event extraction. Please extract event types and event trigger words from the input that conform to the schema definition. Return an empty list for non-existent events. Please respond in the format of a JSON string.",
    },
    "EEA": {
        "zh": "你是专门进行事件论元提取的专家。请从input中抽取出符合schema定义的事件论元及论元角色，不存在的论元返回NAN或空字典，如果论元存在多值请返回列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in event argument extraction. Please extract event arguments and their roles from the input that conform to the schema definition, which already includes event trigger words. If an argument does not exist, return NAN or an empty dictionary. Please respond in the format of a JSON string.",
    },
    # OneKE's own KG instruction (IEPile ``convert/utils/instruction.py``, KGzh / KGen).
    "KG": {
        "zh": "你是一个图谱实体知识结构化专家。根据输入实体类型(entity type)的schema描述，从文本中抽取出相应的实体实例和其属性信息，不存在的属性不输出, 属性存在多值就返回列表，并输出为可解析的json格式。",
        "en": "You are an expert in structured knowledge systems for graph entities. Based on the schema description of the input entity type, you extract the corresponding entity instances and their attribute information from the text. Attributes that do not exist should not be output. If an attribute has multiple values, a list should be returned. The results should be output in a parsable JSON format.",
    },
    # kgopt's typed-triple KG format: the same style, with head and tail types for the graph.
    "KG_typed": {
        "zh": "你是专门进行知识图谱构建的专家。请从input中抽取出符合schema定义的关系三元组，并给出头实体和尾实体的类型，不存在的关系返回空列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in knowledge graph construction. Please extract relationship triples that match the schema definition from the input, together with the types of the head and tail entities. Return an empty list for relationships that do not exist. Please respond in the format of a JSON string.",
    },
}


def _uniq(seq):
    seen, out = set(), []
    for x in seq:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


# --- schema items: what one instruction's "schema" field lists -------------------------


def _items_types(schema: Schema, record: Record | None) -> list[Any]:
    return list(schema.types)


def _items_roles(schema: Schema, record: Record | None) -> list[Any]:
    return list(schema.roles)


def _items_ee(schema: Schema, record: Record | None) -> list[Any]:
    return [
        {"event_type": t, "trigger": True, "arguments": list(schema.type_roles.get(t, ()))} for t in schema.types
    ]


def _items_eea(schema: Schema, record: Record | None) -> list[Any]:
    # EEA is given the triggers: only the record's own event types, as IEPile builds it.
    if record is None:
        raise ValueError("EEA needs the record's gold events (their triggers are part of the schema)")
    triggers: dict[str, list[str]] = {}
    for ev in record.labels:
        triggers.setdefault(ev.get("event_type", ""), []).append(ev.get("event_trigger", ""))
    return [
        {"event_type": t, "trigger": _uniq(trs), "arguments": list(schema.type_roles.get(t, ()))}
        for t, trs in triggers.items()
    ]


def _items_kg(schema: Schema, record: Record | None) -> list[Any]:
    # OneKE: the InstructIE topic is the entity type, its relations the attributes.
    topic = schema.types[0] if schema.types else ""
    return [{"entity_type": topic, "attributes": list(schema.roles)}]


def _items_kg_typed(schema: Schema, record: Record | None) -> list[Any]:
    topic = schema.types[0] if schema.types else ""
    return [{"topic": topic, "relations": list(schema.roles)}]


# --- item label: the name an item answers under -----------------------------------------


def _label_str(item: Any) -> str:
    return item


def _label_event(item: Any) -> str:
    return item["event_type"]


def _label_entity_type(item: Any) -> str:
    return item["entity_type"]


# --- gold record -> OneKE answer for a chunk (used for demonstrations) -----------------


def _answer_ner(record: Record, chunk: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {t: [] for t in chunk}
    for ent in record.labels:
        if ent.get("entity_type") in out:
            out[ent["entity_type"]].append(ent["entity"])
    return out


def _answer_re(record: Record, chunk: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {r: [] for r in chunk}
    for rel in record.labels:
        if rel.get("relation") in out:
            out[rel["relation"]].append({"subject": rel["head"], "object": rel["tail"]})
    return out


def _args_dict(roles: list[str], arguments: list[dict[str, Any]]) -> dict[str, Any]:
    values: dict[str, list[str]] = {r: [] for r in roles}
    for arg in arguments:
        values.setdefault(arg["role"], []).append(arg["argument"])
    return {r: (NAN if not v else v[0] if len(v) == 1 else v) for r, v in values.items()}


def _answer_ee(record: Record, chunk: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {it["event_type"]: [] for it in chunk}
    roles = {it["event_type"]: it["arguments"] for it in chunk}
    for ev in record.labels:
        t = ev.get("event_type")
        if t in out:
            out[t].append({"trigger": ev["event_trigger"], "arguments": _args_dict(roles[t], ev.get("arguments", []))})
    return out


def _answer_eet(record: Record, chunk: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {t: [] for t in chunk}
    for ev in record.labels:
        if ev.get("event_type") in out:
            out[ev["event_type"]].append(ev["event_trigger"])
    return out


def _answer_eea(record: Record, chunk: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {it["event_type"]: [] for it in chunk}
    roles = {it["event_type"]: it["arguments"] for it in chunk}
    for ev in record.labels:
        t = ev.get("event_type")
        if t in out:
            out[t].append(_args_dict(roles[t], ev.get("arguments", [])))
    return out


def _answer_kg(record: Record, chunk: list[Any]) -> dict[str, Any]:
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


def _answer_kg_typed(record: Record, chunk: list[Any]) -> dict[str, Any]:
    relations = [r for it in chunk for r in it["relations"]]
    out: dict[str, Any] = {r: [] for r in relations}
    for t in record.labels:
        if t.get("relation") in out:
            out[t["relation"]].append(
                {"head": t["head"], "head_type": t.get("head_type", ""), "tail": t["tail"], "tail_type": t.get("tail_type", "")}
            )
    return out


# --- gold unified labels -> scoring tuples (IEPile eval_func.convert_kg) ----------------


def _gold_ner(labels):
    return [(it["entity"], it["entity_type"]) for it in labels]


def _gold_triples(labels):
    return [(it.get("head", ""), it.get("relation", ""), it.get("tail", "")) for it in labels]


def _gold_events(labels):
    return [
        (it["event_type"], it["event_trigger"], tuple((a["argument"], a["role"]) for a in it["arguments"]))
        for it in labels
    ]


def _gold_eea(labels):
    return [(it["event_type"], "", tuple((a["argument"], a["role"]) for a in it["arguments"])) for it in labels]


def _gold_eet(labels):
    return [(it["event_trigger"], it["event_type"]) for it in labels]


@dataclass(frozen=True)
class TaskSpec:
    """Everything kgopt needs to know about one IE task."""

    name: str
    dataset: str  # "iepile" or "instructie"
    label_key: str  # key of the gold list in unified/InstructIE records
    split_size: int  # OneKE's default number of schema items per instruction
    shape: str  # answer shape: entities | triples | events | triggers | arguments | typed_triples
    templates: dict[str, str]
    schema_items: Callable[[Schema, Record | None], list[Any]]
    item_label: Callable[[Any], str]
    gold_answer: Callable[[Record, list[Any]], dict[str, Any]]
    gold_tuples: Callable[[list[dict[str, Any]]], list[tuple]]
    two_level: bool = False  # EE/EEA are scored on events and arguments
    answer_format: str = "oneke"  # a task may have other formats (ANSWER_FORMATS); one per program
    item_keys: tuple[str, ...] = ()  # the keys of a dict schema item, which tell its format apart
    given_triggers: bool = False  # EEA: asked with the record's own triggers (a record without events asks nothing)

    @property
    def asks_topics(self) -> bool:
        """InstructIE tasks ask one topic per call, from the topic's schema (the record's ``cate``)."""
        return self.dataset == "instructie"

    @property
    def reports_ccks(self) -> bool:
        """CCKS2023 is InstructIE's benchmark score, reported next to triple F1."""
        return self.dataset == "instructie"

    def template(self, lang: str) -> str:
        check_lang(lang)
        return self.templates[lang]

    def chunks(self, schema: Schema, record: Record | None = None, split_size: int | None = None) -> list[list[Any]]:
        """The schema round-robin: the record's schema split into instruction-sized chunks."""
        items = self.schema_items(schema, record)
        return split_round_robin(items, split_size or self.split_size)

    def instruction(self, lang: str, chunk: list[Any], text: str, template: str | None = None) -> dict[str, Any]:
        """The OneKE instruction object ``{"instruction", "schema", "input"}``."""
        return {"instruction": template or self.template(lang), "schema": chunk, "input": text}


TASKS: dict[str, TaskSpec] = {
    "NER": TaskSpec("NER", "iepile", "entity", 6, "entities", TEMPLATES["NER"], _items_types, _label_str, _answer_ner, _gold_ner),
    "RE": TaskSpec("RE", "iepile", "relation", 4, "triples", TEMPLATES["RE"], _items_roles, _label_str, _answer_re, _gold_triples),
    "EE": TaskSpec("EE", "iepile", "event", 4, "events", TEMPLATES["EE"], _items_ee, _label_event, _answer_ee, _gold_events, two_level=True),
    "EET": TaskSpec("EET", "iepile", "event", 4, "triggers", TEMPLATES["EET"], _items_types, _label_str, _answer_eet, _gold_eet),
    "EEA": TaskSpec("EEA", "iepile", "event", 4, "arguments", TEMPLATES["EEA"], _items_eea, _label_event, _answer_eea, _gold_eea, two_level=True,
                    given_triggers=True),
    # KG: one InstructIE topic per call, however many relations it has.
    "KG": TaskSpec("KG", "instructie", "relation", 1, "entity_attributes", TEMPLATES["KG"], _items_kg, _label_entity_type, _answer_kg,
                   _gold_triples, item_keys=("entity_type", "attributes")),
}

# Other answer formats a program may choose instead of its task's OneKE one (the compiler
# searches them). KG's typed triples carry head and tail types for the graph.
ANSWER_FORMATS: dict[str, dict[str, TaskSpec]] = {name: {"oneke": spec} for name, spec in TASKS.items()}
ANSWER_FORMATS["KG"]["typed_triples"] = TaskSpec(
    "KG", "instructie", "relation", 1, "typed_triples", TEMPLATES["KG_typed"], _items_kg_typed, lambda it: it["topic"], _answer_kg_typed,
    _gold_triples, answer_format="typed_triples", item_keys=("topic", "relations"),
)  # fmt: skip

# Where each IEPile task's unified files live: EET and EEA are built from the EE folders.
TASK_FOLDER = {"NER": "NER", "RE": "RE", "EE": "EE", "EET": "EE", "EEA": "EE", "KG": "KG"}


def get_task(name: str, answer_format: str | None = None) -> TaskSpec:
    """A task's spec, in its OneKE answer format unless another of its formats is named."""
    try:
        spec = TASKS[name.upper()]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None
    if answer_format in (None, spec.answer_format):
        return spec
    try:
        return ANSWER_FORMATS[spec.name][answer_format]
    except KeyError:
        raise UnknownTaskError(f"{spec.name} has no answer format {answer_format!r}; choose one of {', '.join(ANSWER_FORMATS[spec.name])}") from None


def answer_formats(name: str) -> tuple[str, ...]:
    return tuple(ANSWER_FORMATS[get_task(name).name])


def spec_for_chunk(spec: TaskSpec, chunk: list[Any]) -> TaskSpec:
    """The format of ``spec``'s task that asked ``chunk`` (told by its items' keys); ``spec`` if unsure."""
    first = chunk[0] if chunk else None
    if not isinstance(first, dict):
        return spec
    for variant in ANSWER_FORMATS[spec.name].values():
        if variant.item_keys and set(variant.item_keys) <= set(first):
            return variant
    return spec


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise UnknownTaskError(f"unknown language {lang!r}; choose zh or en")
    return lang
