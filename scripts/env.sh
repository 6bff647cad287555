# Sourced by scripts/test.sh, scripts/bench.sh and .ci/run.
# ensure_env FLAVOUR: create (once) and activate a virtual environment for requirements/FLAVOUR.txt.
# Environments are multi-GB (the CUDA build of torch is 5.5 GB), so they live in a cache folder
# outside the clone, keyed by a hash of the pinned requirements: a change of pins makes a new one.
# A half-built environment (no .complete marker) is removed and built again.
VGOPS_ENV_CACHE="${VGOPS_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vgops/envs}"

ensure_env() {
  local flavour="$1" root key dir
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  key="$(cat "$root/requirements/$flavour.txt" "$root/requirements/common.txt" \
         <(python3 -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-12)"
  dir="$VGOPS_ENV_CACHE/$flavour-$key"
  if [ ! -f "$dir/.complete" ]; then
    echo "[vgops] creating environment $dir (one time; cached for later runs)"
    rm -rf "$dir"
    mkdir -p "$VGOPS_ENV_CACHE"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --upgrade pip
    "$dir/bin/python" -m pip install --quiet -r "$root/requirements/$flavour.txt"
    touch "$dir/.complete"
  fi
  # shellcheck disable=SC1091
  . "$dir/bin/activate"
  echo "[vgops] environment $dir: $(python -c 'import torch; print("torch", torch.__version__)')"
}
