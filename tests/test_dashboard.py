"""kgopt dashboard serves optuna-dashboard on the compiler's study; checked in headless Chromium."""

import shutil
import subprocess
import sys
import time
import urllib.request

from kgopt.clients.config import EndpointConfig
from kgopt.clients.lm import connect
from kgopt.compiler import compile_program
from kgopt.localhost import free_port
from kgopt.testing.fake_endpoint import FakeEndpoint
from tests.oracle import Oracle


def test_dashboard_shows_the_study_in_a_browser(browser, shared_data, tmp_path):
    o = Oracle("NER", "en", shared_data, "CrossNER_AI")
    with FakeEndpoint(respond=o) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        compile_program("NER", "en", conn, source="CrossNER_AI", trials=2, data_dir=shared_data, compiled_dir=tmp_path / "compiled",
                        train_limit=10, dev_limit=2, instruction_proposals=0, augmented=False)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kgopt", "dashboard", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        # Bound to loopback only.
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout if shutil.which("ss") else ""
        if listening:
            assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom",
             f"http://127.0.0.1:{port}/dashboard/studies/1/trials"],
            capture_output=True, text=True, timeout=120,
        ).stdout
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # The page is rendered by the dashboard's JavaScript: these names only appear once it ran.
    assert "NER_en" in dom
    for name in ("demo_choice", "num_demos", "optimizer", "dev_f1_by_source", "llm_calls", "llm_tokens", "instruction_text"):
        assert name in dom, name
