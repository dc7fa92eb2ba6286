import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BUNDLED = ROOT / "dataset"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real annotated data beside the project (falls back to the bundled copy)."""
    return SHARED if SHARED.is_dir() else BUNDLED


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    # Response cache and logs of the tests never touch the user's ~/.cache/kgopt.
    # The embedded model's weights stay in the user's models folder: assembled once, not per test.
    from kgopt.clients.weights import models_dir

    monkeypatch.setenv("KGOPT_MODELS_DIR", str(models_dir()))
    monkeypatch.setenv("KGOPT_HOME", str(tmp_path_factory.getbasetemp() / "kgopt-home"))
    for k in ("KGOPT_API_BASE", "KGOPT_MODEL", "KGOPT_API_KEY", "KGOPT_CONFIG", "KGOPT_DATA_DIR"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture()
def fake_launch(monkeypatch, tmp_path):
    """``start(program, served_name)``: an EmbeddedServer of that server program started with a
    stand-in child process (no model, no readiness wait), on port 12345; ``start.launched`` holds
    each launch's (command, environment)."""
    from kgopt.clients import embedded

    launched = []

    class FakeProc:
        def __init__(self, cmd, env=None, **kw):
            launched.append((cmd, env))

        def poll(self):
            return 0

    monkeypatch.setattr(embedded.subprocess, "Popen", FakeProc)
    monkeypatch.setattr(embedded.EmbeddedServer, "_wait_ready", lambda self: None)
    monkeypatch.setenv("KGOPT_HOME", str(tmp_path))

    def start(program: str, served_name: str = "qwen"):
        server = embedded.EmbeddedServer.__new__(embedded.EmbeddedServer)
        server.program = embedded.server_program(program)
        server.model = types.SimpleNamespace(served_name=served_name, title="Qwen")
        server.gguf, server.n_ctx, server.threads, server.startup_timeout = Path("w.gguf"), 512, 1, 1.0
        server.port, server.proc, server.log_path = 12345, None, None
        server.start()
        return server

    start.launched = launched
    return start


@pytest.fixture()
def browser() -> str:
    """Headless Chromium (Debian's), for the dashboard and graph-view tests; required in CI."""
    import os
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: scripts/setup-browser.sh should have installed it")
        pytest.skip("chromium not installed (run scripts/setup-browser.sh)")
    return found


@pytest.fixture(scope="session")
def extraction(tmp_path_factory) -> Path:
    """A real extraction output: InstructIE zh test texts (Latin names among them) through the
    deterministic fake endpoint (graph view and graph database tests)."""
    import ujson

    from kgopt.data.readers import read_instructie
    from kgopt.extraction import extract
    from kgopt.testing.fake_endpoint import FakeEndpoint, fake_connection

    recs = list(read_instructie(BUNDLED / "InstructIE" / "test_zh.json"))[:10]
    rows = [{"id": f"d{i}", "cate": r.cate, "text": r.text} for i, r in enumerate(recs)]
    docs = tmp_path_factory.mktemp("docs") / "docs.jsonl"
    docs.write_text("".join(ujson.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path_factory.mktemp("extraction")
    with FakeEndpoint() as ep:
        extract(docs, "zh", out, connection=fake_connection(ep.url), progress=False, data_dir=BUNDLED, workers=2)
    return out


@pytest.fixture()
def fake_llm():
    """The deterministic fake endpoint, started for the test: ``fake_llm.url``, its recorded
    ``requests``, and ``fake_llm.connect(**kw)`` for a Connection to it (``fake_connection``)."""
    from kgopt.testing.fake_endpoint import FakeEndpoint, fake_connection

    with FakeEndpoint() as server:
        server.connect = lambda **kw: fake_connection(server.url, **kw)
        yield server


@pytest.fixture()
def load_script(monkeypatch):
    """A script of scripts/ as a module: ``load_script("bench_kg")`` (registered in sys.modules,
    which dataclasses need, for the test's duration)."""
    import importlib.util
    import sys

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    return load


def pytest_runtest_setup(item):
    """``llm`` tests need the embedded model's runtime: skipped with the reason where it is not
    installed, a failure in CI (where scripts/setup.sh installs it, so its absence is a fault)."""
    if item.get_closest_marker("llm") is None:
        return
    import importlib.util
    import os

    if importlib.util.find_spec("llama_cpp") is None:
        if os.environ.get("CI"):
            pytest.fail("llama_cpp is missing in CI: scripts/setup.sh installs the `local` extra")
        pytest.skip("llama_cpp not installed: run scripts/setup.sh (the `local` extra) to run the embedded-model tests")
