"""The task registry: every IE task is data (a ``TaskSpec``), not a class of its own.

A spec names its answer shape (``kgopt.core.shapes``), which says how a task's schema is
shown to the model (the chunk items of IEPile's instruction JSON), how a gold record becomes
the JSON answer OneKE was trained to give, and how answers are parsed and scored. The instruction templates are
IEPile's (``ie2instruction/convert/utils/instruction.py``); KG's follows the same style
for InstructIE's typed triples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kgopt.core.schema import Record, Schema, split_round_robin
from kgopt.core.shapes import NAN, AnswerShape, shape_named  # noqa: F401 - NAN is the tasks' "no value" too
from kgopt.errors import UnknownTaskError

LANGS = ("zh", "en")

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


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """Everything kgopt needs to know about one IE task (built by keyword: fields may be reordered)."""

    name: str
    dataset: str  # "iepile" or "instructie"
    folder: str  # the IEPile task folder of its unified files (EET and EEA are built from EE's)
    label_key: str  # key of the gold list in unified/InstructIE records
    split_size: int  # OneKE's default number of schema items per instruction
    shape: str  # answer shape (kgopt.core.shapes.SHAPES): entities | triples | events | ...
    templates: dict[str, str]
    two_level: bool = False  # EE/EEA are scored on events and arguments
    answer_format: str = "oneke"  # a task may have other formats (ANSWER_FORMATS); one per program
    item_keys: tuple[str, ...] = ()  # the keys of a dict schema item, which tell its format apart
    given_triggers: bool = False  # EEA: asked with the record's own triggers (a record without events asks nothing)

    @property
    def answer_shape(self) -> AnswerShape:
        return shape_named(self.shape)

    # The encoding of the task's schema and gold records, which the shape owns beside its parser.
    def schema_items(self, schema: Schema, record: Record | None = None) -> list[Any]:
        return self.answer_shape.schema_items(schema, record)

    def item_label(self, item: Any) -> str:
        return self.answer_shape.item_label(item)

    def gold_answer(self, record: Record, chunk: list[Any]) -> dict[str, Any]:
        return self.answer_shape.gold_answer(record, chunk)

    def gold_tuples(self, labels: list[dict[str, Any]]) -> list[tuple]:
        return self.answer_shape.gold_tuples(labels)

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
    "NER": TaskSpec(name="NER", dataset="iepile", folder="NER", label_key="entity", split_size=6, shape="entities", templates=TEMPLATES["NER"]),
    "RE": TaskSpec(name="RE", dataset="iepile", folder="RE", label_key="relation", split_size=4, shape="triples", templates=TEMPLATES["RE"]),
    "EE": TaskSpec(name="EE", dataset="iepile", folder="EE", label_key="event", split_size=4, shape="events", templates=TEMPLATES["EE"], two_level=True),
    "EET": TaskSpec(name="EET", dataset="iepile", folder="EE", label_key="event", split_size=4, shape="triggers", templates=TEMPLATES["EET"]),
    "EEA": TaskSpec(name="EEA", dataset="iepile", folder="EE", label_key="event", split_size=4, shape="arguments", templates=TEMPLATES["EEA"],
                    two_level=True, given_triggers=True),
    # KG: one InstructIE topic per call, however many relations it has.
    "KG": TaskSpec(name="KG", dataset="instructie", folder="KG", label_key="relation", split_size=1, shape="entity_attributes", templates=TEMPLATES["KG"],
                   item_keys=("entity_type", "attributes")),
}

# Other answer formats a program may choose instead of its task's OneKE one (the compiler
# searches them). KG's typed triples carry head and tail types for the graph.
ANSWER_FORMATS: dict[str, dict[str, TaskSpec]] = {name: {"oneke": spec} for name, spec in TASKS.items()}
ANSWER_FORMATS["KG"]["typed_triples"] = TaskSpec(
    name="KG", dataset="instructie", folder="KG", label_key="relation", split_size=1, shape="typed_triples", templates=TEMPLATES["KG_typed"],
    answer_format="typed_triples", item_keys=("topic", "relations"),
)

# Where each IEPile task's unified files live (the specs' ``folder``).
TASK_FOLDER = {name: spec.folder for name, spec in TASKS.items()}


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
