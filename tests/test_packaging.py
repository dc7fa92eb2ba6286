"""An installed kgopt works: build the wheel, install it into a fresh venv outside the checkout,
and use it from another directory (the programs come with it; nothing is read from the checkout)."""

import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "kgopt", src / "kgopt", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("compiled", "programs"):
        (src / name).mkdir()
        for f in (ROOT / name).glob("*.json"):
            shutil.copy(f, src / name / f.name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("kgopt-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    # kgopt's dependencies come from this environment's site-packages, as plain paths: its .pth
    # files (among them the checkout's editable finder) are not run, so only the wheel is kgopt.
    deps = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]
    (purelib / "deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([py, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return {"wheel": wheel, "venv": venv, "py": py, "purelib": purelib, "cwd": elsewhere}


def test_the_wheel_carries_the_programs(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for folder in ("compiled", "programs"):
        expected = {f"kgopt/bundled/{folder}/{f.name}" for f in (ROOT / folder).glob("*.json")}
        assert expected and expected <= names, sorted(expected - names)


def test_an_installed_kgopt_loads_a_program_from_another_directory(installed):
    code = "import kgopt; ie = kgopt.load('NER', 'en'); print(kgopt.__file__); print(ie.path); print(ie.task, ie.lang)"
    res = subprocess.run([installed["py"], "-c", code], cwd=installed["cwd"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    module, program, what = res.stdout.split("\n")[:3]
    site_kgopt = installed["purelib"] / "kgopt"
    assert Path(module).parent == site_kgopt
    assert Path(program) == site_kgopt / "bundled" / "compiled" / "NER_en.json"
    assert what == "NER en"


def test_the_installed_command_line_answers_help(installed):
    res = subprocess.run([installed["venv"] / "bin" / "kgopt", "evaluate", "--help"], cwd=installed["cwd"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "--vs-zero-shot" in res.stdout and "--program" in res.stdout
