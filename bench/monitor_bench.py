"""How much does `minicpm-tui monitor --plain` cost while a run writes logs? (target: <= 1% of one core, flat RSS)

A synthetic run, launched through the real runner (supervisor, manifest), appends 10 log lines a second to its
stderr log (tqdm bars and INFO lines, as LLaMA-Factory does) and 10 lines a second to trainer_log.jsonl for
--duration seconds. The monitor follows it with stdout going to a file (its non-TTY mode), exactly as
`minicpm-tui monitor RUN --plain > file` would. Its CPU time (utime + stime from /proc) and RSS are sampled
every second.

    .venv/bin/python bench/monitor_bench.py [--duration 60] [--interval 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITER = r'''
import json, sys, time
duration = float(sys.argv[1])
total = int(duration * 10)
start = time.time()
with open("out/trainer_log.jsonl", "a", buffering=1) as log:
    print("[INFO|trainer.py:1478] 2026-01-01 00:00:00,000 >>   Total optimization steps = %d" % total,
          file=sys.stderr, flush=True)
    print("[INFO|trainer.py:1469] 2026-01-01 00:00:00,000 >> ***** Running training *****", file=sys.stderr,
          flush=True)
    for step in range(1, total + 1):
        pct = 100 * step // total
        if step % 2:
            sys.stderr.write("%3d%%|#####     | %d/%d [00:%02d<00:%02d,  9.9it/s]\r" % (pct, step, total, step % 60, 1))
        else:
            sys.stderr.write("[INFO|bench.py:1] 2026-01-01 00:00:00,000 >> a log line number %d\n" % step)
        sys.stderr.flush()
        log.write(json.dumps({"current_steps": step, "total_steps": total, "loss": 2.0 / step ** 0.1,
                              "lr": 1e-4, "epoch": step / total, "percentage": pct,
                              "elapsed_time": "0:00:%02d" % (step // 10 % 60), "remaining_time": "0:00:10"}) + "\n")
        time.sleep(max(0.0, start + step * 0.1 - time.time()))
'''


def _cpu_and_rss(pid: int) -> tuple[float, int, int] | None:
    """(cpu seconds, current RSS KiB, peak RSS KiB) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as handle:
            status = dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return cpu, int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=2.0, help="the monitor's --interval")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of start-up left out of the rate")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    os.environ["MINICPM_TUI_HOME"] = str(tmp / "home")
    from minicpm_tui.core import runner

    run_dir = tmp / "run"
    (run_dir / "out").mkdir(parents=True)
    (run_dir / "writer.py").write_text(WRITER)
    (run_dir / "train.yaml").write_text("output_dir: out\n")
    (run_dir / "single_node.sh").write_text(f'exec "{sys.executable}" writer.py {args.duration}\n')
    manifest = runner.launch(run_dir)
    monitor_out = tmp / "monitor.txt"
    with open(monitor_out, "w") as handle:
        monitor = subprocess.Popen([sys.executable, "-m", "minicpm_tui", "monitor", str(run_dir), "--plain",
                                    "--interval", str(args.interval)], stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    started = time.time()
    samples: list[tuple[float, float, int, int]] = []
    try:
        while monitor.poll() is None:
            got = _cpu_and_rss(monitor.pid)
            if got:
                samples.append((time.time() - started, *got))
            time.sleep(1.0)
    finally:
        if monitor.poll() is None:
            os.killpg(monitor.pid, signal.SIGKILL)
            monitor.wait()
        with contextlib.suppress(ProcessLookupError):
            if manifest.pgid and runner.group_pids(manifest.pgid):
                os.killpg(manifest.pgid, signal.SIGKILL)
    if not samples:
        print("the monitor exited before it could be measured:", monitor_out.read_text()[-2000:])
        return 1
    warm = [s for s in samples if s[0] >= args.warmup] or samples
    t0, c0 = warm[0][0], warm[0][1]
    t1, c1 = samples[-1][0], samples[-1][1]
    rate = (c1 - c0) / max(t1 - t0, 1e-9) * 60.0  # CPU seconds per minute, steady state
    total_rate = samples[-1][1] / max(samples[-1][0], 1e-9) * 60.0
    rss_at_10 = next((s[2] for s in samples if s[0] >= 10), samples[0][2])
    result = {
        "duration_s": round(samples[-1][0], 1),
        "monitor_exit_code": monitor.returncode,
        "cpu_s_total": round(samples[-1][1], 3),
        "cpu_s_per_min_steady": round(rate, 3),
        "cpu_pct_of_one_core_steady": round(rate / 60.0 * 100.0, 3),
        "cpu_s_per_min_including_startup": round(total_rate, 3),
        "peak_rss_mib": round(max(s[3] for s in samples) / 1024, 1),
        "rss_mib_at_10s": round(rss_at_10 / 1024, 1),
        "rss_mib_at_end": round(samples[-1][2] / 1024, 1),
        "lines_written": int(args.duration * 10) * 2,
        "monitor_lines": len(monitor_out.read_text().splitlines()),
        "last_monitor_line": monitor_out.read_text().strip().splitlines()[-1] if monitor_out.stat().st_size else "",
    }
    print(json.dumps(result, indent=2))
    ok = result["cpu_pct_of_one_core_steady"] <= 1.0
    print(f"{'PASS' if ok else 'OVER TARGET'}: {result['cpu_s_per_min_steady']} CPU s/min "
          f"({result['cpu_pct_of_one_core_steady']}% of one core), peak RSS {result['peak_rss_mib']} MiB "
          f"(RSS {result['rss_mib_at_10s']} MiB at 10 s -> {result['rss_mib_at_end']} MiB at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
