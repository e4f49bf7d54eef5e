#!/usr/bin/env bash
# The GPU validation kit: ONE command on the device machine (about 8 minutes on one H200).
#
#   bench/gpu/run.sh [--out DIR] [--budget-s N] [--skip-install] [--cpu-rehearsal] [-- grid.py args...]
#
# On the device (see bench/gpu/README.md for the exact tool call), with the wheels from
# bench/gpu/fetch_wheels.sh carried in .whl/:
#   1. installs the wheels offline into $KIT_SITE (default /tmp/site) and checks the set (env.txt),
#   2. `minicpm-tui probe --json` -> probe.json and `probe --record-nvml` -> nvml-recording.json
#      (commit the recording as tests/fixtures/nvml/<machine>.json: the fake NVML replays it),
#   3. grid.py: short real trainings through our generated run directories, estimate vs measured peak,
#      tokens/s, with sampler_bench.py measuring the monitor's NVML sampler at 1 s for 60 s beside it,
#   4. summarise.py -> summary.md.
# Files land in --out (default $OUT on the device, else bench/out/<time>): at most 8, all flat, as the
# device tool returns them: run.log env.txt probe.json nvml-recording.json grid.csv failures.log
# sampler.json summary.md. Commit them to bench/results/<YYYY-MM-DD>-<machine>/.
#
# Environment: PYTHON (default python3: the device's Python holds torch), KIT_SITE, MINICPM_TUI_HOME.
# --cpu-rehearsal runs the same steps here on CPU with tiny dimensions (bench/gpu/rehearse.sh calls it).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${OUT:-}"
cpu=0
skip_install=0
grid_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --budget-s) grid_args+=(--budget-s "$2"); shift 2 ;;
        --skip-install) skip_install=1; shift ;;
        --cpu-rehearsal) cpu=1; shift ;;
        --) shift; grid_args+=("$@"); break ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || out="$repo/bench/out/$(date +%Y%m%d-%H%M%S)$([ "$cpu" = 1 ] && echo -rehearsal)"
mkdir -p "$out"
# Everything below is also written to run.log (it comes back even if the command is cut off).
exec > >(tee -a "$out/run.log") 2>&1

PY="${PYTHON:-python3}"
PY="$(command -v "$PY" || echo "$PY")"
SITE="${KIT_SITE:-/tmp/site}"
t0=$SECONDS
step() { echo "== [$((SECONDS - t0)) s] $*"; }

if [ "$skip_install" = 0 ]; then
    step "installing $(ls "$repo"/.whl/*.whl 2>/dev/null | wc -l) wheels offline into $SITE"
    if ! ls "$repo"/.whl/*.whl >/dev/null 2>&1; then
        echo "run.sh: no wheels in .whl/: run bench/gpu/fetch_wheels.sh here first and carry .whl" >&2
        exit 1
    fi
    # The device README's recipe: no index, no deps resolution, one version of each package.
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$repo"/.whl/*.whl || { echo "run.sh: the offline install failed" >&2; exit 1; }
fi
# The carried packages first, then the checkout (minicpm_tui is not installed there).
export PYTHONPATH="$SITE:$repo${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"
export MINICPM_TUI_HOME="${MINICPM_TUI_HOME:-$(mktemp -d -t minicpm-tui-kit.XXXXXX)}"
export MINICPM_TUI_TRAIN_PYTHON="$PY"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$MINICPM_TUI_HOME/torch_extensions}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

step "environment -> env.txt"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "python: $PY ($("$PY" -V 2>&1))"
    echo "cpus: $(nproc)  mem: $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())'
    "$PY" "$here/check_wheels.py" --site "$SITE"
} >"$out/env.txt" 2>&1
cat "$out/env.txt"
grep -q "check_wheels: OK" "$out/env.txt" || echo "run.sh: WARNING: the wheel check found problems (env.txt)"

step "probe -> probe.json, nvml-recording.json"
"$PY" -m minicpm_tui probe --json >"$out/probe.json" || echo "run.sh: probe --json failed (exit $?)"
"$PY" -m minicpm_tui probe --record-nvml "$out/nvml-recording.json" --force >/dev/null \
    || echo "run.sh: probe --record-nvml failed (exit $?)"

step "grid (trainings + sampler) -> grid.csv, failures.log, sampler.json"
if [ "$cpu" = 1 ]; then grid_args=(--cpu-rehearsal "${grid_args[@]}"); fi
"$PY" "$here/grid.py" --out "$out" "${grid_args[@]}"
grid_rc=$?

step "summary -> summary.md"
"$PY" "$here/summarise.py" "$out" >/dev/null && cat "$out/summary.md"

step "done (grid exit $grid_rc). Results in $out:"
ls -la "$out"
echo "Commit them: mkdir -p bench/results/\$(date +%F)-<machine> && cp <those files> there (see bench/results/README.md)."
exit "$grid_rc"
