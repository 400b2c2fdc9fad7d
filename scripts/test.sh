#!/usr/bin/env bash
# Run the test suite once per Keras backend. Extra arguments go to pytest, for example
#   scripts/test.sh -m slow        (the slow tests)
#   BACKENDS=jax scripts/test.sh   (one backend)
# Fails when any backend fails or runs no test (pytest exit code 5).
set -uo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
status=0
for backend in ${BACKENDS:-tensorflow jax torch}; do
  echo "=== KERAS_BACKEND=$backend ==="
  KERAS_BACKEND=$backend .venv/bin/python -m pytest "$@"
  code=$?
  if [ $code -eq 5 ]; then
    echo "FAILED: no test ran on backend $backend" >&2
    status=1
  elif [ $code -ne 0 ]; then
    echo "FAILED: tests failed on backend $backend (pytest exit code $code)" >&2
    status=1
  fi
done
exit $status
