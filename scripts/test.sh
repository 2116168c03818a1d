#!/usr/bin/env bash
# The whole test suite: unit tests of `common` and every chapter notebook, in smoke mode
# (tiny data, offline). Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

export HOIG_SMOKE=1 MPLBACKEND=Agg
start=$(date +%s)
status=0
python -m pytest tests Chapter*/ --nbmake --nbmake-timeout=600 -p no:cacheprovider "$@" || status=$?
echo "test suite total time: $(( $(date +%s) - start ))s"
exit $status
