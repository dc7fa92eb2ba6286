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
