#!/usr/bin/env bash
# The whole test suite: unit tests of `common` and every chapter notebook, in smoke mode
# (tiny data, offline). Usage: bash scripts/test.sh [extra pytest arguments]
#   HOIG_ENV=colab|lowest     run in Colab's versions or the lowest declared ones (see env.sh)
#   HOIG_TEST_PATHS="tests Chapter09/ch09_deepfake.ipynb"   run only these tests and notebooks
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

export HOIG_SMOKE=1 MPLBACKEND=Agg
read -r -a paths <<< "${HOIG_TEST_PATHS:-}"
[ "${#paths[@]}" -gt 0 ] || paths=(tests Chapter*/)
python -c 'import sys, tensorflow as tf, keras, ipywidgets, google.protobuf as pb
print(f"{sys.argv[1]} environment: Python {sys.version.split()[0]}, TensorFlow {tf.__version__}, "
      f"Keras {keras.__version__}, ipywidgets {ipywidgets.__version__}, protobuf {pb.__version__}")' \
  "$HOIG_ENV" 2>/dev/null
start=$(date +%s)
status=0
python -m pytest "${paths[@]}" --nbmake --nbmake-timeout=600 -p no:cacheprovider "$@" || status=$?
echo "test suite total time ($HOIG_ENV environment): $(( $(date +%s) - start ))s"
exit $status
