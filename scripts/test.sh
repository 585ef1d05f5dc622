#!/usr/bin/env bash
# The project's test command: makes .venv if needed, installs the package and test tools, then runs the
# unit, quality, parity and integration tiers in one pytest run. A tier that cannot run says why in the summary (-rs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# Tiny models spend more time in thread hand-offs than in maths on a 2-core machine.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
args=(-q -rs -p no:cacheprovider)
if [ "$#" -gt 0 ]; then args+=("$@"); else args+=(tests); fi
set +e
.venv/bin/python -m pytest "${args[@]}"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; treating that as a failure" >&2
  exit 1
fi
exit "$rc"
