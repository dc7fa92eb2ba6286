"""Instruction variants proposed by the LLM from the data (the study's instruction choices).

The model is shown the official IEPile instruction and a few real (input, answer) pairs and
asked for a better instruction in the same language. Each proposal is untrusted: it is
kept only if it is a single plain paragraph of reasonable length that differs from the
ones already kept. The official template is always candidate 0. When the training schemas
carry label descriptions (a user's schema file, ``docs/own-data.md``), candidate 1 is the
official template followed by what each label means (``describe_labels``): no LLM call.

Learning from failures (``propose_from_failures``, ``kgopt compile --reflect N``): after the
trials, the model is shown the best trial's instruction and dev records it got wrong (the input,
its answer, the correct labels) and asked for an instruction that avoids those mistakes, as
MIPROv2's and GEPA's reflection do. Each proposal is cleaned the same way and then scored on dev
as one more trial, so it is kept only if dev says it helps.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import dspy
from loguru import logger

from kgopt.clients.lm import CALL_ERRORS, complete_text
from kgopt.core.schema import Schema, merge_schemas
from kgopt.core.tasks import TaskSpec

PROMPT_VERSION = "instructions-v1"
REFLECT_PROMPT_VERSION = "reflect-v1"

_ASK = {
    "en": (
        "You write instructions for an information-extraction model. The model receives JSON with "
        '"instruction", "schema" (the labels to extract) and "input" (the text), and must answer with '
        "one JSON object keyed by the schema labels, copying spans exactly from the input.\n\n"
        "Current instruction:\n{current}\n\nExamples of inputs and correct answers:\n{examples}\n\n"
        "Write one improved instruction for this task in English: a single paragraph of at most 80 words. "
        "Reply with the instruction only."
    ),
    "zh": (
        "你为信息抽取模型编写指令。模型收到包含\"instruction\"、\"schema\"（要抽取的标签）和\"input\"（文本）的JSON，"
        "必须用一个以schema标签为键的JSON对象回答，并从input中原样复制片段。\n\n当前指令：\n{current}\n\n输入和正确答案示例：\n{examples}\n\n"
        "请为该任务写一条改进的中文指令：一段话，不超过150字。只回复指令本身。"
    ),
}

_REFLECT = {
    "en": (
        "You write instructions for an information-extraction model. The model receives JSON with "
        '"instruction", "schema" (the labels to extract) and "input" (the text), and must answer with '
        "one JSON object keyed by the schema labels, copying spans exactly from the input.\n\n"
        "Current instruction:\n{current}\n\nRecords where the model answered wrongly with this instruction:\n{failures}\n\n"
        "Write one improved instruction in English that would avoid these mistakes on other texts: a single paragraph of at most 80 words. Reply with the instruction only."
    ),
    "zh": (
        "你为信息抽取模型编写指令。模型收到包含\"instruction\"、\"schema\"（要抽取的标签）和\"input\"（文本）的JSON，"
        "必须用一个以schema标签为键的JSON对象回答，并从input中原样复制片段。\n\n当前指令：\n{current}\n\n"
        "使用该指令时模型答错的记录：\n{failures}\n\n"
        "请写一条能在其他文本上避免这些错误的改进中文指令：一段话，不超过150字。只回复指令本身。"
    ),
}
_FAILURE = {
    "en": "input: {input}\nmodel's answer: {output}\ncorrect labels: {gold}",
    "zh": "input：{input}\n模型的回答：{output}\n正确的标签：{gold}",
}
FAILURE_CHARS = 400  # of each shown field: the prompt stays small for a small model's context


def failure_text(lang: str, failures: list[dict[str, str]]) -> str:
    """The dev errors shown to the model: ``failures`` items have ``input``, ``output``, ``gold``."""
    return "\n\n".join(_FAILURE[lang].format(**{k: str(f[k])[:FAILURE_CHARS] for k in ("input", "output", "gold")}) for f in failures)


# The sentence appended to the official instruction when the schema describes its labels.
_MEANINGS = {
    "en": {"lead": "Label meanings: ", "pair": "{label}: {text}", "sep": "; ", "end": "."},
    "zh": {"lead": "标签含义：", "pair": "{label}：{text}", "sep": "；", "end": "。"},
}
_END_PUNCTUATION = ".。;；,，:： "


def label_meanings(schemas: Iterable[Schema], lang: str) -> str | None:
    """The sentence ``Label meanings: <label>: <description>; ...`` (zh: ``标签含义：<label>：<description>；...``)
    for the labels the schemas describe, in their order (a label's first description wins); None
    if they describe none."""
    merged = merge_schemas(schemas)
    if not merged.descriptions:
        return None
    m = _MEANINGS[lang]
    pairs = [m["pair"].format(label=label, text=" ".join(text.split()).rstrip(_END_PUNCTUATION)) for label, text in merged.descriptions.items()]
    return m["lead"] + m["sep"].join(pairs) + m["end"]


def describe_labels(instruction: str, schemas: Iterable[Schema], lang: str) -> str | None:
    """``instruction`` followed by the label meanings of ``schemas``; None if they describe no label."""
    meanings = label_meanings(schemas, lang)
    if meanings is None:
        return None
    return instruction + ("" if lang == "zh" else " ") + meanings


def clean_proposal(raw: str, lang: str) -> str | None:
    """The instruction in a model reply, or None if the reply is not a usable instruction."""
    text = (raw or "").strip()
    text = re.sub(r"^```\w*|```$", "", text).strip()
    text = re.sub(r"^here is [^:\n]*:\s*", "", text, flags=re.I)
    text = re.sub(r"^(improved )?instruction\s*[:：]\s*|^指令\s*[:：]\s*", "", text, flags=re.I).strip().strip('"“”').strip()
    if "\n\n" in text:
        text = text.split("\n\n", 1)[0].strip()
    if not text or "{" in text or "}" in text:
        return None  # an echo of the JSON, or an example answer, not an instruction
    n = len(text) if lang == "zh" else len(text.split())
    low, high = (15, 300) if lang == "zh" else (8, 120)
    if not low <= n <= high:
        return None
    return " ".join(text.split()) if lang == "en" else text


def _ask_for(lm: Any, prompt: str, n: int, seed: int, lang: str, known: list[str], what: str) -> tuple[list[str], dict[str, int]]:
    """Up to ``n`` accepted proposals for ``prompt`` that are not in ``known``, and counts."""
    kept, counts = [], {"asked": 0, "accepted": 0, "rejected": 0, "failed": 0}
    for i in range(n):
        counts["asked"] += 1
        try:
            # A sampled reply per proposal; the seed keeps it reproducible (and cacheable).
            raw = complete_text(lm, [{"role": "user", "content": prompt}], temperature=0.8, seed=seed * 1000 + i, max_tokens=200)
        except CALL_ERRORS as exc:  # an endpoint failure; the caller decides if too many failed
            logger.warning("{} {} failed: {}: {}", what, i, type(exc).__name__, exc)
            counts["failed"] += 1
            continue
        text = clean_proposal(raw, lang)
        if text and text not in known and text not in kept:
            kept.append(text)
            counts["accepted"] += 1
        else:
            counts["rejected"] += 1
    logger.info("{}s: {}", what, counts)
    return kept, counts


def propose_from_failures(lang: str, lm: Any, current: str, failures: list[dict[str, str]], n: int, seed: int = 0,
                          known: list[str] = ()) -> tuple[list[str], dict[str, int]]:
    """Up to ``n`` instructions written from ``current`` and the dev records it got wrong (not in
    ``known``), and counts asked/kept."""
    prompt = _REFLECT[lang].format(current=current, failures=failure_text(lang, failures))
    return _ask_for(lm, prompt, n, seed, lang, list(known), "reflective proposal")


def propose_instructions(spec: TaskSpec, lang: str, lm: Any, examples: list[dspy.Example], n: int, seed: int = 0,
                         schemas: Iterable[Schema] = ()) -> tuple[list[str], dict[str, int]]:
    """The official template, the official template with the label meanings when ``schemas`` (the
    training records' schemas) describe their labels, and up to ``n`` accepted LLM proposals; and
    counts asked/kept (of the proposals)."""
    official = spec.template(lang)
    shown = "\n".join(f"input: {ex.text}\nanswer: {ex.answer}" for ex in examples[:3])
    prompt = _ASK[lang].format(current=official, examples=shown)
    candidates = [official]
    described = describe_labels(official, schemas, lang)
    if described is not None:
        candidates.append(described)
    proposed, counts = _ask_for(lm, prompt, n, seed, lang, candidates, "instruction proposal")
    return candidates + proposed, counts
