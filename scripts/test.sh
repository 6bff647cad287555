#!/usr/bin/env bash
# Installs everything and runs the whole test suite:
#   a cached virtual environment (requirements/$VGOPS_FLAVOUR.txt, default cpu), a fresh build of
#   vgops, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_env "${VGOPS_FLAVOUR:-cpu}"
rm -rf build vgops/_C*.so vgops/_build_info.py  # build fresh every run
MAX_JOBS="${MAX_JOBS:-$(nproc)}" pip install --no-build-isolation --no-deps -e . 2>&1 | tail -n 2
python -c 'import vgops, json; print("[vgops] build_info:", json.dumps(vgops.build_info()))'
# pytest exits 5 when no test ran: with `set -e` that fails the run, as it should.
pytest "$@"
