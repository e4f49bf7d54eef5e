"""Helpers for the runner/monitor tests: wait for runs, and clean up every process a test started."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from minicpm_tui.core import runner


def wait_status(run_dir: Path, statuses: tuple[str, ...], timeout: float = 120.0) -> runner.RunInfo:
    deadline = time.time() + timeout
    info = runner.run_status(run_dir)
    while time.time() < deadline:
        info = runner.run_status(run_dir)
        if info.status in statuses:
            return info
        time.sleep(0.2)
    raise AssertionError(f"{run_dir}: still {info.status} after {timeout} s, wanted {statuses}; "
                         f"logs: {tail_logs(run_dir)}")


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def tail_logs(run_dir: Path, chars: int = 3000) -> str:
    out = []
    for path in sorted((Path(run_dir) / "logs").glob("*.log")):
        out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
    return "\n".join(out)


def kill_run(run_dir: Path) -> None:
    """Kill what a test's run left behind: each attempt's process group and its supervisor (ours only)."""
    manifest_path = Path(run_dir) / runner.MANIFEST
    if not manifest_path.is_file():
        return
    try:
        attempts = json.loads(manifest_path.read_text()).get("attempts", [])
    except (ValueError, AttributeError):
        attempts = None
    if not isinstance(attempts, list) or not all(isinstance(a, dict) for a in attempts):
        # A damaged manifest (a test made it so): what `stop` finds without it.
        found = runner._unrecorded_procs(Path(run_dir).resolve())
        for proc in found[0]() if found else []:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGKILL)
        return
    for attempt in attempts:
        pgid = attempt.get("pgid")
        sup = attempt.get("supervisor_pid")
        # The launch group and everything carrying the attempt's tag (torchrun workers live in sessions of
        # their own, outside the launch group).
        for proc in runner.processes_of(pgid, attempt.get("run_tag"), exclude=[sup] if sup else []):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGKILL)
        info = runner.proc_info(sup) if sup else None
        if info is not None and any("run_supervisor.py" in part for part in info.cmdline):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(sup, signal.SIGKILL)


def write_script(run_dir: Path, body: str, name: str = "single_node.sh") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    path.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body)
    return path


FIXTURES = Path(__file__).parent / "fixtures" / "logs"

# Replays tests/fixtures/logs/sft_lora.* (captured from a real LLaMA-Factory run) in stages, the way the
# run wrote them: stderr (tqdm with \r), stdout, trainer_log.jsonl by a background thread (last line torn).
REPLAY = r'''
import sys, time, pathlib
fx = pathlib.Path(sys.argv[1]); pause = float(sys.argv[2])
err = (fx / "sft_lora.stderr.log").read_bytes()
out = (fx / "sft_lora.stdout.log").read_bytes()
log = (fx / "sft_lora.trainer_log.jsonl").read_bytes().splitlines(keepends=True)
pathlib.Path("out").mkdir(exist_ok=True)
tl = open("out/trainer_log.jsonl", "ab", buffering=0)
cut1 = err.index(b"***** Running training *****")
cut2 = err.index(b"Training completed")
def w(stream, data):
    stream.buffer.write(data); stream.flush()
w(sys.stderr, err[:cut1]); time.sleep(pause)
w(sys.stderr, err[cut1:cut1 + 200]); time.sleep(pause)
for line in log[:3]:
    tl.write(line)
time.sleep(pause)
w(sys.stderr, err[cut1 + 200:cut2]); w(sys.stdout, out)
for line in log[3:-1]:
    tl.write(line)
tl.write(log[-1][:20]); time.sleep(pause)     # a half-written last line
tl.write(log[-1][20:])
w(sys.stderr, err[cut2:])
time.sleep(pause)
sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
'''


def make_replay_run(run_dir: Path, pause: float = 0.6, exit_code: int = 0, extra: str = "") -> Path:
    """A run directory whose single_node.sh replays the captured run's logs (not started yet)."""
    write_script(run_dir, f'{extra}"{sys.executable}" replay.py "{FIXTURES}" {pause} {exit_code}\n')
    (run_dir / "replay.py").write_text(REPLAY)
    (run_dir / "train.yaml").write_text("output_dir: out\noverwrite_output_dir: true\n")
    return run_dir


# A stand-in for LLaMA-Factory's training loop as it shows in output_dir: LogCallback's trainer_log.jsonl lines
# (appended, one per logging step, with the trainer's clock since on_train_begin), then, when the loop ends,
# save_metrics("train")'s train_results.json and all_results.json. Env: OUT, STEPS, TOTAL, FIRST (a resumed
# run's first step), LOSS (the first loss), PACE (seconds per step), RESULTS=1, NAP (seconds asleep after the
# steps), CODE (exit code).
FAKE_TRAINER = r'''
import json, os, sys, time
from datetime import timedelta

out = os.environ.get("OUT", "out")
os.makedirs(out, exist_ok=True)
begin = time.time()
total, loss = int(os.environ["TOTAL"]), float(os.environ.get("LOSS", "2.0"))
for step in range(int(os.environ.get("FIRST", "1")), int(os.environ["STEPS"]) + 1):
    time.sleep(float(os.environ.get("PACE", "0")))
    elapsed = time.time() - begin
    line = {"current_steps": step, "total_steps": total, "loss": round(loss / step, 4), "lr": 1e-4,
            "epoch": step / total, "percentage": round(step / total * 100, 2),
            "elapsed_time": str(timedelta(seconds=int(elapsed))),
            "remaining_time": str(timedelta(seconds=int((total - step) * elapsed / step)))}
    with open(os.path.join(out, "trainer_log.jsonl"), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")
    print(line, flush=True)
if os.environ.get("RESULTS") == "1":
    for name in ("train_results.json", "all_results.json"):
        with open(os.path.join(out, name), "w") as handle:
            json.dump({"train_loss": loss}, handle)
time.sleep(float(os.environ.get("NAP", "0")))
sys.exit(int(os.environ.get("CODE", "0")))
'''


def write_fake_trainer(run_dir: Path) -> str:
    """Put the stand-in trainer into ``run_dir``; returns the single_node.sh line that runs it (as a child,
    so the script's shell is what a run by hand shows in the process table)."""
    (Path(run_dir) / "fake_trainer.py").write_text(FAKE_TRAINER)
    return f'"{sys.executable}" fake_trainer.py\n'
