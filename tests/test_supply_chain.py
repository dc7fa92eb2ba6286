"""scripts/setup.sh installs only what is pinned by version and SHA-256 (no network here).

The checkers below are run on the real files, and each is also shown failing on a broken copy,
so a test that passes is not passing because the checker is blind.
"""

import hashlib
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "setup.sh"
LOCKS = [ROOT / "requirements.lock", ROOT / "requirements-build.lock"]
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})$")
NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def entries(text: str) -> list[str]:
    """The lock's logical lines (backslash continuations joined), comments and blanks dropped."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        cont = line.endswith("\\")
        cur += " " + line.rstrip("\\").strip()
        if not cont:
            if cur.strip():
                out.append(cur.strip())
            cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def parse(entry: str):
    """(name, version, hashes) of a `name==version [; markers] --hash=sha256:...` entry, else None."""
    head, _, opts = entry.partition(" --")
    opts = ("--" + opts).split() if opts else []
    m = NAME.match(head)
    if not m:
        return None
    spec = m.group(3).split(";")[0].strip()
    if not re.fullmatch(r"==\s*[A-Za-z0-9.+!_-]+", spec):
        return None
    hashes = [h.group(1) for o in opts if (h := HASH.fullmatch(o))]
    if len(hashes) != len(opts):  # any other option (e.g. a bad hash) is a problem too
        return None
    return norm(m.group(1)), spec.lstrip("=").strip(), hashes


def lock_problems(text: str) -> list[str]:
    problems = []
    for entry in entries(text):
        parsed = parse(entry)
        if parsed is None or not parsed[2]:
            problems.append(entry)
    return problems


def locked(text: str) -> dict[str, tuple[str, list[str]]]:
    return {p[0]: (p[1], p[2]) for e in entries(text) if (p := parse(e))}


def constraint_problems(constraints: str, lock: str) -> list[str]:
    have = locked(lock)
    problems = []
    for line in constraints.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        got = have.get(norm(name))
        if not version or got is None or got[0] != version.strip():
            problems.append(f"{line} (lock: {got[0] if got else 'missing'})")
    return problems


def commands(script: str) -> list[str]:
    """The script's commands with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [l.strip() for l in joined.splitlines() if l.strip() and not l.strip().startswith("#")]


def pip_problems(script: str) -> list[str]:
    """pip install/download/wheel commands that do not require hashes (the one allowed exception is
    the project's own editable install, which must then be unable to download anything)."""
    problems = []
    for cmd in commands(script):
        if not re.search(r"\bpip (install|download|wheel)\b", cmd):
            continue
        words = shlex.split(cmd.split(" && ")[-1], comments=True)
        if "-e" in words:
            if not {"--no-deps", "--no-index", "--no-build-isolation"} <= set(words):
                problems.append(cmd)
        elif "--require-hashes" not in words or "-r" not in words:
            problems.append(cmd)
    return problems


def bash(code: str, **env) -> subprocess.CompletedProcess:
    """Run code after sourcing setup.sh (which then only defines its variables and functions)."""
    return subprocess.run(
        ["bash", "-c", f'source "{SETUP}"\n{code}'], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **env}
    )


def setup_var(name: str) -> str:
    r = bash(f'printf %s "${name}"')
    assert r.returncode == 0, r.stderr
    return r.stdout


# --- the lock files ------------------------------------------------------------------------


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_locked_package_is_pinned_with_a_hash(lock):
    text = lock.read_text()
    assert len(entries(text)) >= 5
    assert lock_problems(text) == []


def test_the_lock_checker_catches_unpinned_or_unhashed_lines():
    good = "a==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via x\n"
    assert lock_problems(good) == []
    assert lock_problems(good + "b>=2 \\\n    --hash=sha256:" + "1" * 64 + "\n")  # not ==
    assert lock_problems(good + "c==3\n")  # no hash
    assert lock_problems(good + "d==4 --hash=md5:abc\n")  # not sha256
    assert lock_problems(good + "e @ https://example.org/e.whl\n")


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_each_lock_says_how_to_regenerate_it_and_setup_sh_says_the_same(lock):
    header = lock.read_text().splitlines()[:3]
    cmd = next((l for l in header if "bash scripts/setup.sh lock" in l), None)
    assert cmd, header
    tool = setup_var("UV_REQUIREMENT").split()[0]
    uv_command = cmd.split(f"# = {tool}: ", 1)[1]
    assert uv_command in SETUP.read_text()  # the comment in setup.sh names the same command
    assert f"-o {lock.name}" in uv_command


def test_every_constraint_is_locked_at_the_same_version():
    lock = (ROOT / "requirements.lock").read_text()
    constraints = (ROOT / "constraints.txt").read_text()
    assert constraint_problems(constraints, lock) == []
    assert constraint_problems(constraints.replace("dspy==3.4.1", "dspy==3.4.2"), lock)
    assert constraint_problems(constraints + "\nnot-in-the-lock==1.0\n", lock)


def test_build_lock_pins_the_build_requirements_setup_sh_names():
    build = locked((ROOT / "requirements-build.lock").read_text())
    wanted = setup_var("LLAMA_BUILD_REQUIREMENTS").split()
    assert {"scikit-build-core", "cmake", "ninja"} <= {norm(w.split("==")[0]) for w in wanted}
    for req in wanted:
        name, version = req.split("==")
        assert build[norm(name)][0] == version


def test_llama_sdist_pin_in_setup_sh_is_the_locked_hash():
    pin = setup_var("LLAMA_SDIST_SHA256")
    assert re.fullmatch(r"[0-9a-f]{64}", pin)
    version, hashes = locked((ROOT / "requirements.lock").read_text())["llama-cpp-python"]
    assert version == setup_var("LLAMA_VERSION")
    assert hashes == [pin]


# --- setup.sh ----------------------------------------------------------------------------


def test_every_pip_install_in_setup_sh_requires_hashes():
    script = SETUP.read_text()
    pip_calls = [c for c in commands(script) if re.search(r"\bpip (install|download|wheel)\b", c)]
    assert len(pip_calls) >= 8
    assert pip_problems(script) == []
    assert pip_problems('x/bin/python -m pip install --quiet --upgrade "pip>=24"\n')
    assert pip_problems("x/bin/python -m pip install -c constraints.txt -e .[local]\n")
    assert pip_problems("x/bin/python -m pip wheel --no-deps -w out llama-cpp-python==0.3.36\n")


def test_setup_sh_pins_pip_by_version_and_hash():
    req = setup_var("PIP_REQUIREMENT")
    assert re.fullmatch(r"pip==[0-9][0-9.]*( --hash=sha256:[0-9a-f]{64})+", req), req
    script = SETUP.read_text()
    assert 'printf \'%s\\n\' "$PIP_REQUIREMENT" > "$WORK/pip.txt"' in script
    pip_self = [c for c in commands(script) if '-r "$WORK/pip.txt"' in c]
    assert len(pip_self) >= 2  # the project's venv and the build venv
    assert all("--require-hashes" in c for c in pip_self)
    assert "--upgrade" not in script


def test_verify_sha256_accepts_the_pinned_file_and_refuses_a_tampered_one(tmp_path):
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    sdist.write_bytes(b"the real sdist")
    good = hashlib.sha256(b"the real sdist").hexdigest()
    assert bash(f'verify_sha256 "{sdist}" {good}').returncode == 0
    sdist.write_bytes(b"the real sdist, tampered")
    r = bash(f'verify_sha256 "{sdist}" {good}')
    assert r.returncode != 0 and "SHA-256 mismatch" in r.stderr
    assert bash(f'verify_sha256 "{tmp_path}/missing.tar.gz" {good}').returncode != 0


def _body(function: str) -> str:
    return SETUP.read_text().split(f"{function}() {{", 1)[1].split("\n}\n", 1)[0]


def test_setup_sh_checks_the_sdist_hash_before_building_it():
    fetch = _body("llama_sdist")
    assert fetch.index("pip download") < fetch.index('verify_sha256 "${sdists[0]}" "$LLAMA_SDIST_SHA256"')
    wheel = _body("build_llama_wheel")
    assert wheel.index("sdist=$(llama_sdist)") < wheel.index("pip wheel")
    (build,) = [c for c in commands(wheel) if "pip wheel" in c]
    assert {"--no-build-isolation", "--no-index", "--require-hashes"} <= set(shlex.split(build))
    assert "llama-build.txt" in build  # the verified local sdist, by its hash
    server = _body("build_llama_server")
    assert server.index("sdist=$(llama_sdist)") < server.index('tar -xzf "$sdist"') < server.index("cmake --build")


def test_llama_server_builds_with_the_wheels_simd_flags_and_fetches_no_web_ui():
    args = setup_var("LLAMA_SERVER_CMAKE_ARGS").split()
    # The default would download a prebuilt web UI from Hugging Face at build time.
    assert {"-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_OPENSSL=OFF", "-DBUILD_SHARED_LIBS=OFF"} <= set(args)
    assert "$LLAMA_CMAKE_ARGS $LLAMA_SERVER_CMAKE_ARGS" in _body("build_llama_server")  # no -march=native, as the wheel
    assert 'if [ "${KGOPT_LLAMA_SERVER:-0}" = 1 ]; then' in SETUP.read_text()  # opt-in
    # Its cache folder is keyed by its own flags too: a changed server flag builds a new binary.
    assert '-$simd-$(LLAMA_CMAKE_ARGS="$LLAMA_CMAKE_ARGS $LLAMA_SERVER_CMAKE_ARGS" llama_build_key)"' in SETUP.read_text()
    wheel = bash("llama_build_key").stdout.strip()
    server = bash('LLAMA_CMAKE_ARGS="$LLAMA_CMAKE_ARGS $LLAMA_SERVER_CMAKE_ARGS" llama_build_key').stdout.strip()
    assert len(server) == 12 and server != wheel


def test_llama_server_is_installed_only_if_it_matches_its_build_record(tmp_path):
    built, venv = tmp_path / "built", tmp_path / "venv"
    built.mkdir()
    (venv / "bin").mkdir(parents=True)
    (built / "llama-server").write_bytes(b"built here")
    digest = hashlib.sha256(b"built here").hexdigest()
    (built / "SHA256SUMS").write_text(f"{digest}  llama-server\n")
    r = bash(f'install_llama_server "{built}" "{venv}"')
    assert r.returncode == 0, r.stderr
    assert (venv / "bin" / "llama-server").read_bytes() == b"built here"
    assert (venv / "bin" / "llama-server.sha256").read_text().split() == [digest, "llama-server"]  # what kgopt checks at start

    (built / "llama-server").write_bytes(b"swapped in under the same name")
    r = bash(f'install_llama_server "{built}" "{venv}"')
    assert r.returncode != 0 and "SHA-256 mismatch" in r.stderr
    assert (venv / "bin" / "llama-server").read_bytes() == b"built here"  # the installed one is untouched
    (built / "SHA256SUMS").write_text(f"{digest}  other-binary\n")
    assert bash(f'install_llama_server "{built}" "{venv}"').returncode != 0


def test_cached_wheel_is_used_only_if_it_matches_its_build_record(tmp_path):
    name = "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
    (tmp_path / name).write_bytes(b"built here")
    (tmp_path / "SHA256SUMS").write_text(f"{hashlib.sha256(b'built here').hexdigest()}  {name}\n")
    r = bash(f'cached_llama_wheel "{tmp_path}"')
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(tmp_path / name), hashlib.sha256(b"built here").hexdigest()]

    (tmp_path / name).write_bytes(b"swapped in under the same name")
    assert bash(f'cached_llama_wheel "{tmp_path}"').returncode != 0
    (tmp_path / name).write_bytes(b"built here")
    (tmp_path / "SHA256SUMS").write_text(f"{hashlib.sha256(b'built here').hexdigest()}  other.whl\n")
    assert bash(f'cached_llama_wheel "{tmp_path}"').returncode != 0
    (tmp_path / "SHA256SUMS").unlink()
    assert bash(f'cached_llama_wheel "{tmp_path}"').returncode != 0


def test_wheel_cache_folder_is_keyed_by_sdist_hash_and_cmake_flags():
    def key(**env):
        r = bash('LLAMA_SDIST_SHA256=${S:-$LLAMA_SDIST_SHA256} LLAMA_CMAKE_ARGS=${C:-$LLAMA_CMAKE_ARGS} llama_build_key', **env)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    base = key()
    assert re.fullmatch(r"[0-9a-f]{12}", base)
    assert key(S="0" * 64) != base
    assert key(C="-DGGML_NATIVE=ON") != base
    assert "-$simd-$(llama_build_key)" in SETUP.read_text()


def test_the_avx512_build_is_opt_in_and_refused_on_a_cpu_without_its_flags(tmp_path):
    with_all = tmp_path / "cpuinfo-avx512"
    with_all.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni avx512vbmi avx512_bf16 avx512ifma\n")
    no_vnni = tmp_path / "cpuinfo-avx2"
    no_vnni.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512dq avx512bw avx512vl avx512vbmi avx512_bf16\n")

    r = bash("llama_simd_args avx2")
    assert r.returncode == 0 and r.stdout == ""  # the default adds nothing to LLAMA_CMAKE_ARGS
    r = bash(f'llama_simd_args avx512 "{with_all}"')
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == setup_var("LLAMA_AVX512_ARGS").split()
    assert "-DGGML_AVX512_VNNI=ON" in r.stdout and "AMX" not in r.stdout
    r = bash(f'llama_simd_args avx512 "{no_vnni}"')
    assert r.returncode == 2 and "avx512_vnni" in r.stderr and r.stdout == ""
    # A CPU without avx512_bf16 (some machines of this fleet) can run the build: it has no BF16 kernels.
    no_bf16 = tmp_path / "cpuinfo-no-bf16"
    no_bf16.write_text(with_all.read_text().replace(" avx512_bf16", ""))
    r = bash(f'llama_simd_args avx512 "{no_bf16}"')
    assert r.returncode == 0 and r.stdout.split() == setup_var("LLAMA_AVX512_ARGS").split() and "BF16" not in r.stdout
    r = bash("llama_simd_args native")
    assert r.returncode == 2 and "avx2 or avx512" in r.stderr
    # main() refuses before building anything, so nothing is half-built under a wrong name
    r = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "KGOPT_LLAMA_SIMD": "sse", "VENV": str(tmp_path / "v")})
    assert r.returncode == 2 and "KGOPT_LLAMA_SIMD" in r.stderr and not (tmp_path / "v").exists()


def test_rerun_skips_the_llama_reinstall_only_for_the_very_same_wheel(tmp_path):
    import sys

    info = tmp_path / "llama_cpp_python-0.3.36.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.3.36\n")
    (info / "direct_url.json").write_text('{"url": "file:///x.whl", "archive_info": {"hashes": {"sha256": "' + "a" * 64 + '"}}}')
    r = bash(f'installed_wheel_sha256 "{sys.executable}" llama-cpp-python', PYTHONPATH=str(tmp_path))
    assert r.returncode == 0 and r.stdout.strip() == "a" * 64, r.stderr
    r = bash(f'installed_wheel_sha256 "{sys.executable}" no-such-package-here', PYTHONPATH=str(tmp_path))
    assert r.stdout.strip() == ""
    assert '"$(installed_wheel_sha256 "$venv/bin/python" llama-cpp-python)" != "$sum"' in SETUP.read_text()
