#!/usr/bin/env bash
# The wheel outside the checkout, as a new user gets it: build it with `pip wheel .`, install
# it (with the constraints file) into a fresh venv, and run the tool from an empty directory,
# where no boards/, firmware_templates/ or checkpoint of the checkout can be found.
# Usage: benchmarks/wheel_check.sh [WORKDIR]   (default: a new temporary directory)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work/wheel" "$work/empty"
python3 -m pip wheel -q --no-deps -w "$work/wheel" "$repo"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q -c "$repo/constraints.txt" "$work"/wheel/svt_deploy-*.whl
cd "$work/empty"
set -x
"$work/venv/bin/svt-deploy" boards
"$work/venv/bin/svt-deploy" evaluate --test-samples 500
"$work/venv/bin/svt-deploy" emulate --samples 200
