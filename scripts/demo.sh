#!/usr/bin/env bash
# The demo: trains a PixelCNN on real handwritten digits (offline, CPU, a minute or two),
# prints the test log-likelihood against baselines and writes outputs/pixelcnn_digits.png.
# Usage: bash scripts/demo.sh [--epochs N ...]   (see python -m common.demo --help)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m common.demo "$@"
