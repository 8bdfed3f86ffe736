#!/usr/bin/env bash
# Sets up and builds saliq, then runs the whole test suite (ctest). The data is read from $SALIQ_DATA_DIR
# (default: ../shared/data beside the checkout).
# With SALIQ_PIP_TORCH=1 (the default under CI=true), it then builds saliq a second time against the pip torch wheel's
# LibTorch with CUDA (scripts/setup.sh --pip-torch: the library of the GPU image, which once crashed our binaries) and
# runs the suite against that build too (all but the LibTorch-free BPE comparison); CUDA tests skip without a GPU.
# A clean build takes a few minutes on 2 cores (ATen's header precompiled: each file that includes it compiles in about
# half the time), plus 4.6 GB of wheels the first time; this pass runs the 238 tests that exercise LibTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/setup.sh "$@"
export SALIQ_DATA_DIR=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
(cd "${SALIQ_BUILD_DIR:-build}" && ctest -j "$(nproc)" --output-on-failure --timeout 600)

pip_torch=${SALIQ_PIP_TORCH:-0}
[ "${CI:-}" = true ] && pip_torch=${SALIQ_PIP_TORCH:-1}
if [ "$pip_torch" = 1 ]; then
  SALIQ_BUILD_DIR=${SALIQ_PIP_BUILD_DIR:-build-pip} scripts/setup.sh --pip-torch "$@"
  cd "$root/${SALIQ_PIP_BUILD_DIR:-build-pip}"
  # What this pass exists for is LibTorch 2.x: the suites that use no LibTorch (text parsers, task files, the BPE
  # comparison against Hugging Face's tokenizers) or only orchestrate saliq commands the other suites already run
  # under this build (saliq table: 44 s) ran in the first pass.
  ctest -j "$(nproc)" --output-on-failure --timeout 600 \
    -E '^(TableCli|SplitRegex|BpeTokenizer|Unicode|Toml|Files|Corpus|ZeroShotTasks)\.|^Tokenizer\.BpeIdsEqualHuggingFaceTokenizers$'
fi
