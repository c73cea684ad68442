#!/bin/bash -e
# Lint check of the repository, after Detectron2's dev/linter.sh: black (line length 100, check
# only) and flake8's pyflakes checks (F: unused imports and names, undefined names, ...; E9:
# syntax errors; `# noqa: F401` marks an import kept for its side effect). Installs nothing:
# black and flake8 come with `make setup` (requirements.txt).
#
# Usage:
#   dev/linter.sh    # from anywhere; exits non-zero at the first tool that complains
#
# Python: $PYTHON, else .venv/bin/python, else python. `make format` rewrites with black.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi

PATHS=(ian_d2 tests projects demo benchmarks dev train_net.py)

for tool in black flake8; do
  if ! "$PYTHON" -m "$tool" --version >/dev/null 2>&1; then
    echo "dev/linter.sh: $tool is not installed for $PYTHON: run \`make setup\`" >&2
    exit 2
  fi
done

echo "Running black -l 100 --check ..."
"$PYTHON" -m black -l 100 --check "${PATHS[@]}"

echo "Running flake8 --select F,E9 (pyflakes) ..."
"$PYTHON" -m flake8 --select F,E9 "${PATHS[@]}"

echo "Lint OK."
