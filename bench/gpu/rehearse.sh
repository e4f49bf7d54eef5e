#!/usr/bin/env bash
# Rehearse the GPU kit here, on CPU, exactly as run.sh will run on the device machine:
#   1. a local Python 3.12 venv stands in for the device image (bench/gpu/device-image.txt; built once
#      from the registry, ~3 GB, cached),
#   2. the carried wheels are installed into it OFFLINE (--no-index --no-deps --target, the device
#      README's recipe), so a missing or incompatible wheel fails here, not on the clock there,
#   3. bench/gpu/run.sh --cpu-rehearsal runs the whole kit with tiny dimensions through the same code.
#
#   bench/gpu/rehearse.sh [--wheels DIR] [--venv DIR] [--install-only] [-- run.sh args...]
#
# Environment: PYTHON312 (a CPython 3.12 to build the venv with; default: pyenv's, else python3.12).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
wheels="$repo/.whl"
venv="${KIT_REHEARSAL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/minicpm-tui-bench/py312-device}"
install_only=0
run_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) wheels="$2"; shift 2 ;;
        --venv) venv="$2"; shift 2 ;;
        --install-only) install_only=1; shift ;;
        --) shift; run_args=("$@"); break ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "rehearse.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

if ! ls "$wheels"/*.whl >/dev/null 2>&1; then
    echo "rehearse.sh: no wheels in $wheels; run bench/gpu/fetch_wheels.sh first" >&2
    exit 1
fi

# 1. The stand-in for the device image, rebuilt when device-image.txt changes.
stamp="$venv/.device-image.sha256"
want="$(sha256sum "$here/device-image.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    py312="${PYTHON312:-}"
    if [ -z "$py312" ]; then
        for cand in "$HOME"/.pyenv/versions/3.12*/bin/python3.12 "$(command -v python3.12 || true)"; do
            if [ -x "$cand" ] && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
                py312="$cand"; break
            fi
        done
    fi
    if [ -z "$py312" ]; then
        echo "rehearse.sh: no Python 3.12 found; set PYTHON312=/path/to/python3.12" >&2
        exit 1
    fi
    echo "rehearse: building the device stand-in venv at $venv with $py312 (once; needs the registry)"
    rm -rf "$venv"
    "$py312" -m venv "$venv"
    "$venv/bin/python" -m pip install -q -r "$here/device-image.txt"
    echo "$want" >"$stamp"
fi

# 2. The offline install, exactly as run.sh does it on the device.
site="$(mktemp -d)/site"
trap 'rm -rf "$(dirname "$site")"' EXIT
echo "rehearse: offline install of $(ls "$wheels"/*.whl | wc -l) wheels into $site"
"$venv/bin/python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$wheels"/*.whl
PYTHONPATH="$site" "$venv/bin/python" "$here/check_wheels.py" --site "$site"
if [ "$install_only" = 1 ]; then
    exit 0
fi

# 3. The kit itself, on CPU, tiny dimensions, same code path.
if [ ${#run_args[@]} -gt 0 ]; then run_args=(-- "${run_args[@]}"); fi
# Not exec: the EXIT trap removes the temporary site afterwards.
PYTHON="$venv/bin/python" KIT_SITE="$site" "$here/run.sh" --cpu-rehearsal --skip-install "${run_args[@]}"
