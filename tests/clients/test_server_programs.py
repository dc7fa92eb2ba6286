"""The embedded server's programs (kgopt.clients.embedded): choosing one, checking its binary,
and what each is started with. No model runs here; tests/clients/test_embedded.py starts them."""

import hashlib
import types

import pytest

from kgopt.clients import embedded
from kgopt.clients.embedded import LlamaServer, server_program
from kgopt.errors import EndpointError


def test_the_default_program_and_the_environment_choice(monkeypatch):
    monkeypatch.delenv("KGOPT_EMBEDDED_SERVER", raising=False)
    assert server_program().name == "llama-cpp-python" and server_program().identity == "embedded"
    monkeypatch.setenv("KGOPT_EMBEDDED_SERVER", "llama-server")
    assert server_program() is server_program("llama-server") and server_program().dialect == "openai"
    monkeypatch.setenv("KGOPT_EMBEDDED_SERVER", "vllm")
    with pytest.raises(EndpointError, match="KGOPT_EMBEDDED_SERVER='vllm' is not a server program; choose one of: llama-cpp-python, llama-server"):
        server_program()


def test_a_program_needs_a_name_of_its_own():
    with pytest.raises(ValueError, match="a name of its own"):
        embedded.register_server_program(type("Again", (embedded.ServerProgram,), {"name": "llama-server"}))


def test_llama_server_runs_only_the_binary_its_build_recorded(tmp_path, monkeypatch):
    binary = tmp_path / "bin" / "llama-server"
    monkeypatch.setattr(embedded, "llama_server_binary", lambda: binary)
    with pytest.raises(EndpointError, match="is missing: build it with KGOPT_LLAMA_SERVER=1 bash scripts/setup.sh"):
        LlamaServer().check()
    binary.parent.mkdir()
    binary.write_bytes(b"built by setup.sh")
    with pytest.raises(EndpointError, match="does not match the SHA-256 recorded"):  # no record at all
        LlamaServer().check()
    record = binary.with_name("llama-server.sha256")
    record.write_text(f"{hashlib.sha256(b'built by setup.sh').hexdigest()}  llama-server\n")
    LlamaServer().check()
    binary.write_bytes(b"swapped in later")
    with pytest.raises(EndpointError, match="refusing to run it"):
        LlamaServer().check()


def test_llama_server_starts_on_loopback_with_its_key_in_the_environment_only(monkeypatch, tmp_path, fake_launch):
    monkeypatch.setattr(LlamaServer, "check", lambda self: None)
    monkeypatch.setenv("LLAMA_ARG_HOST", "0.0.0.0")  # llama.cpp reads every flag from LLAMA_ARG_*
    monkeypatch.setenv("LLAMA_ARG_API_KEY_FILE", str(tmp_path / "keys"))  # would add keys of someone else's
    monkeypatch.setenv("LLAMA_API_KEY", "inherited")
    server = fake_launch("llama-server")
    ((cmd, env),) = fake_launch.launched
    assert cmd[0] == str(embedded.llama_server_binary())
    flags = dict(zip(cmd[1::2], cmd[2::2]))
    assert flags["--host"] == "127.0.0.1" and flags["--port"] == "12345" and flags["--alias"] == "qwen" and flags["--flash-attn"] == "off"
    assert not any(server.api_key in arg for arg in cmd) and "--api-key" not in cmd
    assert env["LLAMA_API_KEY"] == server.api_key and len(server.api_key) >= 32
    assert not any(k.upper().startswith("LLAMA_ARG_") for k in env)


def test_the_programs_identity_keeps_caches_and_studies_apart(monkeypatch):
    from kgopt.clients.config import EndpointConfig
    from kgopt.clients.lm import connect

    weights = types.SimpleNamespace(served_name="qwen", filename="w.gguf", size=1, sha256="ab" * 32)
    for name, expected in [("llama-cpp-python", "embedded|w.gguf:1:abababababababab"), ("llama-server", "embedded-llama-server|w.gguf:1:abababababababab")]:
        fake = types.SimpleNamespace(api_base="http://127.0.0.1:9/v1", api_key="k", program=server_program(name), model=weights)
        monkeypatch.setattr(embedded, "shared_embedded_server", lambda fake=fake: fake)
        conn = connect(EndpointConfig(), cache=False)
        assert conn.identity == expected and conn.lm.json_dialect == server_program(name).dialect


def test_an_identity_names_its_server_program():
    assert embedded.program_of_identity("embedded|w.gguf:1:abab") == "llama-cpp-python"
    assert embedded.program_of_identity("embedded-llama-server|w.gguf:1:abab") == "llama-server"
    assert embedded.program_of_identity("http://127.0.0.1:9/v1") is None and embedded.program_of_identity(None) is None
