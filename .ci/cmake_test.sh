#!/usr/bin/env bash
# CMake build of vgops for libtorch C++ users, then its C++ tests (ctest) and an install.
#
#   source <venv with torch>/bin/activate && bash .ci/cmake_test.sh [extra cmake -D options]
#
# e.g. `bash .ci/cmake_test.sh -DVGOPS_WITH_CUDA=ON` with a CUDA build of torch and nvcc.
# Builds in a fresh temporary folder outside the repository (removed at exit; set
# VGOPS_KEEP_BUILD=1 to keep it). PYTHON selects the interpreter (default: python).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"

command -v cmake >/dev/null || { echo "cmake_test: cmake not found on PATH" >&2; exit 1; }
command -v ninja >/dev/null || { echo "cmake_test: ninja not found on PATH (pip install ninja)" >&2; exit 1; }
TORCH_PREFIX="$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')" || {
  echo "cmake_test: '$PYTHON' cannot import torch; activate the environment that has torch" >&2; exit 1; }
echo "cmake_test: torch $("$PYTHON" -c 'import torch; print(torch.__version__)') at $TORCH_PREFIX"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/vgops-cmake.XXXXXX")"
if [[ "${VGOPS_KEEP_BUILD:-0}" == "1" ]]; then
  echo "cmake_test: keeping $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi
BUILD="$WORK/build"

cmake -S "$ROOT" -B "$BUILD" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
  -DVGOPS_BUILD_TESTS=ON \
  "$@"
cmake --build "$BUILD" -j 2
(cd "$BUILD" && ctest --output-on-failure)
cmake --install "$BUILD" --prefix "$WORK/install"
test -f "$WORK/install/include/vgops/vgops.h"
ls "$WORK"/install/lib*/libvgops.so >/dev/null
echo "cmake_test: OK"
