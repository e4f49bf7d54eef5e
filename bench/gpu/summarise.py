"""Turn the kit's grid.csv (+ sampler.json, probe.json) into summary.md, and compute the error figures.

    python bench/gpu/summarise.py DIR          # writes DIR/summary.md, prints it

``error_stats(pairs)`` is shared with tests/test_estimator_regression.py: errors are signed percentages
of the measured peak, (estimate - measured) / measured; negative is an under-estimate (an OOM for a user).
Stdlib only.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def measured_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows of real GPU runs that finished and have a measured peak (CPU rehearsal rows never count)."""
    return [r for r in rows if r.get("status") == "ok" and r.get("device") != "cpu-rehearsal"
            and (_num(r.get("measured_gib")) or 0) > 0]


def error_stats(pairs: list[tuple[float, float]]) -> dict[str, float | int | None]:
    """(estimate, measured) pairs -> n, median |error| %, worst under %, worst over %, mean signed %."""
    errors = [100.0 * (est - meas) / meas for est, meas in pairs if meas > 0]
    if not errors:
        return {"n": 0, "median_abs_pct": None, "worst_under_pct": None, "worst_over_pct": None,
                "mean_pct": None}
    return {"n": len(errors), "median_abs_pct": statistics.median(abs(e) for e in errors),
            "worst_under_pct": min(min(errors), 0.0), "worst_over_pct": max(max(errors), 0.0),
            "mean_pct": statistics.fmean(errors)}


def column_stats(rows: list[dict[str, str]], column: str) -> dict[str, float | int | None]:
    pairs = [(_num(r.get(column)), _num(r.get("measured_gib"))) for r in rows]
    return error_stats([(e, m) for e, m in pairs if e is not None and m is not None])


def _pct(value: float | int | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


def render(out: Path) -> str:
    rows = read_rows(out / "grid.csv")
    good = measured_rows(rows)
    device = next((r.get("gpu_name") for r in rows if r.get("gpu_name")), "?")
    lines = [f"# GPU kit results: {device}", ""]
    total = len(rows)
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r.get("status", "?")] = by_status.get(r.get("status", "?"), 0) + 1
    lines.append(f"{total} grid points: " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) + ".")
    lines.append("Measured peak = max(NVML per-process peak of the run's processes, torch max reserved); "
                 "error = (estimate - measured) / measured; negative = under-estimate.")
    lines += ["", "## Peak memory per GPU: estimate vs measured", "",
              "| estimator | n | median abs error | worst under | worst over | mean |", "|---|---|---|---|---|---|"]
    for label, column in (("minicpm-tui estimator", "estimate_gib"), ("minicpm-tui planner", "planner_gib"),
                          ("DeepSpeed estimators (model states only)", "ds_estimator_gib"),
                          ("16 bytes x params", "rule16_gib")):
        s = column_stats(good, column)
        median = "n/a" if s["median_abs_pct"] is None else f"{s['median_abs_pct']:.1f}%"
        lines.append(f"| {label} | {s['n']} | {median} | {_pct(s['worst_under_pct'])} | "
                     f"{_pct(s['worst_over_pct'])} | {_pct(s['mean_pct'])} |")
    lines += ["", "Targets (issue 8): median abs error <= 10%, no under-estimate worse than -5%.", "",
              "## Points", "",
              "| id | status | estimate GiB | measured GiB | error | torch reserved | NVML proc | tokens/s | note |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        err = _num(r.get("error_pct"))
        lines.append(f"| {r['id']} | {r.get('status', '')} | {r.get('estimate_gib', '')} | "
                     f"{r.get('measured_gib', '')} | {'' if err is None else f'{err:+.1f}%'} | "
                     f"{r.get('torch_reserved_gib', '')} | {r.get('nvml_proc_peak_gib', '')} | "
                     f"{r.get('tokens_per_s', '')} | {r.get('note', '')} |")
    sampler = out / "sampler.json"
    if sampler.is_file():
        data = json.loads(sampler.read_text(encoding="utf-8"))
        lat = data.get("latency_ms") or {}
        lines += ["", "## Monitor NVML sampler (core.telemetry.GpuSampler)", "",
                  f"{data.get('samples')} samples at {data.get('interval_s')} s over {data.get('duration_s')} s "
                  f"(NVML: {data.get('nvml_status')}): CPU {data.get('cpu_time_s')} s in all "
                  f"({data.get('cpu_pct_of_one_core')}% of one core, {data.get('cpu_ms_per_sample')} ms per sample); "
                  f"latency per sample median {lat.get('median')} ms, p95 {lat.get('p95')} ms, "
                  f"max {lat.get('max')} ms. First sample: {data.get('first_sample')}"]
    probe = out / "probe.json"
    if probe.is_file():
        try:
            data = json.loads(probe.read_text(encoding="utf-8"))
            gpus = data.get("gpus") or []
            lines += ["", "## Probe", "", f"status {data.get('status')}, {len(gpus)} GPU(s): " +
                      ", ".join(f"{g.get('name')} {g.get('memory_total_mib')} MiB cc {g.get('compute_capability')}"
                                for g in gpus)]
        except (ValueError, AttributeError):
            lines += ["", "## Probe", "", "probe.json is not valid JSON (see run.log)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: summarise.py DIR (holding grid.csv)", file=sys.stderr)
        return 2
    out = Path(args[0])
    if not (out / "grid.csv").is_file():
        print(f"summarise: {out / 'grid.csv'} not found", file=sys.stderr)
        return 1
    text = render(out)
    (out / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
