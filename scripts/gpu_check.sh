#!/usr/bin/env bash
# Build and test the CUDA path on a GPU machine that has a pip PyTorch (its LibTorch and CUDA) but no Debian packages
# and no network. Two steps:
#   scripts/gpu_check.sh prepare      # here, on Debian: extract the C++ deps into .gpu-deps and copy the shared data
#                                     # into .data (both git-ignored; carry both to the GPU machine)
#   scripts/gpu_check.sh [CTEST_ARGS]  # there: configure + build into build-cuda, print how the binaries bind
#                                     # libstdc++, run the whole test suite (CUDA tests included)
#   scripts/gpu_check.sh build        # there: configure + build only
# Env there: BUILD (build-cuda), SALIQ_DATA_DIR (default .data). The tables then run with the same environment:
#   scripts/gpu_check.sh build && source scripts/gpu_check.sh env &&
#     SALIQ_BUILD_DIR=build-cuda DEVICE=cuda NSAMPLES=128 JOBS=4 ONLY='^w2_' scripts/bench_apiq_table.sh
# (then ONLY='^w3_' in a second call if one call's 10 minutes do not hold the whole table)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
deps=$root/.gpu-deps/usr

if [ "${1:-}" = prepare ]; then
  ../shared/scripts/gpu-carry.sh .gpu-deps
  data=${SALIQ_DATA_DIR:-../shared/data}
  rm -rf .data && mkdir -p .data
  cp -r "$data"/models "$data"/text "$data"/tokenizers "$data"/tasks .data/
  grep -qx '/.data/' .git/info/exclude 2>/dev/null || echo /.data/ >>.git/info/exclude
  grep -qx '/.gpu-deps/' .git/info/exclude 2>/dev/null || echo /.gpu-deps/ >>.git/info/exclude
  echo "carry: .gpu-deps ($(du -sh .gpu-deps | cut -f1)) and .data ($(du -sh .data | cut -f1))"
  exit 0
fi

[ -d "$deps" ] || { echo "no .gpu-deps here: run 'scripts/gpu_check.sh prepare' on Debian and carry it" >&2; exit 2; }
export LD_LIBRARY_PATH=$deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export SALIQ_DATA_DIR=${SALIQ_DATA_DIR:-$root/.data}
if [ "${1:-}" = env ]; then
  (return 0 2>/dev/null) && return 0
  echo "source it: source scripts/gpu_check.sh env" >&2; exit 2
fi

build=${BUILD:-build-cuda}
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$deps;$torch_prefix" \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DSALIQ_CUDA_ARCHITECTURES=90 >"$build.cmake.log" 2>&1 || { cat "$build.cmake.log"; exit 1; }
grep -E "sentencepiece:|Found Torch|CUDA detected|saliq CUDA kernels" "$build.cmake.log" || true
ninja -C "$build" >"$build.build.log" 2>&1 || { tail -50 "$build.build.log"; exit 1; }
[ "${1:-}" = build ] && exit 0

# The wheel's libtorch defines parts of libstdc++ itself (pytorch/pytorch#133437): libstdc++ must come first.
echo "first needed libraries of saliq: $(readelf -d "$build/saliq" | awk '/NEEDED/ {print $5}' | head -3 | tr '\n' ' ')"
libtorch_cpu=$torch_prefix/../../lib/libtorch_cpu.so  # a pip wheel's layout: torch/share/cmake, torch/lib
if [ -f "$libtorch_cpu" ]; then
  echo "std::filesystem symbols libtorch_cpu.so defines itself: $(nm -D --defined-only "$libtorch_cpu" |
    grep -c _ZNSt10filesystem || true)"
fi
# The tokenizer shim first: its second link-map namespace once crashed on this image. On failure, show where
# (cuda-gdb debugs host code too; the image has no gdb) and try the RTLD_DEEPBIND fallback for the whole run.
probe=Tokenizer.Stories512RoundTripsText
if ! "$build/saliq_tests" --gtest_filter="$probe" >"$build.probe.log" 2>&1; then
  tail -20 "$build.probe.log"
  if command -v cuda-gdb >/dev/null; then
    cuda-gdb -batch -ex run -ex bt --args "$build/saliq_tests" --gtest_filter="$probe" 2>&1 | tail -40 || true
  fi
  if SALIQ_SPM_LOAD=deepbind "$build/saliq_tests" --gtest_filter="$probe" >/dev/null 2>&1; then
    echo "the tokenizer works with SALIQ_SPM_LOAD=deepbind: using it for the tests"
    export SALIQ_SPM_LOAD=deepbind
  fi
fi
cd "$build"
ctest -j"$(nproc)" --output-on-failure "$@"
