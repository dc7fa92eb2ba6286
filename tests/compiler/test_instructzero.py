"""InstructZero-style instruction search (kgopt/compiler/instructzero.py).

The search runs against a stub writer (same interface as ``InstructionWriter``, deterministic,
no model): samplers, what each trial records, the best chosen, reproducibility, resuming. The
projection and the GGUF token-embedding reader are checked on numbers and on a small GGUF file
written here. One ``llm`` test runs the real embedded model.
"""

from __future__ import annotations

import struct

import numpy as np
import optuna
import pytest

from kgopt.compiler import instructzero as iz
from kgopt.errors import ConfigError

EXAMPLES = [
    ("Alan Turing worked at the University of Manchester.", '{"person": ["Alan Turing"], "university": ["University of Manchester"]}'),
    ("Python was created by Guido van Rossum.", '{"person": ["Guido van Rossum"], "programlang": ["Python"]}'),
]


class StubWriter:
    """Writes one of nine texts, chosen by z_0 (so different z often write the same text)."""

    def __init__(self, d: int = 4, projection_seed: int = 7):
        self.d = d
        self.projection_seed = projection_seed
        self.calls: list[list[float]] = []
        self.last_raw = None

    def variant(self, z) -> int:
        return int(round((float(z[0]) + 1.0) * 4))  # 0..8

    def write(self, z, examples, lang) -> str:
        assert len(examples) == len(EXAMPLES) and lang == "en"
        self.calls.append([float(v) for v in z])
        k = self.variant(z)
        self.last_raw = f" extract the entities (variant {k})\n"
        return "" if k == 0 else f"Extract the entities (variant {k})"

    def describe(self) -> dict:
        return {"writer": "stub", "prompt_version": iz.PROMPT_VERSION, "d": self.d, "n_soft": 2,
                "projection": {"seed": self.projection_seed}, "model": {"sha256": "0" * 64}}


def variant_score(text: str) -> float:
    k = int(text.rsplit(" ", 1)[1].rstrip(")"))
    return round(1.0 - abs(k - 6) / 8.0, 6)


class CountingScore:
    def __init__(self):
        self.asked: list[str] = []

    def __call__(self, text: str) -> float:
        self.asked.append(text)
        return variant_score(text)


def _samplers():
    out = ["gp"]
    try:
        import cmaes  # noqa: F401

        out.append("cmaes")
    except ImportError:
        out.append(pytest.param("cmaes", marks=pytest.mark.skip(reason="the cmaes package is not installed")))
    return out


# --- the search --------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", _samplers())
def test_search_records_z_seed_text_and_picks_the_best(sampler):
    writer, score = StubWriter(), CountingScore()
    storage = optuna.storages.InMemoryStorage()
    result = iz.search_instructions(writer, score, d=4, n_trials=10, seed=3, sampler=sampler, examples=EXAMPLES, lang="en",
                                    storage=storage, study_name="iz")
    assert result.sampler.endswith("GPSampler" if sampler == "gp" else "CmaEsSampler")
    assert len(result.trials) == 10
    best_score = max(t.score for t in result.trials)
    assert result.score == best_score and result.best.score == best_score
    assert result.best.number == min(t.number for t in result.trials if t.score == best_score)  # ties: the first
    # Each trial records z, the projection seed, the text and the score (user attrs).
    study = optuna.load_study(study_name="iz", storage=storage)
    for frozen, rec in zip(study.trials, result.trials):
        z = [frozen.params[f"z_{i}"] for i in range(4)]
        assert frozen.user_attrs["z"] == z == rec.z
        assert all(-1.0 <= v <= 1.0 for v in z)
        assert frozen.user_attrs["projection_seed"] == 7
        assert frozen.user_attrs["instruction"] == rec.instruction == writer.write(np.array(z), EXAMPLES, "en")
        assert frozen.user_attrs["score"] == frozen.value == rec.score
        assert frozen.user_attrs["raw"].startswith(" extract the entities")
    # score() ran once per distinct non-empty text; repeats reuse the first trial's score.
    texts = [t.instruction for t in result.trials if t.instruction]
    assert sorted(score.asked) == sorted(set(texts)) and result.score_calls == len(score.asked)
    for t in result.trials:
        if t.duplicate_of is not None:
            first = result.trials[t.duplicate_of]
            assert first.instruction == t.instruction and first.score == t.score and first.duplicate_of is None
        if not t.instruction:
            assert t.score == 0.0  # empty_score, no call


@pytest.mark.parametrize("sampler", _samplers())
def test_search_is_reproducible_with_a_seed(sampler):
    def run(seed):
        r = iz.search_instructions(StubWriter(), variant_score, n_trials=8, seed=seed, sampler=sampler, examples=EXAMPLES, lang="en")
        return [(t.z, t.instruction, t.score) for t in r.trials]

    first = run(11)
    assert run(11) == first
    assert run(12) != first


def test_the_gp_search_beats_its_random_start():
    """After the random start the GP proposes points near the best variant (6, z_0 near 0.5)."""
    r = iz.search_instructions(StubWriter(), variant_score, n_trials=14, seed=0, sampler="gp", examples=EXAMPLES, lang="en",
                               n_startup_trials=4)
    start = max(t.score for t in r.trials[:4])
    assert r.score >= start and r.score >= 0.875  # variant 5, 6 or 7
    assert "variant" in r.instruction


def test_search_resumes_from_its_storage_without_asking_again():
    storage, score = optuna.storages.InMemoryStorage(), CountingScore()
    kwargs = dict(sampler="gp", examples=EXAMPLES, lang="en", storage=storage, study_name="resume", seed=5)
    first = iz.search_instructions(StubWriter(), score, n_trials=5, **kwargs)
    asked = list(score.asked)
    again = iz.search_instructions(StubWriter(), score, n_trials=9, **kwargs)
    assert len(first.trials) == 5 and len(again.trials) == 9
    assert [t.z for t in again.trials[:5]] == [t.z for t in first.trials]
    new = score.asked[len(asked):]
    assert not set(new) & set(asked)  # a text scored in the first run is not scored again
    assert again.study_name == "resume"
    with pytest.raises(ConfigError, match="examples_sha256"):
        iz.search_instructions(StubWriter(), score, n_trials=10, **(kwargs | {"examples": EXAMPLES[::-1]}))
    with pytest.raises(ConfigError, match="writer"):
        iz.search_instructions(StubWriter(projection_seed=9), score, n_trials=10, **kwargs)


def test_result_to_json_holds_what_rebuilds_the_instruction():
    writer = StubWriter()
    r = iz.search_instructions(writer, variant_score, n_trials=6, seed=1, sampler="gp", examples=EXAMPLES, lang="en")
    data = r.to_json()
    import json

    json.dumps(data)  # plain JSON for the manifest
    assert data["method"] == "instructzero" and data["prompt_version"] == iz.PROMPT_VERSION
    assert data["writer"]["d"] == 4 and data["writer"]["n_soft"] == 2 and data["writer"]["projection"]["seed"] == 7
    assert data["writer"]["model"]["sha256"] == "0" * 64
    assert data["examples_sha256"] == iz.examples_digest(EXAMPLES) and data["n_examples"] == 2 and data["lang"] == "en"
    assert data["best"]["z"] == r.z and data["best"]["instruction"] == r.instruction
    assert len(data["trials"]) == 6 and data["sampler"] == r.sampler and data["seed"] == 1
    assert iz.rebuild_instruction(writer, data, EXAMPLES) == r.instruction
    assert iz.rebuild_instruction(writer, data, EXAMPLES, trial=2) == r.trials[2].instruction
    with pytest.raises(ConfigError, match="examples"):
        iz.rebuild_instruction(writer, data, EXAMPLES[:1])
    with pytest.raises(ConfigError, match="projection"):
        iz.rebuild_instruction(StubWriter(projection_seed=8), data, EXAMPLES)
    assert r.candidates(1) == [r.instruction]
    assert sorted(r.candidates(100)) == sorted({t.instruction for t in r.trials if t.instruction})


def test_search_refuses_bad_arguments():
    with pytest.raises(ConfigError, match="d=5"):
        iz.search_instructions(StubWriter(d=4), variant_score, d=5, n_trials=2, examples=EXAMPLES, lang="en")
    with pytest.raises(ConfigError, match="unknown sampler"):
        iz.search_instructions(StubWriter(), variant_score, n_trials=2, sampler="tpe", examples=EXAMPLES, lang="en")


def test_numpy_gp_sampler_finds_the_optimum_of_a_smooth_function():
    def f(trial):
        x, y = trial.suggest_float("x", -1, 1), trial.suggest_float("y", -1, 1)
        return -((x - 0.3) ** 2) - (y + 0.5) ** 2

    def run():
        study = optuna.create_study(direction="maximize", sampler=iz.NumpyGPSampler(seed=2, n_startup_trials=4, n_candidates=512))
        study.optimize(f, n_trials=16)
        return study

    study = run()
    assert study.best_value > -0.02
    assert [t.params for t in run().trials] == [t.params for t in study.trials]  # deterministic


# --- the projection ----------------------------------------------------------------------------


def test_projection_is_seeded_shaped_and_scaled_to_the_embedding_norm():
    p = iz.Projection.make(seed=4, d=8, n_soft=5, n_embd=896, norm=0.5)
    assert p.matrix.shape == (5, 896, 8)
    np.testing.assert_array_equal(p.matrix, iz.Projection.make(4, 8, 5, 896, 0.5).matrix)
    assert not np.allclose(p.matrix, iz.Projection.make(5, 8, 5, 896, 0.5).matrix)
    z = np.random.default_rng(0).uniform(-1, 1, 8)
    soft = p(z)
    assert soft.shape == (5, 896) and soft.dtype == np.float32 and soft.flags.c_contiguous
    # A typical z (uniform in the cube) gives soft tokens with the target norm.
    zs = np.random.default_rng(1).uniform(-1, 1, (2000, 8))
    norms = np.linalg.norm(np.stack([p(v) for v in zs]), axis=-1)
    assert abs(norms.mean() - 0.5) < 0.03 * 0.5
    # Linear in z: its length is kept, z = 0 is a row of null vectors.
    np.testing.assert_allclose(p(2 * z), 2 * soft, rtol=1e-5)
    assert not p(np.zeros(8)).any()
    # The norm only scales: the same seed gives the same directions.
    np.testing.assert_allclose(iz.Projection.make(4, 8, 5, 896, 1.0)(z), 2 * soft, rtol=1e-5)
    with pytest.raises(ValueError):
        p(np.zeros(7))
    with pytest.raises(ValueError):
        p(np.full(8, np.nan))
    assert p.describe()["seed"] == 4 and p.describe()["norm"] == 0.5


# --- the GGUF token-embedding reader -----------------------------------------------------------


def _gguf_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _q5_0(rows: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Q5_0 blocks of ``rows`` (n, k*32) and the values they decode to."""
    out, decoded = bytearray(), []
    for row in rows:
        vals = []
        for block in row.reshape(-1, 32):
            d = np.float16(max(np.abs(block).max(), 1e-3) / 15)
            q = np.clip(np.round(block / np.float32(d)) + 16, 0, 31).astype(np.uint32)
            qh = int(sum(int((q[j] >> 4) & 1) << j for j in range(32)))
            qs = bytes(int((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4)) for j in range(16))
            out += np.float16(d).tobytes() + struct.pack("<I", qh) + qs
            vals.append((q.astype(np.float32) - 16) * np.float32(d))
        decoded.append(np.concatenate(vals))
    return bytes(out), np.stack(decoded)


def _write_gguf(path, kind: int, data: bytes, n_embd: int, n_rows: int) -> None:
    kv = _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string("test")
    kv += _gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + _gguf_string("a") + _gguf_string("b")
    kv += _gguf_string("general.alignment") + struct.pack("<II", 4, 64)
    other = _gguf_string("output_norm.weight") + struct.pack("<IQIQ", 1, n_embd, 0, 0)
    emb = _gguf_string("token_embd.weight") + struct.pack("<IQQIQ", 2, n_embd, n_rows, kind, 64 * ((n_embd * 4 + 63) // 64))
    head = b"GGUF" + struct.pack("<IQQ", 3, 2, 3) + kv + other + emb
    head += b"\0" * (-len(head) % 64)
    body = np.zeros(n_embd, np.float32).tobytes()
    body += b"\0" * (-len(body) % 64)
    path.write_bytes(head + body + data)


def test_token_embeddings_are_read_from_a_gguf_file(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.normal(0, 0.02, (40, 64)).astype(np.float32)
    data, decoded = _q5_0(table)
    q5 = tmp_path / "q5.gguf"
    _write_gguf(q5, 6, data, 64, 40)
    got, kind = iz.read_token_embeddings(q5, [0, 7, 39])
    assert kind == "Q5_0"
    np.testing.assert_array_equal(got, decoded[[0, 7, 39]])
    f16 = tmp_path / "f16.gguf"
    _write_gguf(f16, 1, table.astype(np.float16).tobytes(), 64, 40)
    got, kind = iz.read_token_embeddings(f16, [3])
    assert kind == "F16"
    np.testing.assert_array_equal(got[0], table[3].astype(np.float16).astype(np.float32))
    norm = iz.token_embedding_norm(f16, 40)
    assert norm.source == "gguf" and norm.rows == 40
    assert norm.norm == pytest.approx(float(np.median(np.linalg.norm(table.astype(np.float16).astype(np.float32), axis=1))), rel=1e-6)
    k_quant = tmp_path / "q4k.gguf"
    _write_gguf(k_quant, 12, b"\0" * 4096, 256, 4)
    fixed = iz.token_embedding_norm(k_quant, 4)
    assert fixed.source == "fixed" and fixed.norm == iz.FALLBACK_EMBEDDING_NORM


# --- prompt text -------------------------------------------------------------------------------


@pytest.mark.parametrize("lang, ending", [("en", "The instruction was to"), ("zh", "指令：请")])
def test_writer_prompt_shows_the_examples_and_asks_for_the_instruction(lang, ending):
    text = iz.writer_prompt(EXAMPLES, lang)
    assert text.endswith("<|im_start|>assistant\n" + ending)
    assert "Alan Turing worked" in text and '"programlang": ["Python"]' in text
    assert iz.writer_prompt([("x" * 1000, "y")], lang, max_example_chars=50).count("x") == 49
    with pytest.raises(ConfigError):
        iz.writer_prompt(EXAMPLES, "de")
    with pytest.raises(ConfigError):
        iz.writer_prompt([], lang)


def test_cleaning_and_echo_filter():
    assert iz.clean_instruction(' extract every person name.\nInput: x', "en") == "Extract every person name."
    assert iz.clean_instruction("「抽取人名」\n", "zh") == "请抽取人名"  # after the answer prefix 指令：请
    assert iz.clean_instruction(" \n", "zh") == iz.clean_instruction("", "en") == ""
    assert iz.echoes_input("Alan Turing worked at the University of Manchester, he said", EXAMPLES, "en")
    assert not iz.echoes_input("Extract the people and universities named in the text.", EXAMPLES, "en")
    assert iz.echoes_input("Python was created by Guido", EXAMPLES, "en")  # short, but all of it copied
    assert iz.echoes_input("请鲁迅出生于浙江绍兴。", [("鲁迅出生于浙江绍兴。", "{}")], "zh")
    assert not iz.echoes_input("请抽取文本中的人物和地点。", [("鲁迅出生于浙江绍兴。", "{}")], "zh")
    assert iz.as_pair({"text": "a", "answer": "b"}) == ("a", "b") == iz.as_pair(("a", "b"))


# --- the real model ----------------------------------------------------------------------------


@pytest.mark.llm
def test_the_embedded_model_writes_an_instruction_from_a_soft_prompt():
    """Same z twice: the same text; two far-apart z: different texts (seen: they differ)."""
    with iz.InstructionWriter(d=8, n_soft=5, projection_seed=0, n_threads=1, max_new_tokens=30) as writer:
        assert writer.norm.source == "gguf" and 0.1 < writer.norm.norm < 5
        info = writer.describe()
        assert info["model"]["sha256"] == writer.model.sha256 and info["n_soft"] == 5 and info["projection"]["n_embd"] == writer.n_embd
        z1, z2 = np.full(8, 0.9), np.array([0.9, -0.9] * 4) * -1
        first = writer.write(z1, EXAMPLES, "en")
        assert first.strip(), writer.last_raw
        assert writer.write(z1, EXAMPLES, "en") == first
        second = writer.write(z2, EXAMPLES, "en")
        assert second != first, (first, second)
