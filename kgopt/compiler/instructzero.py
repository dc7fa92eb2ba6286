"""InstructZero-style instruction search: Bayesian optimisation over a soft prompt that an open
white-box model turns into an instruction for the black-box target (Chen et al., 2023,
"InstructZero: Efficient Instruction Optimization for Black-Box Large Language Models").

The search variable is a low-dimensional ``z`` in ``[-1, 1]^d``. A fixed, seeded Gaussian
matrix ``A`` (``Projection``) maps it to ``n_soft`` vectors in the white-box model's input
embedding space. ``InstructionWriter`` feeds the embedded GGUF model (kgopt's own
Qwen2.5-Coder, through llama-cpp-python's low-level API) a ChatML user turn that begins with
those soft tokens, followed by a few training (input, output) pairs and "what was the
instruction?" wording (en and zh), and decodes greedily: the reply is the candidate
instruction. ``search_instructions`` runs an Optuna study over ``z`` (GP or CMA-ES sampler);
each trial's instruction is scored by the caller's ``score`` callback, which runs it on the
black-box target. Only text crosses to the target: it never sees an embedding.

Scale of the soft tokens. ``A``'s entries are N(0, sigma^2) with
``sigma = norm / sqrt(n_embd * d / 3)``, where ``norm`` is the median L2 norm of the model's
token-embedding rows (read from the GGUF file itself, ``token_embedding_norm``) and ``d/3`` is
E[|z|^2] for ``z`` uniform in the cube. So a typical ``z`` gives soft tokens with the norm of
real token embeddings, and ``z``'s length still matters (``z = 0`` is a row of null vectors).
Where the embedding table's tensor type cannot be read here, ``FALLBACK_EMBEDDING_NORM`` is
used and recorded as such.

Determinism. Greedy decoding on the CPU with a fixed thread count gives the same text for the
same (model file, ``z``, projection seed, ``d``, ``n_soft``, examples, language, prompt
version); ``InstructZeroResult.to_json`` records all of them (the examples by digest), and
``rebuild_instruction`` writes a recorded instruction again, refusing a writer or examples
that differ.

Why this and not true black-box tuning of a soft prompt sent to the target (BBT): see
docs/design/black-box-tuning.md.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import mmap
import struct
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np
import optuna
from loguru import logger

from kgopt.errors import ConfigError

PROMPT_VERSION = "instructzero-v1"
DEFAULT_D = 8
DEFAULT_N_SOFT = 5
DEFAULT_MAX_NEW_TOKENS = 60
Z_LOW, Z_HIGH = -1.0, 1.0
Z_SECOND_MOMENT = 1.0 / 3.0  # E[z_i^2] for z_i uniform on [-1, 1]
# Used only when the GGUF's token-embedding tensor type is not one read here: the median row
# norm measured on Qwen2.5-Coder-0.5B-Instruct Q4_K_M (token_embd.weight is Q5_0 there).
FALLBACK_EMBEDDING_NORM = 0.515

# ChatML (both embedded models are Qwen): the soft tokens open the user turn.
_TURN_OPEN = "<|im_start|>user\n"
_TEMPLATES = {
    "en": {
        "intro": "I gave a friend an instruction and some inputs. The friend read the instruction and wrote an output "
                 "for every one of the inputs. Here are the input-output pairs:",
        "pair": "Input: {input}\nOutput: {output}",
        "ask": "What was the instruction? Answer with the instruction only, in one sentence.",
        "answer": "The instruction was to",
        "lead": "",  # the part of "answer" that belongs to the instruction
    },
    "zh": {
        "intro": "下面是几个输入和按照同一条指令写出的输出：",
        "pair": "输入：{input}\n输出：{output}",
        "ask": "这条指令是什么？它告诉模型怎样从输入得到输出。只写指令本身，一句话。",
        "answer": "指令：请",
        "lead": "请",
    },
}  # fmt: skip
_TURN_CLOSE = "<|im_end|>\n<|im_start|>assistant\n"


def _template_digest() -> str:
    text = json.dumps([_TURN_OPEN, _TEMPLATES, _TURN_CLOSE], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- the projection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """The fixed random map from ``z`` (``d``) to ``n_soft`` soft-token embeddings (``n_embd`` each)."""

    seed: int
    d: int
    n_soft: int
    n_embd: int
    norm: float  # the target norm of a soft token for a typical z
    matrix: np.ndarray = field(repr=False, compare=False)  # (n_soft, n_embd, d), float64

    @classmethod
    def make(cls, seed: int, d: int, n_soft: int, n_embd: int, norm: float) -> "Projection":
        if d < 1 or n_soft < 1 or n_embd < 1 or not norm > 0:
            raise ConfigError(f"a projection needs d, n_soft, n_embd >= 1 and a positive norm (got {d}, {n_soft}, {n_embd}, {norm})")
        sigma = norm / math.sqrt(n_embd * d * Z_SECOND_MOMENT)
        matrix = np.random.default_rng(seed).standard_normal((n_soft, n_embd, d)) * sigma
        return cls(seed, d, n_soft, n_embd, float(norm), matrix)

    @property
    def sigma(self) -> float:
        return self.norm / math.sqrt(self.n_embd * self.d * Z_SECOND_MOMENT)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """The soft tokens for ``z``: float32, shape (n_soft, n_embd), C-contiguous."""
        z = np.asarray(z, dtype=np.float64)
        if z.shape != (self.d,) or not np.all(np.isfinite(z)):
            raise ValueError(f"z must be {self.d} finite numbers, got shape {z.shape}")
        return np.ascontiguousarray(self.matrix @ z, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"kind": "gaussian", "seed": self.seed, "d": self.d, "n_soft": self.n_soft, "n_embd": self.n_embd,
                "norm": round(self.norm, 6), "sigma": self.sigma, "rng": "numpy.random.default_rng(seed).standard_normal((n_soft, n_embd, d))"}


# --- the token-embedding norm, read from the GGUF ----------------------------------------------

_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
# ggml tensor types read here: type id -> (block size in values, block size in bytes)
_GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 6: (32, 22), 8: (32, 34), 30: (1, 2)}
_GGML_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 6: "Q5_0", 8: "Q8_0", 30: "BF16"}


@dataclass(frozen=True)
class EmbeddingNorm:
    norm: float  # median L2 norm of the rows read
    source: str  # "gguf" (read from the file) or "fixed" (FALLBACK_EMBEDDING_NORM)
    tensor_type: str
    rows: int  # rows read

    def describe(self) -> dict[str, Any]:
        return asdict(self) | {"norm": round(self.norm, 6)}


class _Reader:
    def __init__(self, buf, pos: int = 0):
        self.buf, self.pos = buf, pos

    def take(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def string(self) -> bytes:
        n = self.take("Q")
        s = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(s)

    def value(self, kind: int):
        if kind == _GGUF_STRING:
            return self.string()
        if kind == _GGUF_ARRAY:
            item, n = self.take("I"), self.take("Q")
            if item in _GGUF_SCALARS:  # skip numeric arrays in one step
                self.pos += n * struct.calcsize("<" + _GGUF_SCALARS[item])
                return None
            for _ in range(n):
                self.value(item)
            return None
        return self.take(_GGUF_SCALARS[kind])


def _dequantize(raw: np.ndarray, kind: int, n: int) -> np.ndarray:
    """``raw`` bytes (rows, row_bytes) of ggml type ``kind`` -> float32 (rows, n)."""
    rows = raw.shape[0]
    if kind == 0:
        return raw.view("<f4").reshape(rows, n)
    if kind == 1:
        return raw.view("<f2").astype(np.float32).reshape(rows, n)
    if kind == 30:
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(rows, n)
    blocks = raw.reshape(rows, n // 32, -1)
    d = blocks[..., :2].copy().view("<f2").astype(np.float32)  # (rows, nb, 1)
    if kind == 8:  # Q8_0: scale, 32 int8
        q = blocks[..., 2:].view(np.int8).astype(np.float32)
        return (q * d).reshape(rows, n)
    if kind == 2:  # Q4_0: scale, 16 bytes of two nibbles; value = nibble - 8
        qs = blocks[..., 2:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8
        return (q * d).reshape(rows, n)
    if kind == 6:  # Q5_0: scale, 32 high bits, 16 bytes of nibbles; value = (nibble | high << 4) - 16
        qh = blocks[..., 2:6].copy().view("<u4")  # (rows, nb, 1)
        qs = blocks[..., 6:]
        bits = np.arange(32, dtype=np.uint32)
        high = ((qh >> bits) & 1).astype(np.uint8) << 4  # (rows, nb, 32)
        low = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)
        q = (low | high).astype(np.float32) - 16
        return (q * d).reshape(rows, n)
    raise ValueError(f"ggml type {kind} is not read here")


def read_token_embeddings(gguf: Path, rows: Sequence[int]) -> tuple[np.ndarray, str]:
    """Rows ``rows`` of the GGUF's ``token_embd.weight`` as float32 (len(rows), n_embd), and the
    tensor's type name. Raises ValueError for a tensor type not read here (the K-quants)."""
    with open(gguf, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        r = _Reader(mm)
        if r.take("4s") != b"GGUF":
            raise ValueError(f"{gguf}: not a GGUF file")
        version, n_tensors, n_kv = r.take("IQQ")
        if version < 2:
            raise ValueError(f"{gguf}: GGUF version {version} is not read here")
        alignment = 32
        for _ in range(n_kv):
            key, kind = r.string(), r.take("I")
            value = r.value(kind)
            if key == b"general.alignment":
                alignment = int(value)
        found = None
        for _ in range(n_tensors):
            name, n_dims = r.string(), r.take("I")
            dims = [r.take("Q") for _ in range(n_dims)]
            kind, offset = r.take("I"), r.take("Q")
            if name == b"token_embd.weight":
                found = (dims, kind, offset)
        if found is None:
            raise ValueError(f"{gguf}: no token_embd.weight tensor")
        data_start = (r.pos + alignment - 1) // alignment * alignment
        (n_embd, n_rows), kind, offset = found[0][:2], found[1], found[2]
        if kind not in _GGML_BLOCKS:
            raise ValueError(f"{gguf}: token_embd.weight has ggml type {kind}, not read here")
        per_block, block_bytes = _GGML_BLOCKS[kind]
        row_bytes = n_embd // per_block * block_bytes
        table = np.frombuffer(mm, dtype=np.uint8, count=n_rows * row_bytes, offset=data_start + offset).reshape(n_rows, row_bytes)
        idx = np.asarray(rows, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
            raise IndexError(f"token ids must be in [0, {n_rows})")
        out = _dequantize(table[idx].copy(), kind, n_embd).copy()
        del table  # the mmap closes only once no array views it
        return out, _GGML_NAMES[kind]


def token_embedding_norm(gguf: Path, n_vocab: int, sample: int = 4096) -> EmbeddingNorm:
    """The median L2 norm of ``sample`` evenly spaced token-embedding rows of the GGUF, or the
    documented ``FALLBACK_EMBEDDING_NORM`` if the table's type is not read here."""
    rows = np.unique(np.linspace(0, n_vocab - 1, num=min(sample, n_vocab)).astype(np.int64))
    try:
        emb, kind = read_token_embeddings(gguf, rows)
    except (ValueError, OSError) as exc:
        logger.warning("token embeddings of {} not read ({}); soft tokens use the fixed norm {}", gguf, exc, FALLBACK_EMBEDDING_NORM)
        return EmbeddingNorm(FALLBACK_EMBEDDING_NORM, "fixed", "unknown", 0)
    return EmbeddingNorm(float(np.median(np.linalg.norm(emb, axis=1))), "gguf", kind, len(rows))


# --- examples --------------------------------------------------------------------------------


def as_pair(example: Any) -> tuple[str, str]:
    """(input, output) from a pair, a mapping with text/answer (or input/output), or an object
    with ``text`` and ``answer`` attributes (kgopt's chunk examples)."""
    if isinstance(example, (tuple, list)) and len(example) == 2:
        return str(example[0]), str(example[1])
    if isinstance(example, dict):
        if "text" in example:
            return str(example["text"]), str(example["answer"])
        return str(example["input"]), str(example["output"])
    return str(example.text), str(example.answer)


def examples_digest(examples: Iterable[Any]) -> str:
    """SHA-256 of the (input, output) pairs as JSON: names the examples a trial was written from."""
    pairs = [list(as_pair(ex)) for ex in examples]
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def writer_prompt(examples: Sequence[Any], lang: str, max_example_chars: int = 240) -> str:
    """The text after the soft tokens (up to the assistant's answer prefix), for ``lang``."""
    if lang not in _TEMPLATES:
        raise ConfigError(f"the instruction writer speaks {', '.join(_TEMPLATES)}, not {lang!r}")
    t = _TEMPLATES[lang]
    pairs = [t["pair"].format(input=_clip(i, max_example_chars), output=_clip(o, max_example_chars)) for i, o in map(as_pair, examples)]
    if not pairs:
        raise ConfigError("the instruction writer needs at least one (input, output) example")
    return "\n" + t["intro"] + "\n\n" + "\n\n".join(pairs) + "\n\n" + t["ask"] + _TURN_CLOSE + t["answer"]


def echoes_input(text: str, examples: Sequence[Any], lang: str) -> bool:
    """Does ``text`` copy an example input: a long span of one (40 characters, zh 20), or all of
    it a part of one? A small writer sometimes answers by repeating the first input: that is no
    instruction."""
    span = 20 if lang == "zh" else 40
    flat = " ".join(text.split()).lower().removeprefix(_TEMPLATES[lang]["lead"])
    inputs = [" ".join(as_pair(ex)[0].split()).lower() for ex in examples]
    if len(flat) < span:
        return len(flat) >= span // 4 and any(flat in src for src in inputs)
    return any(flat[i : i + span] in src for src in inputs for i in range(0, len(flat) - span + 1, 4))


def clean_instruction(raw: str, lang: str) -> str:
    """The generated continuation as an instruction: first line, no quotes, capitalised (en),
    after the part of the answer prefix that belongs to it (zh: 请); "" if nothing was written."""
    text = raw.strip().split("\n", 1)[0].strip().strip('"“”「」\'').strip()
    if not text:
        return ""
    if lang == "en":
        text = text[0].upper() + text[1:]
    return _TEMPLATES[lang]["lead"] + text


# --- the writer (white-box model) --------------------------------------------------------------


class Writer(Protocol):
    """What ``search_instructions`` needs from a writer (tests use a stub)."""

    d: int

    def write(self, z: np.ndarray, examples: Sequence[Any], lang: str) -> str: ...

    def describe(self) -> dict[str, Any]: ...


_backend_ready = False


class InstructionWriter:
    """The embedded GGUF model, loaded once, writing an instruction from a soft prompt ``z``.

    Low-level llama-cpp-python: one context (n_threads threads, no KV reuse between calls). A
    ``write`` is three decodes (the ChatML turn opener as tokens, the soft tokens as an
    embedding batch, the examples and question as tokens) and then greedy decoding, one token a
    step, up to ``max_new_tokens`` or the end of the first line. One writer serves one thread
    at a time (a single llama.cpp context).
    """

    def __init__(self, model=None, *, d: int = DEFAULT_D, n_soft: int = DEFAULT_N_SOFT, projection_seed: int = 0, n_threads: int = 1,
                 n_ctx: int = 2048, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, max_example_chars: int = 240):
        from kgopt.clients.weights import ensure_gguf, selected_model

        try:
            import llama_cpp
        except ImportError:
            raise ConfigError("the instruction writer runs the embedded model: pip install -e '.[local]' (scripts/setup.sh)") from None
        self._ll = llama_cpp
        self.model = model or selected_model()
        self.gguf = ensure_gguf(self.model)  # size and SHA-256 checked
        self.d, self.n_soft, self.n_threads = d, n_soft, n_threads
        self.max_new_tokens, self.max_example_chars = max_new_tokens, max_example_chars
        self._model = self._ctx = None
        self.last_raw: str | None = None
        self._load(n_ctx)
        self.norm = token_embedding_norm(self.gguf, self.n_vocab)
        self.projection = Projection.make(projection_seed, d, n_soft, self.n_embd, self.norm.norm)

    def _load(self, n_ctx: int) -> None:
        global _backend_ready
        ll = self._ll
        try:
            from llama_cpp._logger import set_verbose

            set_verbose(False)  # llama.cpp's load chatter goes to stderr otherwise
        except ImportError:  # pragma: no cover - another layout of llama_cpp
            pass
        if not _backend_ready:
            ll.llama_backend_init()
            _backend_ready = True
        mparams = ll.llama_model_default_params()
        mparams.n_gpu_layers = 0
        self._model = ll.llama_model_load_from_file(str(self.gguf).encode(), mparams)
        if not self._model:
            raise ConfigError(f"llama.cpp could not load {self.gguf}")
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = 512
        cparams.n_seq_max = 1
        cparams.n_threads = cparams.n_threads_batch = self.n_threads
        cparams.embeddings = False
        self._ctx = ll.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            self.close()
            raise ConfigError(f"llama.cpp could not create a context for {self.gguf}")
        self.n_ctx = n_ctx
        self._vocab = ll.llama_model_get_vocab(self._model)
        self.n_vocab = ll.llama_vocab_n_tokens(self._vocab)
        n_embd_inp = getattr(ll, "llama_model_n_embd_inp", None)
        self.n_embd = int(n_embd_inp(self._model) if n_embd_inp else ll.llama_model_n_embd(self._model))

    def close(self) -> None:
        ll = getattr(self, "_ll", None)
        if ll is None:
            return
        if self._ctx:
            ll.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            ll.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> "InstructionWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- llama.cpp plumbing ----------------------------------------------------------------------

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        ll, raw = self._ll, text.encode("utf-8")
        cap = len(raw) + 8
        buf = (ll.llama_token * cap)()
        n = ll.llama_tokenize(self._vocab, raw, len(raw), buf, cap, False, special)
        if n < 0:
            cap = -n
            buf = (ll.llama_token * cap)()
            n = ll.llama_tokenize(self._vocab, raw, len(raw), buf, cap, False, special)
        return list(buf[:n])

    def _piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    def _decode(self, batch, what: str) -> None:
        rc = self._ll.llama_decode(self._ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed on {what} (code {rc})")

    def _eval_tokens(self, tokens: Sequence[int], n_past: int, logits_last: bool) -> int:
        ll = self._ll
        step = 512
        for start in range(0, len(tokens), step):
            chunk = tokens[start : start + step]
            batch = ll.llama_batch_init(len(chunk), 0, 1)
            try:
                batch.n_tokens = len(chunk)
                for i, tok in enumerate(chunk):
                    batch.token[i] = tok
                    batch.pos[i] = n_past + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = int(logits_last and start + i == len(tokens) - 1)
                self._decode(batch, "tokens")
            finally:
                ll.llama_batch_free(batch)
            n_past += len(chunk)
        return n_past

    def _eval_embeddings(self, soft: np.ndarray, n_past: int) -> int:
        """Decode ``soft`` (n, n_embd float32) as input embeddings: llama_batch_init(n, n_embd, 1),
        the vectors copied into ``batch.embd`` (``batch.token`` is NULL for such a batch)."""
        ll = self._ll
        n = soft.shape[0]
        batch = ll.llama_batch_init(n, self.n_embd, 1)
        try:
            batch.n_tokens = n
            ctypes.memmove(batch.embd, soft.ctypes.data, soft.nbytes)
            for i in range(n):
                batch.pos[i] = n_past + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 0
            self._decode(batch, "soft tokens")
        finally:
            ll.llama_batch_free(batch)
        return n_past + n

    def _argmax(self) -> int:
        logits = np.ctypeslib.as_array(self._ll.llama_get_logits_ith(self._ctx, -1), shape=(self.n_vocab,))
        return int(np.argmax(logits))

    def _reset(self) -> None:
        self._ll.llama_memory_clear(self._ll.llama_get_memory(self._ctx), True)

    # -- the public surface ------------------------------------------------------------------------

    def soft_tokens(self, z: np.ndarray) -> np.ndarray:
        return self.projection(z)

    def generate(self, prefix_embeddings: np.ndarray | None, prompt: str) -> str:
        """Greedy continuation of [turn opener] + prefix_embeddings + ``prompt`` (raw text, first line)."""
        self._reset()
        n_past = self._eval_tokens(self.tokenize(_TURN_OPEN), 0, False)
        if prefix_embeddings is not None and len(prefix_embeddings):
            n_past = self._eval_embeddings(np.ascontiguousarray(prefix_embeddings, dtype=np.float32), n_past)
        # Only the ChatML markers are parsed as special tokens: an example text that contains
        # "<|im_end|>" stays text (examples are data, not markup).
        head, sep, answer = prompt.rpartition(_TURN_CLOSE)
        if sep:
            body = self.tokenize(head, special=False) + self.tokenize(_TURN_CLOSE) + self.tokenize(answer, special=False)
        else:
            body = self.tokenize(prompt, special=False)
        if n_past + len(body) + self.max_new_tokens > self.n_ctx:
            raise ConfigError(f"the writer prompt is {n_past + len(body)} tokens; with {self.max_new_tokens} to write it exceeds n_ctx {self.n_ctx}")
        n_past = self._eval_tokens(body, n_past, True)
        out = b""
        for _ in range(self.max_new_tokens):
            tok = self._argmax()
            if self._ll.llama_vocab_is_eog(self._vocab, tok):
                break
            out += self._piece(tok)
            if b"\n" in out and out.strip():
                break
            n_past = self._eval_tokens([tok], n_past, True)
        return out.decode("utf-8", errors="ignore")

    def write(self, z: np.ndarray, examples: Sequence[Any], lang: str) -> str:
        """The instruction the model writes for soft prompt ``z``, ``examples`` and ``lang``; "" when
        it wrote nothing or copied an example input (``last_raw`` keeps what it wrote)."""
        prompt = writer_prompt(examples, lang, self.max_example_chars)
        self.last_raw = self.generate(self.soft_tokens(z), prompt)
        text = clean_instruction(self.last_raw, lang)
        return "" if echoes_input(text, examples, lang) else text

    def describe(self) -> dict[str, Any]:
        """Everything but z and the examples that a written instruction depends on."""
        return {
            "writer": "InstructionWriter",
            "model": {"key": self.model.key, "filename": self.model.filename, "sha256": self.model.sha256},
            "prompt_version": PROMPT_VERSION,
            "prompt_digest": _template_digest(),
            "d": self.d,
            "n_soft": self.n_soft,
            "projection": self.projection.describe(),
            "embedding_norm": self.norm.describe(),
            "decoding": {"kind": "greedy", "max_new_tokens": self.max_new_tokens, "stop": "end of first line or end of generation"},
            "max_example_chars": self.max_example_chars,
            "n_threads": self.n_threads,
            "llama_cpp": getattr(self._ll, "__version__", "unknown"),
        }


# --- the search ------------------------------------------------------------------------------


@dataclass
class InstructZeroTrial:
    number: int
    z: list[float]
    instruction: str
    score: float | None
    duplicate_of: int | None = None  # an earlier trial wrote the same text: its score was reused


@dataclass
class InstructZeroResult:
    best: InstructZeroTrial
    trials: list[InstructZeroTrial]
    writer: dict[str, Any]
    lang: str
    examples_sha256: str
    n_examples: int
    sampler: str
    seed: int
    n_trials: int
    score_calls: int  # how often score() ran (the black-box cost)
    study_name: str | None = None

    @property
    def instruction(self) -> str:
        return self.best.instruction

    @property
    def score(self) -> float | None:
        return self.best.score

    @property
    def z(self) -> list[float]:
        return self.best.z

    def candidates(self, k: int = 1) -> list[str]:
        """The ``k`` best distinct non-empty instructions, best first."""
        seen, out = set(), []
        for t in sorted((t for t in self.trials if t.score is not None), key=lambda t: (-t.score, t.number)):
            if t.instruction and t.instruction not in seen:
                seen.add(t.instruction)
                out.append(t.instruction)
        return out[:k]

    def to_json(self) -> dict[str, Any]:
        """For the manifest: what rebuilds the best instruction (z, projection seed, d, n_soft,
        model SHA-256, prompt version, examples digest) and every trial."""
        return {
            "method": "instructzero",
            "prompt_version": self.writer.get("prompt_version", PROMPT_VERSION),
            "writer": self.writer,
            "lang": self.lang,
            "examples_sha256": self.examples_sha256,
            "n_examples": self.n_examples,
            "sampler": self.sampler,
            "seed": self.seed,
            "n_trials": self.n_trials,
            "score_calls": self.score_calls,
            "study_name": self.study_name,
            "best": asdict(self.best),
            "trials": [asdict(t) for t in self.trials],
        }


def z_names(d: int) -> list[str]:
    return [f"z_{i}" for i in range(d)]


def _gp_available() -> bool:
    try:
        import scipy  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def make_sampler(kind: str, seed: int, n_trials: int, n_startup_trials: int | None = None) -> tuple[optuna.samplers.BaseSampler, str]:
    """The Optuna sampler for ``kind`` ("gp" or "cmaes") and the name recorded for it.

    "gp" is Optuna's GPSampler where torch and scipy are installed, else ``NumpyGPSampler``
    (a small GP with expected improvement, numpy only); "cmaes" is Optuna's CmaEsSampler (needs
    the ``cmaes`` package) starting from z = 0.
    """
    startup = n_startup_trials if n_startup_trials is not None else max(2, min(10, n_trials // 3))
    if kind == "gp":
        if _gp_available():
            with warnings.catch_warnings():  # deterministic_objective is "experimental" in Optuna 4-5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, deterministic_objective=True), "optuna.GPSampler"
        logger.info("torch/scipy not installed: the GP search uses kgopt's numpy GP sampler")
        return NumpyGPSampler(seed=seed, n_startup_trials=startup), "kgopt.NumpyGPSampler"
    if kind == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError("sampler='cmaes' needs the cmaes package: pip install cmaes") from None
        # Its default start is the box's centre (z = 0) with sigma0 = range / 6.
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=0, warn_independent_sampling=False), "optuna.CmaEsSampler"
    raise ConfigError(f"unknown sampler {kind!r}: choose 'gp' or 'cmaes'")


def search_instructions(writer: Writer, score: Callable[[str], float], d: int | None = None, n_trials: int = 12, seed: int = 0,
                        sampler: str = "gp", *, examples: Sequence[Any], lang: str, storage: str | optuna.storages.BaseStorage | None = None,
                        study_name: str | None = None, n_startup_trials: int | None = None, empty_score: float = 0.0) -> InstructZeroResult:
    """Search z in [-1, 1]^d for the instruction ``writer`` writes that ``score`` rates highest.

    Each trial suggests ``z_0 .. z_{d-1}``, writes the instruction from ``z``, ``examples`` and
    ``lang``, and records on the trial (user attrs) ``z``, the projection seed, the instruction
    and its score. ``score`` is called once per distinct instruction text (a repeat reuses the
    earlier score, ``duplicate_of``); an empty instruction scores ``empty_score`` without a
    call. With ``storage`` (and ``study_name``) the study persists and a re-run resumes:
    finished trials count towards ``n_trials`` and their scores are not asked again. The study
    records the writer's setting, the language and the examples digest, and refuses a re-run
    with others.
    """
    d = writer.d if d is None else d
    if d != writer.d:
        raise ConfigError(f"d={d} but the writer's projection has d={writer.d}")
    if n_trials < 1:
        raise ConfigError("n_trials must be >= 1")
    examples = list(examples)
    info = writer.describe()
    projection_seed = (info.get("projection") or {}).get("seed", info.get("projection_seed"))
    names = z_names(d)
    chosen, sampler_name = make_sampler(sampler, seed, n_trials, n_startup_trials)
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", sampler=chosen, load_if_exists=storage is not None)
    setting = {"writer": info, "lang": lang, "examples_sha256": examples_digest(examples)}
    recorded = study.user_attrs.get("instructzero")
    if recorded is None:
        study.set_user_attr("instructzero", setting)
    elif recorded != json.loads(json.dumps(setting)):
        changed = [k for k in setting if recorded.get(k) != json.loads(json.dumps(setting[k]))]
        raise ConfigError(f"study {study.study_name!r} searched with another {', '.join(changed)}: its trials do not rate this search; use another study_name")
    complete = optuna.trial.TrialState.COMPLETE
    seen: dict[str, tuple[int, float]] = {}  # instruction -> (trial, score)
    for t in study.get_trials(deepcopy=False, states=(complete,)):
        if "instruction" in t.user_attrs and t.user_attrs["instruction"] not in seen:
            seen[t.user_attrs["instruction"]] = (t.number, t.value)
    calls = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal calls
        z = np.array([trial.suggest_float(name, Z_LOW, Z_HIGH) for name in names])
        text = writer.write(z, examples, lang)
        trial.set_user_attr("z", [float(v) for v in z])
        trial.set_user_attr("projection_seed", projection_seed)
        trial.set_user_attr("instruction", text)
        raw = getattr(writer, "last_raw", None)
        if isinstance(raw, str):
            trial.set_user_attr("raw", raw[:500])  # what the writer wrote, before cleaning
        if not text.strip():
            value = float(empty_score)
        elif text in seen:
            trial.set_user_attr("duplicate_of", seen[text][0])
            value = seen[text][1]
        else:
            calls += 1
            value = float(score(text))
            seen[text] = (trial.number, value)
        trial.set_user_attr("score", value)
        return value

    remaining = n_trials - len(study.get_trials(deepcopy=False, states=(complete,)))
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=())
    trials = [
        InstructZeroTrial(t.number, list(t.user_attrs["z"]), t.user_attrs["instruction"], t.value, t.user_attrs.get("duplicate_of"))
        for t in study.get_trials(deepcopy=False, states=(complete,))
    ]
    best = max(trials, key=lambda t: (t.score, -t.number))
    logger.info("InstructZero: {} trials, {} scored, best {} (trial {}): {!r}", len(trials), calls, best.score, best.number, best.instruction)
    return InstructZeroResult(best, trials, info, lang, setting["examples_sha256"], len(examples), sampler_name, seed, n_trials, calls,
                              study.study_name if storage is not None else None)


def rebuild_instruction(writer: Writer, record: dict[str, Any], examples: Sequence[Any], trial: int | None = None) -> str:
    """Write again the instruction of ``record`` (an ``InstructZeroResult.to_json()``): its best
    trial, or trial number ``trial``. Refuses a writer (model file, prompt, d, n_soft, projection,
    norm) or examples other than those recorded."""
    want, have = record["writer"], writer.describe()
    for key in ("model", "prompt_version", "prompt_digest", "d", "n_soft", "projection", "embedding_norm", "decoding", "max_example_chars"):
        if want.get(key) != have.get(key):
            raise ConfigError(f"this writer differs from the recorded one in {key}: {have.get(key)!r} != {want.get(key)!r}")
    if examples_digest(examples) != record["examples_sha256"]:
        raise ConfigError("these are not the examples the instruction was written from (examples_sha256 differs)")
    entry = record["best"] if trial is None else next(t for t in record["trials"] if t["number"] == trial)
    return writer.write(np.array(entry["z"]), examples, record["lang"])


# --- a GP sampler without torch --------------------------------------------------------------


class NumpyGPSampler(optuna.samplers.BaseSampler):
    """Bayesian optimisation for a box of floats with numpy alone: a Matern-5/2 GP on the
    finished trials (hyperparameters by marginal likelihood over a small grid) and the next
    point by expected improvement over seeded random and local candidates. The first
    ``n_startup_trials`` are random. For kgopt's instruction search when Optuna's GPSampler
    (torch, scipy) is not installed; deterministic for a seed and the same scores."""

    def __init__(self, seed: int = 0, n_startup_trials: int = 4, n_candidates: int = 2048):
        self.seed = seed
        self.n_startup_trials = n_startup_trials
        self.n_candidates = n_candidates
        self._random = optuna.samplers.RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, optuna.distributions.BaseDistribution]:
        space = optuna.search_space.intersection_search_space(study.get_trials(deepcopy=False))
        return {k: v for k, v in space.items() if isinstance(v, optuna.distributions.FloatDistribution) and not v.log}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        if not search_space:
            return {}
        done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if all(k in t.params for k in search_space)]
        if len(done) < self.n_startup_trials:
            return {}
        names = sorted(search_space)
        low = np.array([search_space[k].low for k in names])
        high = np.array([search_space[k].high for k in names])
        x = (np.array([[t.params[k] for k in names] for t in done]) - low) / (high - low)
        y = np.array([t.value for t in done], dtype=float)
        if study.direction == optuna.study.StudyDirection.MINIMIZE:
            y = -y
        rng = np.random.default_rng([self.seed, trial.number])
        best = self._next_point(x, y, rng)
        return {k: float(low[i] + best[i] * (high[i] - low[i])) for i, k in enumerate(names)}

    def _next_point(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, dim = x.shape
        mu, sd = y.mean(), y.std()
        yn = (y - mu) / sd if sd > 0 else y - mu
        fit = min((_gp_fit(x, yn, ls, noise) for ls in (0.1, 0.2, 0.4, 0.8, 1.6) for noise in (1e-6, 1e-3, 1e-1)), key=lambda f: f[0])
        _, ls, chol, alpha = fit
        top = x[np.argsort(-yn, kind="stable")[: min(5, n)]]
        per = self.n_candidates // (4 * len(top)) + 1
        local = np.clip(np.repeat(top, per, axis=0) + rng.normal(0.0, 0.08, (len(top) * per, dim)), 0.0, 1.0)
        cand = np.vstack([rng.random((self.n_candidates, dim)), local])
        k = _matern52(cand, x, ls)
        mean = k @ alpha
        v = np.linalg.solve(chol, k.T)
        var = np.clip(1.0 - np.sum(v * v, axis=0), 1e-12, None)
        s = np.sqrt(var)
        u = (mean - yn.max()) / s
        ei = s * (u * _norm_cdf(u) + np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi))
        return cand[int(np.argmax(ei))]


def _matern52(a: np.ndarray, b: np.ndarray, ls: float) -> np.ndarray:
    r = np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0)) / ls
    s5 = math.sqrt(5.0) * r
    return (1.0 + s5 + 5.0 / 3.0 * r * r) * np.exp(-s5)


def _gp_fit(x: np.ndarray, y: np.ndarray, ls: float, noise: float):
    """(negative log marginal likelihood, lengthscale, Cholesky factor, alpha) of a unit-variance GP."""
    k = _matern52(x, x, ls * math.sqrt(x.shape[1])) + (noise + 1e-8) * np.eye(len(x))
    chol = np.linalg.cholesky(k)
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
    nll = 0.5 * float(y @ alpha) + float(np.log(np.diag(chol)).sum())
    return nll, ls * math.sqrt(x.shape[1]), chol, alpha


def _norm_cdf(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(u / math.sqrt(2.0)))
