#!/usr/bin/env bash
# Download, here, the Python 3.12 x86_64 wheels the GPU kit installs on the device machine (which has
# no network), into a git-ignored folder, and fail if what travels would exceed the device tool's cap.
#
#   bench/gpu/fetch_wheels.sh [--dest DIR] [--rehearse]
#
#   --dest DIR   where the wheels go (default: .whl at the repo root, git-ignored; the device README's
#                recipe carries that folder with `carry: [".whl"]`)
#   --rehearse   afterwards run bench/gpu/rehearse.sh (offline install into a local Python 3.12 venv)
#
# The list and the reason for each wheel: bench/gpu/wheels.txt. Exit codes: 0 ok, 1 over the cap or a
# download/build failed, 2 usage.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dest="$repo/.whl"
rehearse=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dest) dest="$2"; shift 2 ;;
        --rehearse) rehearse=1; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "fetch_wheels.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

# The device tool's limit on everything that travels in one call (working tree + carried paths).
CAP_BYTES=$((64 * 1024 * 1024))
# Keep room for results, run directories and anything the tree grows by before the run.
MARGIN_BYTES=$((4 * 1024 * 1024))
PIP="${PIP:-python3 -m pip}"
DEEPSPEED_VERSION="${DEEPSPEED_VERSION:-0.19.8}"

mkdir -p "$dest"
# One version of each package only: two versions of one name stop the whole offline install.
rm -f "$dest"/*.whl

# The platform tags pip must accept for a manylinux x86_64 CPython 3.12 (device README's recipe).
plat=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
    plat+=(--platform "$p")
done

mapfile -t reqs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/wheels.txt" | grep -v '^$')
echo "fetch_wheels: downloading ${#reqs[@]} wheels for cp312 manylinux x86_64 into $dest"
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    "${plat[@]}" -d "$dest" "${reqs[@]}"

# DeepSpeed publishes only an sdist: build a wheel from it. Without prebuilt ops it is pure Python
# (py3-none-any), so the Python it is built with does not matter.
echo "fetch_wheels: building deepspeed==$DEEPSPEED_VERSION wheel from its sdist (no ops prebuilt)"
build_dir="$(mktemp -d)"
trap 'rm -rf "$build_dir"' EXIT
DS_BUILD_OPS=0 $PIP wheel -q --no-deps -w "$build_dir" "deepspeed==$DEEPSPEED_VERSION" >"$build_dir/log" 2>&1 || {
    tail -20 "$build_dir/log" >&2
    echo "fetch_wheels: building the deepspeed wheel failed (log above)" >&2
    exit 1
}
ds_whl=("$build_dir"/deepspeed-*.whl)
case "$(basename "${ds_whl[0]}")" in
    *-py3-none-any.whl) cp "${ds_whl[0]}" "$dest/" ;;
    *) echo "fetch_wheels: deepspeed built a platform wheel ($(basename "${ds_whl[0]}")); it would not run there" >&2
       exit 1 ;;
esac

# Everything that travels: the working tree git would send (tracked + untracked-not-ignored) and the
# carried wheel folder.
wheel_bytes=$(du -cb "$dest"/*.whl | tail -1 | cut -f1)
tree_bytes=0
if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
    tree_bytes=$(cd "$repo" && git ls-files -z -co --exclude-standard | xargs -0 -r du -cb 2>/dev/null \
        | awk '$2=="total"{s+=$1} END{print s+0}')
fi
total=$((wheel_bytes + tree_bytes))
mib() { awk -v b="$1" 'BEGIN{printf "%.1f MiB", b/1048576}'; }
echo "fetch_wheels: $(ls "$dest"/*.whl | wc -l) wheels, $(mib "$wheel_bytes"); working tree $(mib "$tree_bytes");" \
     "together $(mib "$total") of the $(mib "$CAP_BYTES") cap (keeping $(mib "$MARGIN_BYTES") spare)"
if [ "$total" -gt $((CAP_BYTES - MARGIN_BYTES)) ]; then
    echo "fetch_wheels: FAIL: what travels ($(mib "$total")) exceeds the cap minus margin;" \
         "drop a wheel from bench/gpu/wheels.txt or shrink the working tree" >&2
    exit 1
fi
ls -1 "$dest"/*.whl | xargs -n1 basename

if [ "$rehearse" = 1 ]; then
    exec "$here/rehearse.sh" --wheels "$dest"
fi
