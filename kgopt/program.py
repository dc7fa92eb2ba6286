"""One generic DSPy program for every IE task, parameterised by a ``TaskSpec``.

``IEProgram(task, lang)`` is the zero-shot OneKE baseline: the official IEPile instruction,
no demonstrations, the task's default schema split size. The compiler changes its
predictor's instruction and demonstrations and the decoding settings in ``ProgramSettings``;
everything is saved as JSON (``save_artifact``/``load_program``), never pickled.

Demonstrations: the predictor's ``demos`` are a pool. ``demo_selection="fixed"`` shows the
first ``num_demos`` of it in every call; ``"similar"`` picks, per call, the ``num_demos`` pool
entries closest to the input text (a bonus for answering the same labels), like DSPy's
KNNFewShot but without an embedding model; ``"weighted"`` picks per call by a score whose four
weights (``demo_weights``: similarity, label coverage, diversity, length) the compiler searched
(``kgopt.core.demos.weighted_demos``). ``demo_order`` says in which order the chosen ones are shown:
``"selected"`` as the selection returns them (most similar last), ``"sorted"`` by their text, so
inputs that are shown the same demonstrations send the same prompt prefix, which a server's
prefix cache skips (docs/embedded-model.md#prompt-layouts).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import dspy
import ujson
from loguru import logger

from kgopt import __version__
from kgopt.adapters.oneke import DEFAULT_LAYOUT, adapter_for, layout_names
from kgopt.core.answer_schema import answer_json_schema
from kgopt.clients.dialects import response_format
from kgopt.core.demos import DemoWeights, most_similar, weighted_demos
from kgopt.core.parsing import ERROR, merge_labels, parse_answer
from kgopt.core.schema import Record, Schema
from kgopt.core.tasks import check_lang, get_task
from kgopt.data.jsonio import dumps, write_atomic
from kgopt.clients.lm import CALL_ERRORS
from kgopt.errors import ArtifactError

ARTIFACT_FORMAT = 1
DEMO_SELECTIONS = ("fixed", "similar", "weighted")
DEMO_ORDERS = ("selected", "sorted")
DEFAULT_DEMO_ORDER = "selected"
OUTPUT_MODES = ("plain", "json")  # json: server-side constrained decoding to the answer schema
# The only state a saved predictor may carry: DSPy's load_state sets every key it is given as
# an attribute, so a "config": {"n": 64} would ride along on every request.
PREDICTOR_STATE_KEYS = ("signature", "demos", "traces", "train", "lm")


@dataclass
class ProgramSettings:
    """How a program asks: everything besides the instruction text and the demos."""

    split_size: int | None = None  # schema items per call; None: the task's default
    num_demos: int = 0  # demonstrations shown per call
    demo_selection: str = "fixed"
    output: str = "plain"
    temperature: float | None = None  # None: the connection's default
    max_tokens: int | None = None
    max_items: int | None = None  # json output: cap on each label's list
    max_len: int | None = None  # json output: cap on each string's length
    answer_format: str | None = None  # None: the task's OneKE format (KG may use "typed_triples")
    # demo_selection "weighted" only (and then required); a program file holds it as an object.
    demo_weights: DemoWeights | None = None
    layout: str = DEFAULT_LAYOUT  # how the prompt is laid out (kgopt.adapters.oneke.LAYOUTS)
    demo_order: str = DEFAULT_DEMO_ORDER  # the chosen demonstrations as selected, or sorted by text

    def __post_init__(self):
        # A program file is untrusted input: every field is checked here, by name, so a bad
        # value is an error when the file is read, never a TypeError in every call later.
        for name in ("split_size", "max_tokens"):
            _check_int(name, getattr(self, name), minimum=1, optional=True)
        for name in ("max_items", "max_len"):
            _check_int(name, getattr(self, name), minimum=0, optional=True)
        _check_int("num_demos", self.num_demos, minimum=0)
        if self.demo_selection not in DEMO_SELECTIONS:
            raise ValueError(f"demo_selection must be one of {DEMO_SELECTIONS}, got {self.demo_selection!r}")
        if self.output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {OUTPUT_MODES}, got {self.output!r}")
        t = self.temperature
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 2):
            raise ValueError(f"temperature must be a number from 0 to 2 or null, got {t!r}")
        if self.layout not in layout_names():
            raise ValueError(f"layout must be one of {layout_names()}, got {self.layout!r}")
        if self.demo_order not in DEMO_ORDERS:
            raise ValueError(f"demo_order must be one of {DEMO_ORDERS}, got {self.demo_order!r}")
        if self.answer_format is not None and not isinstance(self.answer_format, str):
            raise ValueError(f"answer_format must be a string or null, got {self.answer_format!r}")
        if self.demo_weights is not None:
            self.demo_weights = DemoWeights.from_dict(self.demo_weights)
        if (self.demo_selection == "weighted") != (self.demo_weights is not None):
            raise ValueError("demo_weights must be given with demo_selection 'weighted', and only with it"
                             f" (demo_selection {self.demo_selection!r}, demo_weights {self.demo_weights!r})")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProgramSettings":
        """Settings from a program's ``config`` (its ``task`` and ``lang`` aside); an unknown key is refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"task", "lang"})
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(map(repr, unknown))}")
        return cls(**{k: v for k, v in d.items() if k in known})


def _check_int(name: str, value: Any, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}{' or null' if optional else ''}, got {value!r}")


def demo_labels(demo: Any) -> set[str]:
    """Labels a demonstration's answer fills (keys with a non-empty value)."""
    try:
        ans = ujson.loads(demo.get("answer") or "{}")
    except ValueError:
        return set()
    return {k for k, v in ans.items() if v} if isinstance(ans, dict) else set()


class IESignature(dspy.Signature):
    """Extract information from the input that matches the schema; answer in JSON."""

    text: str = dspy.InputField(desc="the input text")
    chunk: list = dspy.InputField(desc="the schema chunk to extract")
    answer: str = dspy.OutputField(desc="a JSON object keyed by the schema labels")


class IEProgram(dspy.Module):
    def __init__(
        self,
        task: str,
        lang: str,
        split_size: int | None = None,
        instruction: str | None = None,
        settings: ProgramSettings | None = None,
    ):
        super().__init__()
        self.settings = settings or ProgramSettings()
        self.spec = get_task(task, self.settings.answer_format)
        self.lang = check_lang(lang)
        if split_size:
            self.settings.split_size = split_size
        self.settings.split_size = self.settings.split_size or self.spec.split_size
        self.extract = dspy.Predict(IESignature.with_instructions(instruction or self.spec.template(lang)))

    @property
    def split_size(self) -> int:
        return self.settings.split_size

    @property
    def task(self) -> str:
        return self.spec.name

    @property
    def instruction(self) -> str:
        return self.extract.signature.instructions

    def chunks(self, schema: Schema, record: Record | None = None) -> list[list[Any]]:
        return self.spec.chunks(schema, record, self.split_size)

    def select_demos(self, text: str, chunk: list[Any]) -> list[Any]:
        chosen = self._choose_demos(text, chunk)
        if self.settings.demo_order == "sorted":
            return sorted(chosen, key=lambda d: (d.get("text") or "", d.get("answer") or ""))
        return chosen

    def _choose_demos(self, text: str, chunk: list[Any]) -> list[Any]:
        k, pool = self.settings.num_demos, self.extract.demos
        if k <= 0 or not pool:
            return []
        if self.settings.demo_selection == "fixed":
            return list(pool[:k])
        wanted = {self.spec.item_label(it) for it in chunk}
        if self.settings.demo_selection == "weighted":
            # A demo's length is what it adds to the prompt: its text and its answer.
            return weighted_demos(text, pool, k, self.settings.demo_weights, key=lambda d: d.get("text", ""), labels_of=demo_labels,
                                  wanted=wanted, size=lambda d: len(d.get("text") or "") + len(d.get("answer") or ""))
        return most_similar(text, pool, k, key=lambda d: d.get("text", ""), bonus=lambda d: 0.5 if demo_labels(d) & wanted else 0.0)

    def call_config(self, chunk: list[Any]) -> dict[str, Any]:
        """Per-call LM settings: decoding knobs, and the answer schema in json mode."""
        st, config = self.settings, {}
        if st.temperature is not None:
            config["temperature"] = st.temperature
            if st.temperature > 0:
                config["seed"] = 0  # sampled, but reproducible where the server honours seeds
        if st.max_tokens:
            config["max_tokens"] = st.max_tokens
        if st.output == "json":  # OpenAI's form; the client speaks the endpoint's dialect
            config["response_format"] = response_format(answer_json_schema(self.spec, chunk, st.max_items, st.max_len))
        return config

    def forward(
        self, text: str, schema: Schema | None = None, record: Record | None = None, chunk: list[Any] | None = None, **_: Any
    ) -> dspy.Prediction:
        """Ask every schema chunk (or just ``chunk``), parse each answer, merge.

        An endpoint failure (unreachable, refused, retries spent, a body that is no completion)
        is recorded on its call, not raised; only the call budget stops a run. Any other error
        is a bug or a bad program and is raised: counting it as a failed call would hide it.
        """
        if chunk is None and schema is None:
            raise ValueError("forward() needs a schema (or one schema chunk)")
        parts, calls = [], []
        with dspy.context(adapter=adapter_for(self.settings.layout)):
            for chunk in [chunk] if chunk is not None else self.chunks(schema, record):  # noqa: B020 - one given chunk, or all
                started = time.monotonic()
                try:
                    demos = self.select_demos(text, chunk)
                    raw = self.extract(text=text, chunk=chunk, demos=demos, config=self.call_config(chunk)).answer or ""
                    error = None
                except CALL_ERRORS as exc:
                    raw, error = "", f"{type(exc).__name__}: {str(exc)[:300]}"
                parsed = parse_answer(self.spec, raw, chunk)
                parts.append(parsed.labels)
                calls.append(
                    {
                        "schema": chunk,
                        "output": raw,
                        "status": ERROR if error else parsed.status,
                        "problems": parsed.problems,
                        "error": error,
                        "seconds": round(time.monotonic() - started, 3),
                    }
                )
        return dspy.Prediction(result=merge_labels(parts), calls=calls)

    # --- persistence: plain JSON ------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        cfg = {"task": self.task, "lang": self.lang, **asdict(self.settings)}
        if cfg["demo_weights"] is None:  # only weighted selection has them: other programs are saved as before
            del cfg["demo_weights"]
        if cfg["layout"] == DEFAULT_LAYOUT:  # likewise: programs in the default layout are saved as before
            del cfg["layout"]
        if cfg["demo_order"] == DEFAULT_DEMO_ORDER:  # and in the default order
            del cfg["demo_order"]
        return cfg

    def to_artifact(self, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "format": ARTIFACT_FORMAT,
            "kgopt_version": __version__,
            "dspy_version": dspy.__version__,
            "config": self.config(),
            "manifest": manifest or {},
            "state": self._portable_state(),
        }

    def _portable_state(self) -> dict[str, Any]:
        # A program is independent of the endpoint it was compiled on: drop the LM.
        state = self.dump_state()
        for sub in state.values():
            if isinstance(sub, dict) and "lm" in sub:
                sub["lm"] = None
        return state

    def save_artifact(self, path: str | os.PathLike, manifest: dict[str, Any] | None = None) -> Path:
        """Write the program as JSON, atomically (temp file + rename)."""
        path = Path(path)
        write_atomic(path, lambda fh: fh.write(dumps(self.to_artifact(manifest), indent=2) + "\n"))
        return path


def load_program(path: str | os.PathLike, task: str | None = None, lang: str | None = None) -> tuple[IEProgram, dict[str, Any]]:
    """Load a saved program; checks format, versions, and (if given) task and language."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: program file not found")
    try:
        art = ujson.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # UnicodeDecodeError included; ujson refuses deep nesting as a ValueError
        raise ArtifactError(f"{path}: not a JSON program file ({exc})") from None
    if not isinstance(art, dict) or "config" not in art or "state" not in art:
        raise ArtifactError(f"{path}: not a kgopt program (missing 'config' or 'state')")
    if art.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: program format {art.get('format')!r}, this kgopt reads format {ARTIFACT_FORMAT}")
    made_with = str(art.get("dspy_version", ""))
    if made_with.split(".")[:2] != dspy.__version__.split(".")[:2]:
        raise ArtifactError(f"{path}: made with DSPy {made_with}, this is DSPy {dspy.__version__}; recompile it")
    cfg = art["config"]
    if not isinstance(cfg, dict):
        raise ArtifactError(f"{path}: 'config' must be an object")
    if task and cfg.get("task") != task.upper():
        raise ArtifactError(f"{path}: a {cfg.get('task')} program, not {task.upper()}")
    if lang and cfg.get("lang") != lang:
        raise ArtifactError(f"{path}: a {cfg.get('lang')} program, not {lang}")
    try:
        settings = ProgramSettings.from_dict(cfg)
        program = IEProgram(cfg["task"], cfg["lang"], settings=settings)
    except KeyError as exc:
        raise ArtifactError(f"{path}: config lacks {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: config: {exc}") from None
    program.load_state(_safe_state(art["state"], path))
    if not isinstance(art.get("manifest", {}), dict):
        raise ArtifactError(f"{path}: 'manifest' must be an object")
    return program, art.get("manifest", {})


def _safe_state(state: Any, path: Path) -> dict[str, Any]:
    """The saved predictor state, checked key by key and type by type, with ``lm`` forced to
    None (a program never chooses its endpoint). Anything else is an ``ArtifactError`` naming the key."""
    if not isinstance(state, dict) or set(state) != {"extract"}:
        raise ArtifactError(f"{path}: 'state' must be an object with the one key 'extract'")
    sub = state["extract"]
    if not isinstance(sub, dict):
        raise ArtifactError(f"{path}: state.extract must be an object")
    unknown = sorted(set(sub) - set(PREDICTOR_STATE_KEYS))
    if unknown:
        raise ArtifactError(f"{path}: unknown key(s) in state.extract: {', '.join(map(repr, unknown))}")
    sig = sub.get("signature")
    if not (isinstance(sig, dict) and isinstance(sig.get("instructions"), str) and isinstance(sig.get("fields"), list)
            and all(isinstance(f, dict) and isinstance(f.get("prefix"), str) and isinstance(f.get("description"), str) for f in sig["fields"])):
        raise ArtifactError(f"{path}: state.extract.signature must be {{instructions: string, fields: [{{prefix, description}}]}}")
    for name in ("traces", "train"):
        if not isinstance(sub.get(name, []), list):
            raise ArtifactError(f"{path}: state.extract.{name} must be a list")
    demos = sub.get("demos", [])
    if not isinstance(demos, list):
        raise ArtifactError(f"{path}: state.extract.demos must be a list")
    for i, d in enumerate(demos):
        problem = _demo_problem(d)
        if problem:
            raise ArtifactError(f"{path}: state.extract.demos[{i}]{problem}")
    if sub.get("lm") is not None:
        logger.warning("{}: the program names an LM ({}); ignored: programs run on the configured endpoint", path, type(sub["lm"]).__name__)
    clean = {"signature": {"instructions": sig["instructions"], "fields": [{"prefix": f["prefix"], "description": f["description"]} for f in sig["fields"]]},
             "demos": demos, "traces": [], "train": [], "lm": None}  # traces/train: DSPy's, unused when a program runs
    return {"extract": clean}


def _demo_problem(demo: Any) -> str | None:
    """What is wrong with one saved demonstration, or None."""
    if not isinstance(demo, dict):
        return " must be an object"
    for key in ("text", "answer"):
        if not isinstance(demo.get(key), str):
            return f".{key} must be a string"
    if not isinstance(demo.get("chunk", []), list):
        return ".chunk must be a list"
    for key, value in demo.items():
        if key not in ("text", "answer", "chunk") and not isinstance(value, (str, int, float, bool, type(None))):
            return f".{key} must be a string, number, boolean or null"
    return None
