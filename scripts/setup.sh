#!/usr/bin/env bash
# Installs saliq's Debian build dependencies (idempotent) and builds it (CMake Release, Ninja, ccache if present).
#   scripts/setup.sh [extra cmake args...]              build folder: $SALIQ_BUILD_DIR (default: build)
#   scripts/setup.sh --pip-torch [extra cmake args...]  against the pip torch wheel's LibTorch with CUDA compiled in
#       (the LibTorch of the GPU image: torch $SALIQ_TORCH_VERSION, default 2.11.0, CUDA 13), installed into the
#       virtual environment $SALIQ_TORCH_VENV (default ~/.cache/saliq/torch-venv, never inside the repo);
#       build folder default: build-pip. The other C++ dependencies stay Debian's.
set -euo pipefail
cd "$(dirname "$0")/.."

pip_torch=0
if [ "${1:-}" = --pip-torch ]; then pip_torch=1; shift; fi

packages=(libsentencepiece-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libopenblas0-openmp
          cmake ninja-build pkgconf libgtest-dev g++ ccache libgloo-dev)
[ $pip_torch = 0 ] && packages+=(libtorch-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  # libopenblas0-openmp is not optional: without it libtorch falls back to the reference BLAS (20x slower matmul).
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake_args=()
if [ $pip_torch = 1 ]; then
  venv=${SALIQ_TORCH_VENV:-$HOME/.cache/saliq/torch-venv}
  version=${SALIQ_TORCH_VERSION:-2.11.0}
  if ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$version')" 2>/dev/null
  then
    echo "setup: installing torch $version (pip) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "torch==$version"
  fi
  torch_prefix=$("$venv/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
  # The wheel's CMake config looks for the CUDA toolkit (nvcc, cudart) when the wheel was built with CUDA.
  if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH; fi
  command -v nvcc >/dev/null || echo "setup: no nvcc on this machine; a CUDA wheel's CMake config may refuse" >&2
  # No GPU to detect here: name the GPU image's architecture (H100/H200) instead of letting Torch probe for one.
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
  cmake_args+=(-DCMAKE_PREFIX_PATH="$torch_prefix")
  build_dir=${SALIQ_BUILD_DIR:-build-pip}
else
  build_dir=${SALIQ_BUILD_DIR:-build}
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-Release} "${cmake_args[@]}" "$@" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
echo "setup: built $build_dir/saliq"
# The second reference model (SmolLM2-135M, byte-level BPE) into ~/.cache/saliq/models; SALIQ_FETCH_MODELS=0 skips.
# Offline, the tests that need it skip.
if [ "${SALIQ_FETCH_MODELS:-1}" = 1 ] && [ $pip_torch = 0 ]; then
  SALIQ_BUILD_DIR=$build_dir scripts/fetch_models.sh ||
    echo "setup: could not fetch SmolLM2-135M (scripts/fetch_models.sh); the tests that need it skip" >&2
fi
