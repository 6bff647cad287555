#!/usr/bin/env bash
# Installs everything and runs the main job: the benchmark suite, printing its table.
#   Default environment: the CUDA build of torch with torchvision beside it (torchvision is a
#   baseline; on a machine without a GPU everything runs on the CPU). VGOPS_FLAVOUR=cpu uses the
#   CPU build instead (no torchvision columns). Extra arguments go to `python -m benchmarks`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_env "${VGOPS_FLAVOUR:-cuda}"
rm -rf build vgops/_C*.so vgops/_build_info.py
if [ -z "${FORCE_CUDA:-}" ] && ! python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  export VGOPS_NO_CUDA=1  # no GPU here: everything runs on the CPU, so skip compiling CUDA kernels
fi
MAX_JOBS="${MAX_JOBS:-$(nproc)}" pip install --no-build-isolation --no-deps -e . 2>&1 | tail -n 2
python -m benchmarks "$@"
