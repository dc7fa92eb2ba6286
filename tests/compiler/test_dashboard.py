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
    def bound_to_loopback_only(port: int) -> None:
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout if shutil.which("ss") else ""
        if listening:
            assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening

    [dom] = _doms(browser, tmp_path, ["studies/1/trials"], while_serving=bound_to_loopback_only)
    # The page is rendered by the dashboard's JavaScript: these names only appear once it ran.
    assert "NER_en" in dom
    for name in ("demo_choice", "num_demos", "optimizer", "dev_f1_by_source", "llm_calls", "llm_tokens", "instruction_text"):
        assert name in dom, name


def _doms(browser, tmp_path, pages: list[str], while_serving=None) -> list[str]:
    """The pages as rendered by headless Chromium, from `kgopt dashboard` on tmp_path's studies
    (``while_serving(port)``: a check of the running server, before the pages are read)."""
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
        if while_serving is not None:
            while_serving(port)
        return [subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom",
             f"http://127.0.0.1:{port}/dashboard/{page}"],
            capture_output=True, text=True, timeout=120,
        ).stdout for page in pages]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_dashboard_shows_the_pareto_front_of_a_pareto_study(browser, shared_data, tmp_path):
    """`--objective pareto`: a two-objective study with its metrics named, whose page shows the
    Pareto front (a single-objective study's page, beside it in the same database, does not)."""
    import optuna

    o = Oracle("NER", "en", shared_data, "CrossNER_AI")
    with FakeEndpoint(respond=o) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        compile_program("NER", "en", conn, source="CrossNER_AI", trials=2, data_dir=shared_data, compiled_dir=tmp_path / "compiled",
                        train_limit=10, dev_limit=2, instruction_proposals=0, augmented=False, objective="pareto")
    storage = f"sqlite:///{tmp_path / 'compiled' / 'studies.sqlite3'}"
    study = optuna.load_study(study_name="NER_en", storage=storage)
    assert len(study.directions) == 2 and len(study.best_trials) >= 1
    single = optuna.create_study(study_name="single", storage=storage, direction="maximize")
    single.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    pareto_page, single_page = _doms(browser, tmp_path, ["studies/1", "studies/2"])
    assert "NER_en" in pareto_page and "Pareto Front" in pareto_page, pareto_page[-3000:]
    assert "dev F1" in pareto_page and "prompt tokens / record" in pareto_page
    assert "single" in single_page and "Pareto Front" not in single_page
