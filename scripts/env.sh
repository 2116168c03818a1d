#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install the project into it.
# Sourced by scripts/test.sh and scripts/demo.sh. HOIG_ENV chooses which versions:
#   pinned (default)  .venv         the versions of constraints.txt (what CI runs everything on)
#   colab             .venv-colab   Colab's preinstalled versions (constraints-colab.txt, Python 3.13),
#                                   then the project installed on top without constraints, as the
#                                   notebooks' install cell does on Colab
#   lowest            .venv-lowest  the lowest versions pyproject.toml declares (constraints-lowest.txt,
#                                   Python 3.10)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOIG_ENV="${HOIG_ENV:-pinned}"
case "$HOIG_ENV" in
  pinned) venv_name=.venv;        want_python=python3;    pins="$ROOT/constraints.txt" ;;
  colab)  venv_name=.venv-colab;  want_python=python3.13; pins="$ROOT/constraints-colab.txt" ;;
  lowest) venv_name=.venv-lowest; want_python=python3.10; pins="$ROOT/constraints-lowest.txt" ;;
  *) echo "error: HOIG_ENV must be pinned, colab or lowest, not '$HOIG_ENV'" >&2; exit 1 ;;
esac
VENV="${HOIG_VENV:-$ROOT/$venv_name}"
runs() { "$1" -c 'import sys' >/dev/null 2>&1; }
if [ -z "${PYTHON:-}" ]; then
  PYTHON=$want_python
  if ! runs "$PYTHON"; then   # e.g. a pyenv shim for a version that is installed but not active
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"${want_python#python}"*/bin/"$want_python" \
                     /usr/bin/"$want_python" /usr/local/bin/"$want_python"; do
      if [ -x "$candidate" ] && runs "$candidate"; then PYTHON=$candidate; break; fi
    done
  fi
  if ! runs "$PYTHON"; then
    echo "warning: $want_python not found; building the $HOIG_ENV environment with python3 instead" >&2
    PYTHON=python3
  fi
fi

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
want="$(cat "$ROOT/pyproject.toml" "$pins" | cksum)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "installing the project and its dependencies into $VENV ($HOIG_ENV versions; first time: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  if [ "$HOIG_ENV" = colab ]; then
    "$VENV/bin/python" -m pip install -q -r "$pins"      # what Colab has before the install cell runs
    "$VENV/bin/python" -m pip install -q -e "$ROOT[face,dev]"
  else
    "$VENV/bin/python" -m pip install -q -c "$pins" -e "$ROOT[face,dev]"
  fi
  echo "$want" > "$stamp"
fi

export PATH="$VENV/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
cd "$ROOT"
