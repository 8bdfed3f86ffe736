#!/usr/bin/env bash
# Installs saliq's Debian build dependencies (idempotent) and builds it (CMake Release, Ninja, ccache if present).
#   scripts/setup.sh [extra cmake args...]        build folder: $SALIQ_BUILD_DIR (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libtorch-dev libsentencepiece-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libopenblas0-openmp
          cmake ninja-build pkgconf libgtest-dev g++ ccache)
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

build_dir=${SALIQ_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-Release} "$@" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
echo "setup: built $build_dir/saliq"
