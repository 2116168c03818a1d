#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the project into it.
# Sourced by scripts/test.sh and scripts/demo.sh; needs only Python 3.10+ with pip and venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HOIG_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10 or newer is needed"' \
    || { echo "error: $PYTHON is older than 3.10; set PYTHON=/path/to/python3.10+" >&2; exit 1; }
  echo "creating virtual environment in $VENV"
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    # Some Linux distributions ship Python without the venv/ensurepip module; pip can
    # still install virtualenv, which makes the same kind of environment.
    rm -rf "$VENV"
    echo "python -m venv is unavailable here; using virtualenv instead"
    "$PYTHON" -m pip install -q --user virtualenv
    "$PYTHON" -m virtualenv -q "$VENV"
  fi
fi

# Reinstall only when the dependency files changed since the last install.
stamp="$VENV/.hoig-install-stamp"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | cksum)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "installing the project and its dependencies into $VENV (first time: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT[face,dev]"
  # face_recognition names `dlib` as a dependency, which only builds from source for many
  # minutes; `dlib-bin` (installed above via the [face] extra) is the same module prebuilt.
  "$VENV/bin/python" -m pip install -q --no-deps -c "$ROOT/constraints.txt" face_recognition
  echo "$want" > "$stamp"
fi

export PATH="$VENV/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
cd "$ROOT"
