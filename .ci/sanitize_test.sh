#!/usr/bin/env bash
# Builds the CPU kernels with AddressSanitizer + UndefinedBehaviorSanitizer and runs the op tests
# under them. Needs an activated environment with torch (the CPU one); builds a copy of the tree
# in a temporary folder with its own thin venv, so the caller's install of vgops is untouched.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
python -m venv --without-pip "$work/venv"
echo "$site" > "$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/base_env.pth"
(cd "$root" && git ls-files -co --exclude-standard | grep -v '^vgops/_C' | tar cf - -T -) | tar xf - -C "$work"
cd "$work"
VGOPS_SANITIZE=address,undefined VGOPS_NO_CUDA=1 MAX_JOBS="${MAX_JOBS:-2}" \
  "$work/venv/bin/python" -m pip install --no-build-isolation --no-deps -e . 2>&1 | tail -n 1
# The interpreter is not instrumented: the ASan runtime is preloaded; Python's own allocations
# are not leak-checked (detect_leaks=0), every sanitizer report is fatal.
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
"$work/venv/bin/python" -c 'import vgops; print("[vgops] sanitizer build loaded:", vgops.build_info()["torch_version"])'
# Deselected: torch.compile tests (inductor compiles and loads uninstrumented C++), and the RSS
# flatness test (ASan's quarantine holds freed memory on purpose; it runs in CI steps 1 and 2).
# The model tests (training loops over the same ops) are left to steps 1 and 2: under ASan they
# would take most of the CI budget and exercise no kernel path the op tests do not.
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests --ignore=tests/test_benchmarks.py --ignore=tests/test_build.py \
  --ignore-glob='tests/test_model_*' --ignore-glob='tests/test_python_models_*' \
  -k "not compile and not keep_memory_flat" "$@"
