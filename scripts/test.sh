#!/usr/bin/env bash
# Set up .venv if needed, then run the test suite (slow tests are skipped; add `-m slow` to run them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/python -m pytest -q "$@"
