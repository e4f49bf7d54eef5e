#!/usr/bin/env bash
# Older LLaMA-Factory releases for the version-compatibility tests (tests/test_lf_versions.py).
#
#   bash scripts/lf_compat_envs.sh [VERSION ...]      (default: every tests/lf_versions/*.txt)
#
# Users train with whatever LLaMA-Factory they have (we support >= 0.9.2), and its templates, argument
# keys, data loader and trainer differ by release. Each release here becomes $VENV/lfcompat/<version>: a
# venv whose own site-packages hold that release and the libraries it pins (tests/lf_versions/<v>.txt),
# falling back through a .pth line to the test venv's site-packages for the rest (torch, DeepSpeed, ...).
# So each costs 30-60 s and 0.2-0.5 GB instead of a whole torch stack, and its Python does not have
# minicpm-tui (the .pth line only adds a path; the editable install's own .pth is not run there).
# An environment already built from the same pin file is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
base_site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
    for pins in tests/lf_versions/*.txt; do
        versions+=("$(basename "$pins" .txt)")
    done
fi

for version in "${versions[@]}"; do
    pins="tests/lf_versions/$version.txt"
    [ -f "$pins" ] || { echo "lf_compat_envs.sh: no pin file $pins" >&2; exit 2; }
    dir="$VENV/lfcompat/$version"
    stamp=$(sha256sum "$pins" | cut -d' ' -f1)
    if [ -f "$dir/.minicpm-tui-pins" ] && [ "$(cat "$dir/.minicpm-tui-pins")" = "$stamp" ]; then
        continue
    fi
    echo "building LLaMA-Factory $version for the version tests ($dir)"
    rm -rf "$dir"
    "$VENV/bin/python" -m venv --without-pip "$dir"
    site=$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    # After this venv's own site-packages on sys.path: its pins win, the test venv fills in the rest.
    echo "$base_site" > "$site/zz_minicpm_tui_test_venv.pth"
    "$VENV/bin/python" -m pip --python "$dir/bin/python" install --quiet --disable-pip-version-check \
        -r "$pins"
    echo "$stamp" > "$dir/.minicpm-tui-pins"
done
