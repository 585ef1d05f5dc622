#!/usr/bin/env bash
# Makes .venv with the pinned torch and the package installed editable. Safe to run again (a no-op when done).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing torch (CPU build where the machine provides one)" >&2
  .venv/bin/pip install -q "torch==2.13.0"
fi
stamp=.venv/.jointav-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing jointav (editable) and test tools" >&2
  .venv/bin/pip install -q -e ".[test]"
  touch "$stamp"
fi
