#!/usr/bin/env bash
# The README's test command and what CI runs: install the project with its test extra into a venv,
# make sure the terminal tools the tests drive are present, and run the whole suite
# (unit tests and the integration tests that train real tiny models with LLaMA-Factory on the CPU).
#
#   bash scripts/test.sh [pytest args...]
# VENV (default .venv) chooses the virtual environment; PYTHON (default python3) creates it.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test]'
# The older LLaMA-Factory releases the version tests train with (tests/test_lf_versions.py).
VENV="$VENV" bash scripts/lf_compat_envs.sh

# tmux (real-terminal tests) and shellcheck (generated scripts) come from Debian's packages.
missing=()
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${missing[*]} from Debian's packages"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "warning: ${missing[*]} missing and cannot be installed here (needs root + apt-get); those tests will fail" >&2
    fi
fi

# PYTHON only chose the interpreter that made the venv; keep it out of the tests' environment.
unset PYTHON
exec "$VENV/bin/python" -m pytest -ra "$@"
