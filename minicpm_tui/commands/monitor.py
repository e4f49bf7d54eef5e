"""`minicpm-tui monitor RUN_DIR`: follow a run. The TUI screen by default; --plain for SSH, pipes and `watch`.

--plain on a terminal redraws a compact block; when stdout is not a terminal it prints a line per change
(phase changes, progress, a heartbeat) and ends when the run ends, with the run's exit code as its own.
--once prints one snapshot (--json: for scripts). Every mode exits by the same rule (EXIT_CODES, in --help).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from minicpm_tui.core.errors import UserError

HEARTBEAT_S = 60.0  # non-TTY: a status line at least this often while nothing changes
EXIT_CODES = """exit codes (every mode: --plain, --once, --json and the TUI, judged when it returns):
  0    the run finished or was stopped, or has not ended yet (--once/--json/TUI: starting,
       running, never started)
  N    the run failed with exit code N (1 when its code is not known: died, ended)
  2    a RUN_DIR or flag that cannot be used; --plain of a run never started (without --wait)
  130  Ctrl-C in --plain (the run goes on)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXIT_CODES
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (see `minicpm-tui runs`)")
    parser.add_argument("--plain", action="store_true",
                        help="line-oriented view for any terminal, SSH and pipes (no TUI)")
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit (works under `watch`)")
    parser.add_argument("--json", action="store_true", help="print one snapshot as JSON and exit (implies --once)")
    parser.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between updates (default 2)")
    parser.add_argument("--no-gpu", action="store_true", help="do not sample GPUs through NVML")
    parser.add_argument("--wait", action="store_true",
                        help="wait for a run that has not started yet instead of exiting")


def _check_dir(raw: str) -> Path:
    from minicpm_tui.core.runner import require_run_dir

    return require_run_dir(raw, fix="see `minicpm-tui runs` for the runs on this machine")


def _gpu_sampler(run_dir: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    from minicpm_tui.core import runner
    from minicpm_tui.core.telemetry import GpuSampler

    cache: dict[str, Any] = {"at": 0.0, "pids": []}

    def pids() -> list[int]:
        # Scanning /proc costs a little; the run's process set changes rarely.
        if time.time() - cache["at"] > 15:
            cache["pids"], cache["at"] = runner.run_pids(run_dir), time.time()
        return cache["pids"]

    return GpuSampler(pids=pids)


def _block(snap: Any, gpu: Any) -> list[str]:
    from minicpm_tui.core.monitor import fmt_seconds, status_line

    # A run started by hand has no attempt number (0); its elapsed time is the run's own, as in the TUI
    # (the trainer's clock starts at the first step: "-" for a run that is still loading).
    attempt = f"  attempt {snap.attempt}" if snap.attempt else ""
    if snap.resumed_from is not None:
        attempt += f"  resumed from step {snap.resumed_from}"
    elapsed = snap.wall_s if snap.wall_s is not None else snap.elapsed_s
    lines = [f"{snap.run_dir}{attempt}  pid {snap.pid or '-'}  {snap.how or ''}".rstrip(),
             status_line(snap),
             f"elapsed {fmt_seconds(elapsed)}  remaining {fmt_seconds(snap.remaining_s)}  "
             f"phases {' > '.join(snap.phases_seen)}"]
    if gpu is not None:
        lines.append(gpu.summary())
    if snap.last_checkpoint:
        lines.append(f"last checkpoint {snap.last_checkpoint}")
    if snap.note:
        lines.append(f"note: {snap.note}")
    if snap.diagnosis is not None:
        lines.append(f"diagnosis: {snap.diagnosis.one_line()}")
    return lines


def _final(snap: Any) -> str:
    text = f"run {snap.status}"
    if snap.exit_code is not None:
        text += f" (exit {snap.exit_code})"
    if snap.loss is not None:
        text += f": final loss {snap.loss:.4f}"
    if snap.eval_loss is not None:
        text += f", eval loss {snap.eval_loss:.4f}"
    if snap.total_steps:
        text += f", steps {snap.step or 0}/{snap.total_steps}"
    return text


def _exit_code(snap: Any) -> int:
    """EXIT_CODES for a snapshot: 0 until the run has ended, then 0 for a success, else its exit code."""
    if not snap.ended or snap.status in ("finished", "stopped"):
        return 0  # a stop's SIGTERM may leave a non-zero code: the stop is what was asked for
    code = int(snap.exit_code) if snap.exit_code is not None else 1
    return code if 0 < code < 256 else 1


def plain_loop(run_dir: Path, *, interval: float = 2.0, gpu: bool = True, wait: bool = False,
               out: Any = None) -> int:
    """The --plain monitor; returns the run's exit code once it has ended."""
    from minicpm_tui.core.monitor import RunFollower, status_line

    out = out or sys.stdout
    tty = out.isatty()
    follower = RunFollower(run_dir, status_every=max(interval, 0.5))
    sampler = _gpu_sampler(run_dir, gpu)
    last_line = ""
    last_note = ""
    last_phase = ""
    last_print = 0.0
    drawn = 0
    gpu_note_shown = False
    try:
        while True:
            snap = follower.poll()
            sample = sampler.sample() if sampler is not None else None
            if snap.status == "never" and not wait:
                raise UserError("this run has not been started", where=str(run_dir),
                                fix=f"start it with `minicpm-tui run {run_dir}`, or pass --wait")
            if tty:
                # Cut to the width: a wrapped line would throw off the cursor-up redraw.
                width = max(20, shutil.get_terminal_size().columns - 1)
                lines = [line[:width] for line in _block(snap, sample)]
                if drawn:
                    out.write(f"\x1b[{drawn}F\x1b[J")  # back to the block's first line, clear below
                out.write("\n".join(lines) + "\n")
                out.flush()
                drawn = len(lines)
            else:
                now = time.time()
                for phase in snap.phases_seen[snap.phases_seen.index(last_phase) + 1 if last_phase else 0:]:
                    out.write(f"{time.strftime('%H:%M:%S')} phase: {phase}\n")
                    last_phase = phase
                if snap.note and snap.note != last_note:  # a damaged manifest, a run started by hand
                    out.write(f"{time.strftime('%H:%M:%S')} note: {snap.note}\n")
                    last_note = snap.note
                if sample is not None and not sample.ok and not gpu_note_shown:
                    out.write(f"{time.strftime('%H:%M:%S')} gpu: {sample.summary()}\n")
                    gpu_note_shown = True
                line = status_line(snap)
                if sample is not None and sample.ok:
                    line += "  " + sample.summary()
                if line != last_line or now - last_print >= HEARTBEAT_S:
                    out.write(f"{time.strftime('%H:%M:%S')} {line}\n")
                    last_line, last_print = line, now
                out.flush()
            if snap.ended:
                if snap.diagnosis is not None and not tty:
                    out.write(f"diagnosis: {snap.diagnosis.one_line()}\n")
                out.write(_final(snap) + "\n")
                out.flush()
                return _exit_code(snap)
            time.sleep(interval)
    except KeyboardInterrupt:
        # Over SSH, Ctrl-C on a long run: say that only the watching ended (the run has its own session).
        print(f"\nminicpm-tui: stopped watching; the run goes on (`minicpm-tui monitor {run_dir}` to watch it "
              f"again, `minicpm-tui stop {run_dir}` to stop it)", file=sys.stderr)
        return 130
    finally:
        if sampler is not None:
            sampler.nvml.shutdown()


def run(args: argparse.Namespace) -> int:
    from minicpm_tui.core import runner
    from minicpm_tui.core.monitor import RunFollower

    run_dir = _check_dir(args.run_dir)
    from minicpm_tui.commands._numbers import check_number

    check_number(args.interval, "--interval", above=True, example="2")
    runner.watch_run(run_dir)  # a run started by hand shows up in `runs` from now on
    if args.once or args.json:
        snap = RunFollower(run_dir).poll()
        sampler = _gpu_sampler(run_dir, not args.no_gpu)
        sample = sampler.sample() if sampler is not None else None
        if args.json:
            data = snap.to_dict()
            data["gpu"] = sample.to_dict() if sample is not None else None
            print(json.dumps(data, indent=2))
        else:
            print("\n".join(_block(snap, sample)))
        return _exit_code(snap)
    if not args.plain and sys.stdout.isatty():
        from minicpm_tui.tui import gc_paused_for_startup

        with gc_paused_for_startup():
            try:
                from minicpm_tui.tui.app import run_monitor
            except ImportError as exc:
                print(f"minicpm-tui: the TUI monitor is not available ({exc}); showing --plain",
                      file=sys.stderr)
            else:
                code = int(run_monitor(run_dir) or 0)
                return code or _exit_code(RunFollower(run_dir).poll())
    return plain_loop(run_dir, interval=args.interval, gpu=not args.no_gpu, wait=args.wait)
