"""``kgopt augment``: new annotated training samples from the schema and a few real ones.

For each label of a source's schema (InstructIE: each relation of each topic), the model
sees up to three real training records that carry the label (whole, or with ``show="annotations"``
their annotations only) and is asked for new sentences about other entities, annotated in the
same unified format (DeepKE LLMICL's recipe). Every
sample goes through ``SampleChecker`` (a copy of a sentence shown is ``copy_of_shown``);
accepted ones are merged into ``<out>/iepile/IE-<lang>/<TASK>/<source>/train.json``
(InstructIE: ``<out>/InstructIE/train_<lang>.json``) with their provenance, so ``kgopt
compile`` reads them with the same readers as real data. Existing augmented records are kept;
re-running adds, never loses. A label whose samples were copies of real sentences is asked
again, once by default (``copy_retries``), after every label had its call, with another seed
and other sentences shown; those calls count in the connection's call budget like the others.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ujson
from loguru import logger
from tqdm import tqdm

from kgopt.augmentation.validate import COPY_REASONS, REASONS, SampleChecker, is_copy
from kgopt.clients.lm import CALL_ERRORS, UsageSpan, as_connection, complete_text
from kgopt.core.parsing import load_json
from kgopt.core.schema import Record, Schema
from kgopt.core.shapes import RecordItems, shape_named
from kgopt.core.tasks import TASK_FOLDER, check_lang, get_task
from kgopt.data.jsonio import dumps, iter_json, write_atomic, write_jsonl
from kgopt.data.layouts import IEPileTree, InstructIEFiles, layout_of
from kgopt.data.readers import default_data_dir
from kgopt.errors import ConfigError, DataError
from kgopt.redaction import redact_identity, scrub

# The prompt of each way of showing the real samples (``AugmentOptions.show``), recorded in the
# report and in every sample's provenance. v3: whole samples shown, new sentences about other
# entities asked for, copies rejected and asked again. v4: the same, but only the annotations of
# the real samples are shown, so there is no sentence to copy (KG/zh: most v3 samples were copies).
PROMPT_VERSIONS = {"sentences": "llmicl-v3", "annotations": "llmicl-v4"}
PROMPT_VERSION = PROMPT_VERSIONS["sentences"]
# The way each language shows them unless told: on KG/zh 139 of 202 v3 samples copied a sentence
# shown and v4 yields 2.7x the accepted samples per call; on NER/en the two yield the same per
# call (BENCHMARKS.md, "Augmentation yield").
DEFAULT_SHOW = {"en": "sentences", "zh": "annotations"}

# The no-copy instruction: a small model otherwise mostly repeats the sentences shown (KG/zh).
NO_COPY = {
    "en": (
        "Each sample must be a new sentence of your own about other entities (other names, places, works, dates) than the real samples; "
        "do not repeat, copy or lightly edit the sentences above: copies are discarded."
    ),
    "zh": "每个样本必须是你自己写的新句子，讲的是与上面真实样本不同的实体（其他的人名、地名、作品、时间）；不要重复、照抄或稍加改动上面的句子，照抄的样本会被丢弃。",
}

_ASK = {
    "en": (
        "You create training data for information extraction. Each sample is a sentence with its annotation in JSON:\n{fmt}\n"
        "Allowed labels: {labels}.\n{heading}\n{examples}\n\n"
        "Write {n} new samples with the label \"{label}\". " + NO_COPY["en"] + " "
        "Every annotated span must appear character for character in its own new sentence. "
        'Answer with one JSON object: {{"samples": [...]}}.'
    ),
    "zh": (
        "你为信息抽取构造训练数据。每个样本是一个句子及其JSON标注：\n{fmt}\n允许的标签：{labels}。\n{heading}\n{examples}\n\n"
        "请写{n}个带有标签“{label}”的新样本。" + NO_COPY["zh"] + "每个标注的片段必须一字不差地出现在它自己的新句子中。"
        '用一个JSON对象回答：{{"samples": [...]}}。'
    ),
}

# What precedes the real samples shown, for each way of showing them.
_HEADING = {
    "sentences": {"en": 'Real samples with the label "{label}":', "zh": "带有标签“{label}”的真实样本："},
    "annotations": {
        "en": 'Annotations of real samples with the label "{label}" (their sentences are not shown; write sentences of your own):',
        "zh": "带有标签“{label}”的真实样本的标注（不给出它们的句子，请自己写句子）：",
    },
}


@dataclass
class AugmentReport:
    task: str
    lang: str
    model: str
    seed: int
    show: str = "sentences"
    asked: int = 0
    received: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    failed_calls: int = 0
    retried_calls: int = 0  # calls that asked again for samples rejected as copies of real sentences
    per_label: dict[str, dict[str, int]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    llm: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "lang": self.lang,
            "model": self.model,
            "seed": self.seed,
            "prompt_version": PROMPT_VERSIONS[self.show],
            "show": self.show,
            "asked": self.asked,
            "received": self.received,
            "accepted": self.accepted,
            "rejected": {r: self.rejected.get(r, 0) for r in REASONS},
            "missing": max(0, self.asked - self.received),
            "failed_calls": self.failed_calls,
            "retried_calls": self.retried_calls,
            "per_label": self.per_label,
            "files": self.files,
            "llm": self.llm,
        }


@dataclass
class _Unit:
    """One source (or InstructIE topic): its schema, real records, and where samples go."""

    name: str
    schema: Schema
    records: list[Record]
    out_file: Path
    schema_src: Path
    schema_dst: Path
    cate: str | None = None


def _labels_of(items: RecordItems, rec: Record) -> set[str]:
    return {it.get(items.label_field) for it in rec.labels}


def _shown(items: RecordItems, rec: Record, show: str) -> str:
    """A real sample as the prompt shows it: whole, or its annotation only (``show``)."""
    return ujson.dumps({"text": rec.text, items.key: rec.labels} if show == "sentences" else {items.key: rec.labels}, ensure_ascii=False)


def _sample_schema(items: RecordItems, schema: Schema, n: int) -> dict[str, Any]:
    """What constrained decoding lets the model write: exactly ``n`` samples (a small model
    otherwise stops early), each with 1-4 items whose labels are the schema's."""
    s = {"type": "string", "maxLength": 300}
    obj = lambda props: {"type": "object", "properties": props, "required": list(props)}  # noqa: E731
    sample = obj({"text": s, items.key: {"type": "array", "items": obj(items.item_schema(s, schema)), "minItems": 1, "maxItems": 4}})
    return obj({"samples": {"type": "array", "items": sample, "minItems": n, "maxItems": n}})


def _units(spec, lang: str, source: str | None, data_dir, out_root: Path, train_limit: int | None) -> list[_Unit]:
    """What to augment, read with ``load_examples``' ``limit`` so that the records shown are the
    ones ``kgopt compile --train-limit`` trains on (the first N of the file, or of each source).
    Where the files are is the data layout's (``kgopt.data.layouts``)."""
    layout = layout_of(spec, data_dir)
    if isinstance(layout, InstructIEFiles):
        by_topic: dict[str, list[Record]] = defaultdict(list)
        schemas: dict[str, Schema] = {}
        for ex in layout.examples(spec, lang, "train", limit=train_limit):
            by_topic[ex.record.cate or ""].append(ex.record)
            schemas[ex.record.cate or ""] = ex.schema
        topics = [source] if source else sorted(by_topic)
        out = []
        for t in topics:
            if t not in by_topic:
                raise DataError(f"no training records of topic {t!r} (have: {', '.join(sorted(by_topic))})", str(layout.split_file(lang, "train")))
            out.append(
                _Unit(t, schemas[t], by_topic[t], out_root / "InstructIE" / f"train_{lang}.json", layout.schema_file(lang), out_root / "InstructIE" / f"schema_{lang}.json", cate=t)
            )
        return out
    if not isinstance(layout, IEPileTree):
        raise DataError(f"kgopt augment writes samples into IEPile's and InstructIE's layouts; it does not augment {layout} "
                        "(docs/own-data.md)")
    folder_task = TASK_FOLDER[spec.name]
    out = []
    for src in [source] if source else layout.sources(spec, lang):
        train_file = layout.split_file(spec, lang, src, "train")
        if not train_file.is_file():
            if source:
                raise DataError("this source has no train split to learn from", str(train_file))
            continue
        exs = layout.examples(spec, lang, "train", source=src, limit=train_limit)
        if not exs:
            continue
        dst = out_root / "iepile" / f"IE-{lang}" / folder_task / src
        out.append(_Unit(src, exs[0].schema, [e.record for e in exs], dst / "train.json", train_file.parent / "schema.json", dst / "schema.json"))
    return out


def _existing(path: Path) -> list[dict[str, Any]]:
    return [obj for _, obj in iter_json(path)] if path.is_file() else []


@dataclass
class AugmentOptions:
    """What one ``kgopt augment`` run asks for (everything but the connection)."""

    task: str
    lang: str
    source: str | None = None
    per_label: int = 3  # samples asked per label
    seed: int = 0
    data_dir: str | Path | None = None
    out_dir: str | Path | None = None  # None: <data>/augmented
    max_labels: int | None = None  # labels asked per source or topic
    train_limit: int | None = None  # learn from the first N train records (per source), as compile's --train-limit; None: all
    constrained: bool = True  # JSON-schema constrained decoding of the samples
    copy_retries: int = 1  # calls per label asking again for the samples rejected as copies of real sentences (0: none)
    show: str | None = None  # how the real samples are shown: "sentences" (whole) or "annotations" (without their sentences); None: DEFAULT_SHOW[lang]

    def __post_init__(self) -> None:
        check_lang(self.lang)
        self.show = self.show or DEFAULT_SHOW[self.lang]
        if self.show not in _HEADING:
            raise ConfigError(f"show must be one of {', '.join(_HEADING)}, not {self.show!r}")
        if self.copy_retries < 0:
            raise ConfigError(f"copy_retries must be 0 or more, not {self.copy_retries}")
        get_task(self.task)  # an unknown task fails here, before any data is read

    @property
    def out_root(self) -> Path:
        return Path(self.out_dir) if self.out_dir else default_data_dir() / "augmented"

    @property
    def spec(self):
        return get_task(TASK_FOLDER[get_task(self.task).name])  # EET and EEA train on EE's records


def augment(task: str, lang: str, connection=None, **options: Any) -> AugmentReport:
    """Generate, check and store augmented samples; ``options`` are ``AugmentOptions``' fields.
    Returns the counts (see module doc)."""
    return run_augment(AugmentOptions(task, lang, **options), connection)


def run_augment(options: AugmentOptions, connection=None) -> AugmentReport:
    """Augmentation as steps: read the data, then per label show examples, ask, check, keep;
    then, for the labels whose samples were copies of real sentences, ask again (bounded by
    ``copy_retries``, and by the connection's call budget like every call)."""
    o, spec = options, options.spec
    units = _units(spec, o.lang, o.source, o.data_dir, o.out_root, o.train_limit)  # reads (and checks) the data before any call
    connection = as_connection(connection)
    report = AugmentReport(spec.name, o.lang, connection.model, o.seed, o.show)
    spent = UsageSpan(connection.lm.usage)
    items = shape_named(spec.shape).record  # what a sample's labels are
    store = _SampleStore(spec, units)
    rng = random.Random(o.seed)
    jobs = _jobs(units, items, o.max_labels)

    def call(i: int, unit: _Unit, label: str, shown: list[Record], n: int, call_seed: int, prev: _Call | None = None) -> _Call:
        """One call for a label (``prev``: its call before): ``n`` samples asked, each checked and kept or counted by reason."""
        done = _Call(i, unit, label, shown, before=prev.before + prev.shown if prev else [], copied=list(prev.copied) if prev else [])
        stats = report.per_label.setdefault(f"{unit.name}/{label}", {"asked": 0, "accepted": 0})
        stats["asked"] += n
        report.asked += n
        samples = _ask(connection.lm, o.lang, unit, label, items, shown, n, call_seed, o.constrained, o.show, report)
        for sample in samples[:n]:
            report.received += 1
            rec, reason = store.check(unit, sample, [r.text for r in shown])
            if reason:
                report.rejected[reason] += 1
                done.note_rejected(sample, reason)
                continue
            store.keep(unit, rec, _provenance(connection, o.seed, label, shown, o.show))
            report.accepted += 1
            stats["accepted"] += 1
        return done

    try:
        again = []
        for i, (unit, label) in enumerate(tqdm(jobs, desc=f"augment {spec.name}/{o.lang}", unit="label", dynamic_ncols=True)):
            again.append(call(i, unit, label, _examples_shown(unit, label, items, rng), o.per_label, o.seed * 100003 + i))
        # Asked again only after every label had its call, so retries never crowd out a label.
        for attempt in range(1, o.copy_retries + 1):
            todo, again = [c for c in again if c.copies], []
            for prev in todo:
                seed = o.seed * 100003 + attempt * len(jobs) + prev.index  # another seed than any call before
                again.append(call(prev.index, prev.unit, prev.label, _examples_again(prev, items, rng), prev.copies, seed, prev))
                report.retried_calls += 1
    finally:
        # Whatever was accepted before an interruption is written.
        report.files = store.write(report.files)
        report.llm = spent.counts()
        _write_report(report, o.out_root, spec.name, o.lang, o.source, o.seed)
    return report


@dataclass(eq=False)
class _Call:
    """What one call for a label showed, and which of its samples were copies of real sentences."""

    index: int  # the label's place in the jobs (its call seeds derive from it)
    unit: _Unit
    label: str
    shown: list[Record]
    before: list[Record] = field(default_factory=list)  # what the label's earlier calls showed
    copied: list[Record] = field(default_factory=list)  # the records shown to this label's calls that were copied
    copies: int = 0  # samples rejected as copies of a shown sentence or of a training text

    def note_rejected(self, sample: Any, reason: str) -> None:
        if reason in COPY_REASONS:
            self.copies += 1
            self.copied += [r for r in self.shown if r not in self.copied and is_copy(sample["text"], r.text)]


def _jobs(units: list[_Unit], items: RecordItems, max_labels: int | None) -> list[tuple[_Unit, str]]:
    """One call per (source or topic, label) that has real records to show."""
    jobs = []
    for unit in units:
        labels = [lab for lab in items.schema_labels(unit.schema) if any(lab in _labels_of(items, r) for r in unit.records)]
        jobs += [(unit, lab) for lab in labels[:max_labels]]
    return jobs


def _examples_shown(unit: _Unit, label: str, items: RecordItems, rng: random.Random) -> list[Record]:
    with_label = [r for r in unit.records if label in _labels_of(items, r)]
    return rng.sample(with_label, min(3, len(with_label)))


def _examples_again(prev: _Call, items: RecordItems, rng: random.Random) -> list[Record]:
    """What to show when asking again: records with the label not shown yet, then shown ones
    that were not copied; the copied ones only when the label has no others."""
    with_label = [r for r in prev.unit.records if prev.label in _labels_of(items, r)]
    seen = prev.before + prev.shown
    fresh = [r for r in with_label if r not in seen]
    shown = rng.sample(fresh, min(3, len(fresh)))
    shown += [r for i, r in enumerate(seen) if r not in seen[:i] and r not in prev.copied][: 3 - len(shown)]
    return shown or rng.sample(with_label, min(3, len(with_label)))


def _ask(lm, lang: str, unit: _Unit, label: str, items: RecordItems, shown: list[Record], per_label: int, call_seed: int,
         constrained: bool, show: str, report: AugmentReport) -> list[Any]:
    """The model's samples for one label (untrusted, unchecked); [] when the call failed or the answer is unusable."""
    prompt = _ASK[lang].format(fmt=items.example, labels=", ".join(items.schema_labels(unit.schema)), label=label, n=per_label,
                               heading=_HEADING[show][lang].format(label=label), examples="\n".join(_shown(items, r, show) for r in shown))
    kwargs: dict[str, Any] = {"temperature": 0.9, "seed": call_seed, "max_tokens": 192 * per_label + 64}
    if constrained:
        from kgopt.clients.dialects import response_format

        kwargs["response_format"] = response_format(_sample_schema(items, unit.schema, per_label))
    try:
        raw = complete_text(lm, [{"role": "user", "content": prompt}], **kwargs)
    except CALL_ERRORS as exc:  # an endpoint failure; any other error is a bug and is raised
        logger.warning("augment call for {}/{} failed: {}: {}", unit.name, label, type(exc).__name__, scrub(str(exc)))
        report.failed_calls += 1
        return []
    obj, _ = load_json(raw or "")
    samples = obj.get("samples") if isinstance(obj, dict) else obj if isinstance(obj, list) else None
    if not isinstance(samples, list):
        report.rejected["malformed"] += 1
        report.received += 1  # one unusable answer stands for the samples asked
        return []
    return samples


def _provenance(connection, seed: int, label: str, shown: list[Record], show: str) -> dict[str, Any]:
    return {
        "model": connection.model,
        "endpoint": redact_identity(connection.identity),  # shared files: never a password or ?key=
        "prompt_version": PROMPT_VERSIONS[show],
        "seed": seed,
        "label": label,
        "source_ids": [r.id for r in shown],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


class _SampleStore:
    """The samples of each output file: what was there before, and what this run accepts."""

    def __init__(self, spec, units: list[_Unit]):
        self.spec, self.units = spec, units
        self.kept: dict[Path, list[dict[str, Any]]] = {}
        self.checkers: dict[str, SampleChecker] = {}

    def check(self, unit: _Unit, sample: Any, shown: list[str]) -> tuple[dict[str, Any] | None, str | None]:
        if unit.out_file not in self.kept:
            self.kept[unit.out_file] = _existing(unit.out_file)
        if unit.name not in self.checkers:
            self.checkers[unit.name] = checker = SampleChecker(self.spec, unit.schema, [r.text for r in unit.records])
            for obj in self.kept[unit.out_file]:  # what the file holds counts as accepted: a copy of it is a duplicate
                if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                    checker.remember(obj["text"])
        return self.checkers[unit.name].check(sample, shown)

    def keep(self, unit: _Unit, rec: dict[str, Any], provenance: dict[str, Any]) -> None:
        text = rec["text"]
        self.kept[unit.out_file].append({
            "id": "aug-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
            **({"cate": unit.cate} if unit.cate is not None else {}),
            **rec,
            "provenance": provenance,
        })  # fmt: skip
        for other in self.units:  # InstructIE's topics share one file: a sample kept for one is a duplicate for the others
            if other.out_file == unit.out_file and other.name != unit.name and other.name in self.checkers:
                self.checkers[other.name].remember(text)

    def write(self, files: list[str]) -> list[str]:
        """Write every file that has samples (atomically), with its schema beside it; the files written."""
        for unit in self.units:
            if self.kept.get(unit.out_file) or unit.out_file.is_file():
                write_jsonl(unit.out_file, self.kept.get(unit.out_file) or _existing(unit.out_file))
                if not unit.schema_dst.is_file():
                    unit.schema_dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(unit.schema_src, unit.schema_dst)
                if str(unit.out_file) not in files:
                    files.append(str(unit.out_file))
        return files


def _write_report(report: AugmentReport, out_root: Path, task: str, lang: str, source: str | None, seed: int) -> None:
    if report.asked:
        rep_dir = out_root / "reports"
        rep_dir.mkdir(parents=True, exist_ok=True)
        name = f"{task}_{lang}_{source or 'all'}_seed{seed}.json"
        write_atomic(rep_dir / name, lambda fh: fh.write(dumps(report.to_json(), indent=2) + "\n"))
