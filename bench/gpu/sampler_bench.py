"""Measure the monitor's NVML sampler (core.telemetry.GpuSampler) on a real GPU: CPU time and latency.

    python sampler_bench.py --out sampler.json [--interval 1] [--duration 60] [--tree-pid PID]

Samples every ``--interval`` seconds for ``--duration`` seconds exactly as the monitor does (all metrics,
plus the per-process memory of ``--tree-pid``'s process tree, the way a run's workers are followed) and
records each sample's wall latency and this process's CPU time over the window. Start it beside a
training so NVML answers for a busy GPU. Stdlib + minicpm_tui + psutil; no torch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from grid import tree_pids  # noqa: E402  (this folder: one process-tree helper for the kit)

from minicpm_tui.core.nvml import Nvml  # noqa: E402
from minicpm_tui.core.telemetry import GpuSampler  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--tree-pid", type=int, default=0, help="follow this process tree's GPU memory")
    args = parser.parse_args()

    cpu0 = time.process_time()
    nvml = Nvml()
    sampler = GpuSampler(nvml, interval=args.interval,
                         pids=(lambda: tree_pids(args.tree_pid)) if args.tree_pid else None)
    first = sampler.sample()  # NVML init happens here; timed separately from the steady state
    init_s = time.process_time() - cpu0
    latencies: list[float] = []
    run_mem: list[float] = []
    cpu_start = time.process_time()
    wall_start = time.monotonic()
    deadline = wall_start + args.duration
    next_at = wall_start
    while True:
        next_at += args.interval
        now = time.monotonic()
        if next_at > deadline:
            break
        if next_at > now:
            time.sleep(next_at - now)
        t0 = time.perf_counter()
        sample = sampler.sample()
        latencies.append((time.perf_counter() - t0) * 1000.0)
        for gpu in sample.gpus:
            if gpu.run_memory_mib:
                run_mem.append(gpu.run_memory_mib)
    wall = time.monotonic() - wall_start
    cpu = time.process_time() - cpu_start
    report = {
        "interval_s": args.interval, "duration_s": round(wall, 2), "samples": len(latencies),
        "nvml_status": nvml.status, "first_sample": first.summary(),
        "cpu_time_s": round(cpu, 4), "cpu_pct_of_one_core": round(100.0 * cpu / wall, 3) if wall else None,
        "cpu_ms_per_sample": round(1000.0 * cpu / len(latencies), 3) if latencies else None,
        "init_cpu_s": round(init_s, 4),
        "latency_ms": {"median": round(statistics.median(latencies), 3) if latencies else None,
                       "p95": round(percentile(latencies, 0.95), 3), "max": round(max(latencies, default=0), 3),
                       "min": round(min(latencies, default=0), 3)},
        "run_memory_mib_max": max(run_mem, default=None),
        "last_sample": sampler.latest.to_dict() if sampler.latest else None,
    }
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("samples", "nvml_status", "cpu_time_s", "latency_ms")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
