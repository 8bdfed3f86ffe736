#!/usr/bin/env bash
# Sets up and builds saliq, then runs the whole test suite (ctest). The data is read from $SALIQ_DATA_DIR
# (default: ../shared/data beside the checkout).
# With SALIQ_PIP_TORCH=1 (the default under CI=true), it then builds saliq a second time against the pip torch wheel's
# LibTorch with CUDA (scripts/setup.sh --pip-torch: the library of the GPU image, which once crashed our binaries) and
# runs what depends on which LibTorch is linked (-DSALIQ_TESTS=libtorch: the tests labelled "libtorch" — tensor ops,
# readers, models, one test per training path, c10d — and one run of every command); CUDA tests skip without a GPU.
# Each phase's wall time is printed at the end. A clean build takes a few minutes on 2 cores (ATen's header
# precompiled), plus 4.6 GB of wheels the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
phases=()
phase() {  # name command...: runs it and records its wall time
  local name=$1 start=$SECONDS
  shift
  "$@"
  phases+=("$(printf '%-28s %5d s' "$name" $((SECONDS - start)))")
}
phase "setup + build" scripts/setup.sh "$@"
export SALIQ_DATA_DIR=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
phase "tests" sh -c "cd '${SALIQ_BUILD_DIR:-build}' && ctest -j $(nproc) --output-on-failure --timeout 600"

pip_torch=${SALIQ_PIP_TORCH:-0}
[ "${CI:-}" = true ] && pip_torch=${SALIQ_PIP_TORCH:-1}
if [ "$pip_torch" = 1 ]; then
  pip_build=${SALIQ_PIP_BUILD_DIR:-build-pip}
  phase "pip LibTorch setup + build" env SALIQ_BUILD_DIR="$pip_build" scripts/setup.sh --pip-torch \
    -DSALIQ_TESTS=libtorch "$@"
  phase "pip LibTorch tests" sh -c "cd '$root/$pip_build' && ctest -j $(nproc) --output-on-failure --timeout 600 -L libtorch"
fi
printf 'test.sh: %s\n' "${phases[@]}"
