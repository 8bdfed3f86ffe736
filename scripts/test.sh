#!/usr/bin/env bash
# Sets up and builds saliq, then runs the whole test suite (ctest). The data is read from $SALIQ_DATA_DIR
# (default: ../shared/data beside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "$@"
export SALIQ_DATA_DIR=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
cd "${SALIQ_BUILD_DIR:-build}"
ctest -j "$(nproc)" --output-on-failure --timeout 600
