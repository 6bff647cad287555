#!/usr/bin/env bash
# torch 2.11 builds extensions as C++17, newer torch as C++20: the C++ sources must stay C++17.
# Syntax-checks every CPU-side source as C++17 against the active environment's torch headers
# (as system headers: their own C++20-extension warnings are not ours).
set -euo pipefail
cd "$(dirname "$0")/.."
includes=$(python -c "import torch.utils.cpp_extension as c; print(' '.join('-isystem ' + p for p in c.include_paths()))")
for f in csrc/ops/*.cpp csrc/ops/cpu/*.cpp; do
  # shellcheck disable=SC2086
  g++ -std=c++17 -fsyntax-only -fopenmp $includes -Icsrc "$f"
done
echo "C++17 syntax check: $(ls csrc/ops/*.cpp csrc/ops/cpu/*.cpp | wc -l) sources ok"
