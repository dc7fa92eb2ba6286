"""The embedded model's weights: assembled from hash-pinned parts, verified before every use."""

import hashlib
import os

import pytest

from kgopt.clients.weights import EmbeddedModel, assemble, ensure_gguf, selected_model, verify
from kgopt.errors import EndpointError

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]
WHOLE = b"".join(PARTS)


@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    """A model made of three installed part packages laid out like the real wheels."""
    site = tmp_path / "site"
    for i, data in enumerate(PARTS, start=1):
        pkg = site / f"tinypart{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part0{i}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("KGOPT_MODELS_DIR", str(tmp_path / "models"))
    return EmbeddedModel("tiny", "tiny-model", "Tiny", "tiny.gguf", len(WHOLE), hashlib.sha256(WHOLE).hexdigest(),
                         ("tinypart1", "tinypart2", "tinypart3"), "pip install tinypart1..3")


def test_assembled_once_then_verified(tiny_model, tmp_path):
    path = ensure_gguf(tiny_model)
    assert path == tmp_path / "models" / "tiny.gguf" and path.read_bytes() == WHOLE
    assert not list(path.parent.glob("*.tmp"))  # atomic: no temp file left
    mtime = path.stat().st_mtime_ns
    assert ensure_gguf(tiny_model) == path and path.stat().st_mtime_ns == mtime  # not rebuilt


def test_truncated_file_is_an_error_naming_it(tiny_model):
    path = ensure_gguf(tiny_model)
    path.write_bytes(WHOLE[:-3])
    with pytest.raises(EndpointError, match=rf"{path}: 1,783 bytes, but Tiny is 1,786 bytes"):
        ensure_gguf(tiny_model)


def test_corrupted_file_is_an_error_naming_it(tiny_model):
    path = ensure_gguf(tiny_model)
    data = bytearray(WHOLE)
    data[500] ^= 0xFF  # same size, one byte flipped
    path.write_bytes(bytes(data))
    with pytest.raises(EndpointError, match=rf"{path}: SHA-256 [0-9a-f]{{64}} does not match Tiny"):
        verify(path, tiny_model)


def test_wrong_parts_leave_no_file(tiny_model, tmp_path):
    (tmp_path / "site" / "tinypart2" / "data" / "part02.bin").write_bytes(b"x" * 777)
    dest = tmp_path / "models" / "tiny.gguf"
    with pytest.raises(EndpointError, match="reinstall them"):
        assemble(tiny_model, dest)
    assert not dest.exists() and not list(dest.parent.glob("*"))


def test_missing_part_says_how_to_install(tiny_model, monkeypatch):
    missing = EmbeddedModel(**{**tiny_model.__dict__, "packages": ("tinypart1", "no_such_part_pkg")})
    with pytest.raises(EndpointError, match=r"part 2 \(no_such_part_pkg\) is not installed: pip install tinypart1..3"):
        ensure_gguf(missing)


def test_model_selection(monkeypatch):
    assert selected_model().key == "qwen2.5-coder-0.5b"
    monkeypatch.setenv("KGOPT_EMBEDDED_MODEL", "qwen2.5-coder-1.5b")
    assert selected_model().served_name == "qwen2.5-coder-1.5b-instruct"
    monkeypatch.setenv("KGOPT_EMBEDDED_MODEL", "gpt-5")
    with pytest.raises(EndpointError, match="not an embedded model; choose one of: qwen2.5-coder-0.5b, qwen2.5-coder-1.5b"):
        selected_model()


def test_embedded_server_refuses_a_corrupted_real_model_file(tmp_path, monkeypatch):
    """The real default model: a damaged file in the models folder stops the start, naming the file."""
    from kgopt.clients.embedded import EmbeddedServer

    monkeypatch.setenv("KGOPT_MODELS_DIR", str(tmp_path))
    model = selected_model()
    bad = tmp_path / model.filename
    with open(bad, "wb") as fh:  # the right size, wrong bytes (sparse: no 0.5 GB write)
        fh.truncate(model.size)
    with pytest.raises(EndpointError, match=rf"{bad}: SHA-256 .* does not match Qwen2.5-Coder-0.5B-Instruct"):
        EmbeddedServer()
    os.truncate(bad, 1000)
    with pytest.raises(EndpointError, match=rf"{bad}: 1,000 bytes, but Qwen2.5-Coder-0.5B-Instruct \(Q4_K_M\) is 491,400,064 bytes"):
        EmbeddedServer()
