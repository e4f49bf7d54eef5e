"""The monitor's data layer and the plain monitor, against real processes replaying a real run's logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _runner_util import FIXTURES, kill_run, make_replay_run, wait_status

from minicpm_tui.core import runner
from minicpm_tui.core.monitor import RunFollower, TextFollower, parse_hms, status_line


@pytest.fixture()
def replay_run(tmp_path, state_home):
    made: list[Path] = []

    def make(name: str = "replay", pause: float = 0.6, exit_code: int = 0, extra: str = "") -> Path:
        run_dir = make_replay_run(tmp_path / name, pause, exit_code, extra)
        made.append(run_dir)
        return run_dir

    yield make
    for run_dir in made:
        kill_run(run_dir)


def test_text_follower_partial_lines_truncation_and_replacement(tmp_path):
    path = tmp_path / "log.jsonl"
    follower = TextFollower(path)
    assert follower.read_lines() == []  # not there yet
    path.write_bytes(b'{"a": 1}\n{"b"')
    assert follower.read_lines() == ['{"a": 1}']
    with open(path, "ab") as handle:
        handle.write(b': 2}\n')
    assert follower.read_lines() == ['{"b": 2}']
    path.write_bytes(b'{"c": 3}\n')  # truncated and rewritten (overwrite_output_dir)
    assert follower.read_lines() == ['{"c": 3}'] and follower.resets == 1
    replacement = tmp_path / "new"
    replacement.write_bytes(b'{"d": 4}\n{"e": 5}\n')
    os.replace(replacement, path)  # same size or bigger, new inode
    assert follower.read_lines() == ['{"d": 4}', '{"e": 5}']
    cr = TextFollower(path, carriage_returns=True)
    path.write_bytes(b" 1/6 [00:00<00:01]\r 2/6 [00:01<00:01]\rtail")
    assert cr.read_lines() == [" 1/6 [00:00<00:01]", " 2/6 [00:01<00:01]"]


def test_parse_hms():
    assert parse_hms("0:00:12") == 12 and parse_hms("03:12") == 192 and parse_hms("1 day, 1:00:00") == 90000
    assert parse_hms("?") is None and parse_hms(None) is None


def test_follower_sees_phases_metrics_and_end_incrementally(replay_run):
    run_dir = replay_run(pause=0.5)
    runner.launch(run_dir)
    follower = RunFollower(run_dir, status_every=0.1)
    seen_steps = set()
    for snap in follower.follow(interval=0.1):
        if snap.step is not None:
            seen_steps.add(snap.step)
    assert snap.status == "finished" and snap.phase == "done" and snap.exit_code == 0
    assert snap.phases_seen == ["starting", "tokenizing", "loading model", "training", "evaluating", "saving",
                                "done"]
    assert snap.step == 6 and snap.total_steps == 6 and snap.percent == 100.0
    assert abs(snap.loss - 6.082198) < 1e-5 and abs(snap.eval_loss - 6.073257) < 1e-5
    assert [s for s, _ in snap.losses] == [1, 2, 3, 4, 5, 6] and [s for s, _ in snap.eval_losses] == [3, 6]
    # The schedule's whole history, one point per step (the eval lines carry no lr).
    assert [s for s, _ in snap.lrs] == [1, 2, 3, 4, 5, 6] and snap.lrs[-1][1] == snap.lr
    assert snap.last_checkpoint == "checkpoint-6" and snap.vram_allocated_gib == 0.0
    # LLaMA-Factory logs "vram_reserved": -0.0 on the CPU; `monitor --once --json` printed it as -0.0.
    assert str(snap.vram_reserved_gib) == "0.0"
    assert len(seen_steps) >= 2  # progress was seen along the way, not only at the end
    assert "finished" in status_line(snap) and "exit 0" in status_line(snap)


def test_a_fresh_start_ignores_an_earlier_trainings_lines_in_trainer_log(replay_run):
    # A run that died before its first checkpoint leaves trainer_log.jsonl behind; without
    # overwrite_output_dir LLaMA-Factory appends to it, and `runs` and the monitor showed the old
    # training's 90/100 and its losses as the new run's until (and in the history after) it logged.
    run_dir = replay_run(name="stale", pause=0.4, extra="sleep 1.5\n")
    (run_dir / "train.yaml").write_text("output_dir: out\noverwrite_output_dir: false\n")
    (run_dir / "out").mkdir()
    stale = [{"current_steps": step, "total_steps": 100, "loss": 9.5, "lr": 1e-5, "epoch": 1.0,
              "percentage": float(step), "elapsed_time": "1:00:00", "remaining_time": "0:10:00"}
             for step in (80, 90)]
    (run_dir / "out" / "trainer_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in stale))
    runner.launch(run_dir)
    follower = RunFollower(run_dir, status_every=0)
    snap = follower.poll()
    assert snap.status in ("starting", "running")
    assert runner.run_status(run_dir).step is None and runner.run_status(run_dir).progress == "-"
    assert snap.step is None and snap.total_steps is None and snap.loss is None and snap.losses == []
    for snap in follower.follow(interval=0.1):
        assert snap.total_steps in (None, 6), snap.total_steps
    assert snap.status == "finished" and snap.step == 6 and snap.total_steps == 6
    assert [s for s, _ in snap.losses] == [1, 2, 3, 4, 5, 6] and all(loss < 9 for _, loss in snap.losses)
    assert runner.run_status(run_dir).progress == "6/6 (100%)"
    # Nothing is lost: the earlier lines are still in the file, above this run's.
    kept = (run_dir / "out" / "trainer_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["current_steps"] for line in kept[:2]] == [80, 90] and len(kept) == 2 + 9


def test_a_resumed_attempt_keeps_the_earlier_lines_of_trainer_log(replay_run):
    run_dir = replay_run(name="resumed", pause=0.5)
    (run_dir / "train.yaml").write_text("output_dir: out\noverwrite_output_dir: false\n")
    (run_dir / "out" / "checkpoint-3").mkdir(parents=True)
    (run_dir / "out" / "trainer_log.jsonl").write_text("".join(json.dumps(
        {"current_steps": step, "total_steps": 6, "loss": loss, "lr": 1e-3, "epoch": 0.5}) + "\n"
        for step, loss in ((3, 6.1), (4, 6.0))))
    manifest = runner.launch(run_dir, resume=True)
    assert manifest.current["trainer_log_from"]["size"] > 0 and manifest.current["resume_step"] == 3
    follower = RunFollower(run_dir, status_every=0)
    snap = follower.poll()
    # The resumed-from history shows up to its checkpoint (step 4 is trained again); progress is this attempt's.
    assert (snap.step, snap.losses, runner.run_status(run_dir).progress) == (None, [(3, 6.1)], "-")
    assert snap.resumed_from == 3 and snap.to_dict()["resumed_from"] == 3


def _monitor(run_dir: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minicpm_tui", "monitor", str(run_dir), *args],
                          capture_output=True, text=True, timeout=120, **kw)


def test_plain_monitor_piped_shows_phases_in_order_and_final_loss(replay_run, tmp_path):
    run_dir = replay_run(pause=0.8)
    runner.launch(run_dir)
    log = tmp_path / "monitor.txt"
    with open(log, "w") as handle:
        proc = subprocess.run([sys.executable, "-m", "minicpm_tui", "monitor", str(run_dir), "--plain",
                               "--interval", "0.2"], stdout=handle, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    phases = [line.split("phase: ")[1] for line in text.splitlines() if " phase: " in line]
    assert phases == ["starting", "tokenizing", "loading model", "training", "evaluating", "saving", "done"]
    assert text.splitlines()[-1] == "run finished (exit 0): final loss 6.0822, eval loss 6.0733, steps 6/6"
    assert "gpu: no GPU data" in text or "gpu" in text  # no NVML here: said once, not fatal
    assert "\x1b[" not in text  # no terminal control codes into a file

    once = _monitor(run_dir, "--once", "--json")
    data = json.loads(once.stdout)
    assert once.returncode == 0 and data["status"] == "finished" and data["phase"] == "done"
    assert data["loss"] == pytest.approx(6.082198) and data["losses"][-1][0] == 6 and data["ended"] is True
    assert "gpu" in data
    text_once = _monitor(run_dir, "--once", "--no-gpu")
    assert text_once.returncode == 0 and "step 6/6" in text_once.stdout


def test_plain_monitor_of_a_failed_run_exits_with_its_code_and_diagnosis(replay_run, tmp_path):
    run_dir = replay_run(name="failing", pause=0.1, exit_code=1,
                         extra=f'cat "{FIXTURES}/missing_template.stderr.log" >&2; exit 1\n')
    runner.launch(run_dir)
    wait_status(run_dir, ("failed",), 30)
    proc = _monitor(run_dir, "--plain", "--interval", "0.2")
    assert proc.returncode == 1
    assert "diagnosis: template cpm3 is not registered" in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("run failed (exit 1)")
    once = _monitor(run_dir, "--once", "--json")
    data = json.loads(once.stdout)
    assert data["diagnosis"]["kind"] == "missing_template"
    # QA: --once exited 0 on this failed run while --plain exited 1. Every mode has the same rule now.
    assert once.returncode == 1, once.stderr
    text = _monitor(run_dir, "--once", "--no-gpu")
    assert text.returncode == 1 and "failed" in text.stdout, text.stdout + text.stderr


def test_monitor_exit_codes_are_one_rule_and_in_its_help(capsys):
    from types import SimpleNamespace

    from minicpm_tui.cli import main
    from minicpm_tui.commands.monitor import _exit_code

    def snap(status: str, code: int | None, ended: bool = True) -> SimpleNamespace:
        return SimpleNamespace(status=status, exit_code=code, ended=ended)

    assert [_exit_code(snap("running", None, False)), _exit_code(snap("never", None, False)),
            _exit_code(snap("finished", 0)), _exit_code(snap("stopped", 143)), _exit_code(snap("failed", 3)),
            _exit_code(snap("failed", None)), _exit_code(snap("died", None)), _exit_code(snap("ended", None)),
            _exit_code(snap("failed", -9))] == [0, 0, 0, 0, 3, 1, 1, 1, 1]
    with pytest.raises(SystemExit):
        main(["monitor", "--help"])
    text = capsys.readouterr().out
    assert "exit codes (every mode: --plain, --once, --json and the TUI" in text
    assert "  N    the run failed with exit code N" in text and "130  Ctrl-C in --plain" in text


def test_plain_monitor_of_a_run_started_by_hand(tmp_path, state_home):
    """README: a run started by hand (`bash single_node.sh > train.log 2>&1`) is known from its processes, and
    its end shows as died or stopped with its output's file. --once said "attempt 0" and "elapsed -" for
    it (the trainer's clock, which a run still loading has not started); piped, --plain never said the note."""
    from _runner_util import wait_for, write_script

    run_dir = tmp_path / "hand"
    write_script(run_dir, "echo hand-output >&2\nsleep 3\n")
    (run_dir / "train.yaml").write_text("output_dir: out\n")
    with open(run_dir / "train.log", "w") as log:
        proc = subprocess.Popen(["bash", "single_node.sh"], cwd=run_dir, stdout=log, stderr=log,
                                start_new_session=True)
    try:
        wait_for(lambda: runner.run_status(run_dir).status == "running", 10, "seen by its processes")
        once = _monitor(run_dir, "--once", "--no-gpu")
        head, _, timing = once.stdout.splitlines()[:3]
        assert head == f"{run_dir}  pid {proc.pid}  by hand", once.stdout
        assert timing.startswith("elapsed 0:00:0"), once.stdout
        piped = _monitor(run_dir, "--plain", "--interval", "0.2", "--no-gpu")
        notes = [line for line in piped.stdout.splitlines() if " note: " in line]
        assert len(notes) == 1 and f"note: started by hand (pid {proc.pid}); it ended before its first" in notes[0]
        assert str(run_dir / "train.log") in notes[0]
        assert piped.stdout.splitlines()[-1] == "run died" and piped.returncode == 1, piped.stdout
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait()


def test_monitor_of_a_run_never_started_and_a_missing_dir(tmp_path, state_home):
    (tmp_path / "idle").mkdir()
    (tmp_path / "idle" / "train.yaml").write_text("output_dir: output\n")
    proc = _monitor(tmp_path / "idle", "--plain")
    assert proc.returncode == 2 and "has not been started" in proc.stderr and "Traceback" not in proc.stderr
    proc = _monitor(tmp_path / "missing", "--plain")
    assert proc.returncode == 2 and "no such run directory" in proc.stderr


def test_monitor_refuses_a_folder_that_is_no_run_and_does_not_list_it(tmp_path, state_home):
    (tmp_path / "photos").mkdir()
    for args in (("--once",), ("--plain",), ("--once", "--json")):
        proc = _monitor(tmp_path / "photos", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and "not a run directory" in proc.stderr and "train.yaml" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "minicpm_tui", "runs", "--watch", str(tmp_path / "photos")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    listed = subprocess.run([sys.executable, "-m", "minicpm_tui", "runs", "--json"], capture_output=True, text=True,
                            timeout=60)
    assert json.loads(listed.stdout) == []


def test_follower_starts_over_on_a_new_attempt(replay_run):
    run_dir = replay_run(name="again", pause=0.05)
    runner.launch(run_dir)
    wait_status(run_dir, ("finished",), 30)
    follower = RunFollower(run_dir, status_every=0)
    assert follower.poll().phase == "done"
    runner.launch(run_dir)  # attempt 2 (overwrite_output_dir: true)
    snap = follower.poll()
    assert snap.attempt == 2
    wait_status(run_dir, ("finished",), 30)
    snap = follower.poll()
    assert snap.phase == "done" and snap.phases_seen[0] == "starting" and snap.attempt == 2


def test_ctrl_c_in_the_plain_monitor_says_the_run_goes_on(replay_run):
    # Ctrl-C ended `monitor --plain` with exit 130 and not a word: over SSH on a long run, was it stopped?
    import signal
    import time

    run_dir = replay_run(pause=3.0)
    runner.launch(run_dir)
    proc = subprocess.Popen([sys.executable, "-m", "minicpm_tui", "monitor", str(run_dir), "--plain", "--interval",
                             "0.2", "--no-gpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "stopped watching" in err and f"minicpm-tui stop {run_dir}" in err
    assert RunFollower(run_dir).poll().status == "running"  # the training was not touched
