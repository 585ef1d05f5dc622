#!/usr/bin/env bash
# The prepared GPU check: real-size Ovi 1.0 / 1.1 speed, memory and precision on one GPU, in one command.
#   scripts/gpu_check.sh [OUT_DIR] [extra args for bench/gpu_check.py, e.g. --budget-s 300 or --dry-run]
# Needs no network and no installation: it runs the repository in place with the first Python that has a
# CUDA build of torch (PYTHON=..., then python3, then .venv/bin/python). Writes OUT_DIR/gpu_check.json and
# OUT_DIR/gpu_check.md (default gpu_check_out/); a hard 8-minute limit leaves the figures measured so far.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-gpu_check_out}"
shift || true

want_cuda=1
for a in "$@"; do [ "$a" = "--dry-run" ] && want_cuda=0; done
py=""
for cand in "${PYTHON:-}" python3 "$repo/.venv/bin/python"; do
  [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 || continue
  if [ "$want_cuda" = 1 ]; then
    "$cand" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null && { py="$cand"; break; }
  else
    "$cand" -c "import torch" 2>/dev/null && { py="$cand"; break; }
  fi
done
if [ -z "$py" ]; then
  echo "gpu_check: no Python with a CUDA-enabled torch found (tried \$PYTHON, python3, .venv/bin/python)" >&2
  exit 2
fi
"$py" -c "import numpy" 2>/dev/null || { echo "gpu_check: $py lacks numpy (pip install numpy)" >&2; exit 2; }

# The repository root is the package `jointav` (pyproject maps it so); expose it under that name.
pkgdir="$(mktemp -d)"
trap 'rm -rf "$pkgdir"' EXIT
ln -s "$repo" "$pkgdir/jointav"
echo "gpu_check: $("$py" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")')"
PYTHONPATH="$pkgdir${PYTHONPATH:+:$PYTHONPATH}" timeout 480 "$py" -m jointav.bench.gpu_check --out "$out" "$@"
rc=$?
[ "$rc" = 124 ] && echo "gpu_check: stopped at the 8-minute limit; $out holds what was measured" >&2
exit "$rc"
