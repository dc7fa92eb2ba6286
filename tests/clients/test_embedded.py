"""The embedded default for real: llama.cpp serving Qwen2.5-Coder-0.5B on 127.0.0.1, no endpoint set."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.llm

ROOT = Path(__file__).resolve().parents[2]


def _servers() -> list[str]:
    out = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if "kgopt.clients.llama_child" in l and "--host 127.0.0.1" in l]


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KGOPT_") or k == "KGOPT_MODELS_DIR"}
    env["KGOPT_HOME"] = str(tmp_path / "home")
    return env


def test_evaluate_on_the_embedded_model(tmp_path, shared_data):
    before = set(_servers())
    cmd = [sys.executable, "-m", "kgopt", "evaluate", "--task", "NER", "--lang", "en", "--source", "CrossNER_AI",
           "--limit", "2", "--data-dir", str(shared_data), "--out", str(tmp_path / "out"), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path), cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "using the embedded Qwen2.5-Coder-0.5B-Instruct" in res.stderr
    data = json.loads(res.stdout)
    assert data["instances"] == 2 and data["llm"]["calls"] > 0 and data["llm"]["failed_calls"] == 0
    lines = (tmp_path / "out" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    outputs = [json.loads(l)["output"] for l in lines]
    assert any(o.strip() for o in outputs)  # the model really answered
    assert set(_servers()) <= before  # stopped on exit: no orphan server
    # Second run: every answer comes from the response cache, keyed by the weights not the port.
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path), cwd=ROOT, timeout=600)
    again = json.loads(res.stdout)
    assert again["llm"]["calls"] == 0 and again["llm"]["cache_hits"] == data["llm"]["calls"]
    assert again["total"] == data["total"]


def test_ctrl_c_stops_the_server(tmp_path, shared_data):
    before = set(_servers())
    cmd = [sys.executable, "-m", "kgopt", "evaluate", "--task", "NER", "--lang", "en", "--data-dir", str(shared_data),
           "--out", str(tmp_path / "out"), "--no-cache"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path), cwd=ROOT)
    deadline = time.time() + 300
    while time.time() < deadline and len(set(_servers()) - before) == 0:
        time.sleep(0.5)
    assert set(_servers()) - before, "the embedded server never started"
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=180)  # stopping the server and exiting took over 60 s on a machine loaded 3 times over
    for _ in range(40):
        if not (set(_servers()) - before):
            break
        time.sleep(0.5)
    assert not (set(_servers()) - before), "server left running after Ctrl-C"
    # what was done before the interrupt is kept
    partial = tmp_path / "out" / "predictions.partial.jsonl"
    assert proc.returncode == 130 and partial.exists()


def test_configured_endpoint_takes_the_same_path(tmp_path, shared_data):
    """KGOPT_API_BASE pointing at a real llama.cpp server: used as is, no embedded server started."""
    import httpx

    from kgopt.clients.embedded import EmbeddedServer

    with EmbeddedServer() as server:
        before = set(_servers())
        # Its random key is needed (KGOPT_API_KEY), and is nowhere in the process arguments.
        assert httpx.get(f"{server.api_base}/models", trust_env=False).status_code == 401
        assert server.api_key and not any(server.api_key in line for line in _servers())
        env = _env(tmp_path)
        env.update(KGOPT_API_BASE=server.api_base, KGOPT_MODEL=server.model.served_name, KGOPT_API_KEY=server.api_key)
        cmd = [sys.executable, "-m", "kgopt", "evaluate", "--task", "NER", "--lang", "zh", "--source", "WeiboNER", "--limit", "1",
               "--data-dir", str(shared_data), "--out", str(tmp_path / "out"), "--json"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "using the embedded" not in res.stderr and server.api_base in res.stderr
        assert set(_servers()) == before
        data = json.loads(res.stdout)
        assert data["instances"] == 1 and data["llm"]["calls"] >= 1


def test_json_output_through_api_base_finds_llama_cpp_dialect(tmp_path):
    """A program with constrained JSON output, pointed at a real llama.cpp server with no dialect set."""
    from kgopt.clients import lm as lm_module
    from kgopt.clients.config import resolve_endpoint
    from kgopt.clients.embedded import EmbeddedServer
    from kgopt.clients.lm import connect
    from kgopt.core.parsing import OK
    from kgopt.program import IEProgram, ProgramSettings

    with EmbeddedServer() as server:
        lm_module._learned_dialects.pop(server.api_base, None)
        conn = connect(resolve_endpoint(api_base=server.api_base, model=server.model.served_name, api_key=server.api_key), cache=False)
        assert conn.lm.json_dialect == "auto"
        program = IEProgram("NER", "en", settings=ProgramSettings(output="json", max_tokens=128, temperature=0.0))
        program.set_lm(conn.lm)
        pred = program(text="Alan Turing was born in London .", chunk=["person", "location"])
        call = pred.calls[0]
        assert call["error"] is None and call["status"] == OK, call
        assert conn.lm.dialect == "llama-cpp"  # learned from the server's refusal of json_schema
        u = conn.lm.usage.snapshot()
        assert u["failures"] == 0 and u["retries"] == 0 and u["calls"] == 1  # the refused request failed once, not four times


def _listening(port: int) -> list[str]:
    """The local addresses (hex, as /proc/net/tcp writes them) listening on ``port``."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                rows.append(local.rsplit(":", 1)[0])
    return rows


def _native_servers() -> list[str]:
    out = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if "/llama-server " in l and "--host 127.0.0.1" in l]


def test_llama_server_serves_the_embedded_model(tmp_path, monkeypatch):
    """KGOPT_EMBEDDED_SERVER=llama-server: llama.cpp's own server, built by setup.sh, on loopback only,
    keyed, its constrained JSON in OpenAI's dialect, its timings counted, and gone after stop."""
    import httpx

    from kgopt.clients import embedded
    from kgopt.clients.config import EndpointConfig
    from kgopt.clients.lm import connect
    from kgopt.core.parsing import OK
    from kgopt.program import IEProgram, ProgramSettings

    try:
        embedded.LlamaServer().check()
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"llama-server is missing in CI ({exc}): .ci/run builds it with KGOPT_LLAMA_SERVER=1")
        pytest.skip(str(exc))
    monkeypatch.setenv("KGOPT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KGOPT_EMBEDDED_SERVER", "llama-server")
    before = set(_native_servers())
    try:
        conn = connect(EndpointConfig(), cache=False)
        server = embedded.shared_embedded_server()
        assert server.program.name == "llama-server" and conn.identity.startswith("embedded-llama-server|")
        assert _listening(server.port) == ["0100007F"]  # 127.0.0.1 and nothing else
        assert httpx.get(f"{server.api_base}/models", trust_env=False).status_code == 401
        assert not any(server.api_key in line for line in _native_servers())
        program = IEProgram("NER", "en", settings=ProgramSettings(output="json", max_tokens=128, temperature=0.0))
        program.set_lm(conn.lm)
        pred = program(text="Alan Turing was born in London .", chunk=["person", "location"])
        call = pred.calls[0]
        assert call["error"] is None and call["status"] == OK, call
        assert conn.lm.dialect == "openai" and conn.lm.usage.snapshot()["failures"] == 0
        t = conn.lm.server_timings.snapshot()
        assert t["calls"] == 1 and t["prompt_eval_tokens"] > 0 and t["gen_tokens"] > 0
    finally:
        if embedded._server is not None:  # the one this test started, if it got that far
            embedded._server.stop()
    for _ in range(40):
        if set(_native_servers()) <= before:
            break
        time.sleep(0.25)
    assert set(_native_servers()) <= before  # no orphan server
