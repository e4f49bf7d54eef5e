"""The runner with real processes (shell scripts and a small Python trainer stand-in): launch, manifest,
supervisor, registry, refusal, died detection, stop (graceful, TERM, KILL), resume, runs started by hand."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _runner_util import kill_run, wait_for, wait_status, write_script

from minicpm_tui.core import runner
from minicpm_tui.core.errors import UserError


@pytest.fixture()
def runs(tmp_path, state_home):
    """Run directories made by a test; every process they started is killed at the end."""
    made: list[Path] = []

    def make(name: str, body: str) -> Path:
        run_dir = tmp_path / name
        write_script(run_dir, body)
        made.append(run_dir)
        return run_dir

    yield make
    for run_dir in made:
        kill_run(run_dir)


def test_launch_records_manifest_and_finishes(runs):
    run_dir = runs("ok", 'echo "out $FOO"; echo "err line" >&2; echo "vram=$RECORD_VRAM abort=$LLAMABOARD_ENABLED"\n')
    manifest = runner.launch(run_dir, env={"FOO": "bar-secret"})
    assert manifest.status in ("running", "finished") and manifest.pgid == manifest.pid
    info = wait_status(run_dir, ("finished", "failed"), 30)
    assert info.status == "finished" and info.exit_code == 0
    data = json.loads((run_dir / "run_manifest.json").read_text())
    assert data["status"] == "finished" and data["exit_code"] == 0 and data["command"] == ["bash", "single_node.sh"]
    attempt = data["attempts"][0]
    assert attempt["host"] and attempt["started_at"] <= attempt["ended_at"] and attempt["env_keys"] == ["FOO"]
    assert "bar-secret" not in (run_dir / "run_manifest.json").read_text()  # values never written
    out = Path(attempt["stdout"]).read_text()
    assert "out bar-secret" in out and "vram=1 abort=1" in out
    assert "err line" in Path(attempt["stderr"]).read_text()
    listed = runner.list_runs()
    assert [r.run_dir for r in listed] == [run_dir.resolve()] and listed[0].status == "finished"


def test_the_wizards_smoke_attempt_is_not_shown_as_the_training(runs, capsys):
    """The wizard launches its smoke run through the runner (TRAIN_YAML=smoke/train.yaml), so `runs` and
    `monitor` read "finished 3/3 (100%)" for a run directory whose training had never been launched."""
    from minicpm_tui.cli import main

    run_dir = runs("smoked", "echo tiny\n")
    runner.launch(run_dir, env={"TRAIN_YAML": "smoke/train.yaml"})
    info = wait_status(run_dir, ("finished", "failed"), 30)
    assert info.status == "finished" and info.smoke and info.to_dict()["smoke"] is True
    assert info.note.startswith("the smoke run, a tiny model on the CPU, not the training")
    assert f"`minicpm-tui run {run_dir.resolve()}`" in info.note and "l on the wizard's Run step" in info.note_tui
    assert main(["runs"]) == 0
    assert "not the training" in capsys.readouterr().out
    # The training launched after it is the run again.
    runner.launch(run_dir)
    info = wait_status(run_dir, ("finished", "failed"), 30)
    assert (info.status, info.attempt, info.smoke, info.note) == ("finished", 2, False, "")


def test_failure_exit_code_is_recorded(runs):
    run_dir = runs("fail", "echo boom >&2; exit 3\n")
    runner.launch(run_dir)
    info = wait_status(run_dir, ("finished", "failed"), 30)
    assert info.status == "failed" and info.exit_code == 3


def test_killed_by_signal_reports_128_plus_n(runs):
    run_dir = runs("sig", "kill -9 $$\n")
    runner.launch(run_dir)
    info = wait_status(run_dir, ("finished", "failed"), 30)
    assert info.exit_code == 137


def test_second_live_launch_is_refused(runs):
    run_dir = runs("busy", "sleep 30\n")
    runner.launch(run_dir)
    with pytest.raises(UserError) as err:
        runner.launch(run_dir)
    assert "already running" in str(err.value) and "minicpm-tui stop" in str(err.value)
    assert err.value.exit_code == 1
    runner.stop(run_dir, grace=0, term_timeout=5)


def test_two_launches_at_once_start_one_training(runs):
    # Both passed the "already running" check; the second attempt, refused by the supervisor's run lock,
    # became the current one: the run showed "failed" (and `stop` had "nothing to stop") while it trained.
    import threading

    run_dir = runs("twice", "sleep 60\n")
    barrier, outcomes = threading.Barrier(2), []

    def go() -> None:
        barrier.wait()
        try:
            outcomes.append(runner.launch(run_dir).status)
        except UserError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes, key=len)[0] == "running" and "already starting" in sorted(outcomes, key=len)[1]
    manifest = json.loads((run_dir / "run_manifest.json").read_text())
    assert len(manifest["attempts"]) == 1
    assert runner.run_status(run_dir).status == "running"
    assert runner.stop(run_dir, grace=0, term_timeout=5).status == "stopped"


def test_a_copy_of_a_live_run_is_not_that_run(runs, tmp_path):
    # A run directory copied while it ran showed "running" with the original's pid, and `stop COPY`
    # stopped the original's training.
    import shutil

    run_dir = runs("orig", "sleep 60\n")
    runner.launch(run_dir)
    wait_status(run_dir, ("running",), 30)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    info = runner.run_status(copy)
    assert info.status == "unknown" and f"copied from {run_dir}" in info.note
    assert runner.stop(copy, grace=0, term_timeout=5).actions == ["not running (unknown); nothing to stop"]
    assert runner.run_pids(copy) == []
    assert runner.run_status(run_dir).status == "running"
    moved = tmp_path / "moved"
    run_dir.rename(moved)  # a moved run directory is still that run
    assert runner.run_status(moved).status == "running"
    assert runner.stop(moved, grace=0, term_timeout=5).status == "stopped"
    moved.rename(run_dir)  # for the fixture's clean-up
    info = runner.run_status(copy)  # the original ended: the copy did not die, it never ran
    assert info.status == "unknown" and f"copied from {run_dir}" in info.note


def _launch_and_move(runs, tmp_path: Path, body: str) -> tuple[Path, Path]:
    """A run launched in ``before`` and, once running, renamed to ``after``: (before, after)."""
    run_dir = runs("before", body)
    runner.launch(run_dir)
    wait_status(run_dir, ("running",), 30)
    moved = tmp_path / "after"
    run_dir.rename(moved)
    return run_dir, moved


def test_a_run_directory_moved_while_it_runs_records_its_end_and_keeps_its_logs(runs, tmp_path):
    # The supervisor wrote the manifest at the old path: after `mv`, a run that ended with exit 0 showed
    # "died" (no exit code recorded), and monitor read its logs and output_dir at the old place.
    run_dir, moved = _launch_and_move(runs, tmp_path, "echo hello; sleep 2\n")
    try:
        info = wait_status(moved, ("finished", "failed", "died"), 30)
        assert (info.status, info.exit_code) == ("finished", 0)
        manifest = runner.RunManifest.load(moved)
        assert manifest.stdout_log == moved / "logs" / "attempt-1.stdout.log"
        assert manifest.stdout_log.read_text() == "hello\n"
        # Nobody listed the runs while it ran: the supervisor moved its registry entry along at the end.
        wait_for(lambda: [d["run_dir"] for d in _registered()] == [str(moved)], 10, "registry entry moved")
        assert [(r.run_dir, r.status, r.exit_code) for r in runner.list_runs()] == [(moved, "finished", 0)]
    finally:
        moved.rename(run_dir)


def _registered() -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in (runner.state_dir() / "runs").glob("*.json")),
                  key=lambda d: d["run_dir"])


def test_runs_finds_a_run_directory_moved_while_it_runs(runs, tmp_path):
    # After `mv`, the run dropped out of `runs` (its registry entry named the old path) until the user
    # ran `runs --watch NEW_PATH`. Its processes' working directory moved along: that finds it.
    run_dir = runs("first", "sleep 60\n")
    runner.launch(run_dir)
    wait_status(run_dir, ("running",), 30)
    entry = runner.state_dir() / "runs" / f"{runner._registry_key(run_dir.resolve())}.json"
    tag = json.loads(entry.read_text())["run_tag"]
    assert tag == runner.RunManifest.load(run_dir).current["run_tag"]
    # An entry written before run tags were recorded is found by its key.
    entry.write_text(json.dumps({k: v for k, v in json.loads(entry.read_text()).items() if k != "run_tag"}))
    second, third = tmp_path / "second", tmp_path / "nested" / "third"
    third.parent.mkdir()
    run_dir.rename(second)
    try:
        listed = runner.list_runs()
        assert [(r.run_dir, r.status) for r in listed] == [(second, "running")]
        assert [(d["run_dir"], d["moved_from"]) for d in _registered()] == [(str(second), str(run_dir))]
        second.rename(third)  # moved again: found through the run tag
        assert [(r.run_dir, r.status) for r in runner.list_runs()] == [(third, "running")]
        assert [d["run_dir"] for d in _registered()] == [str(third)]
        # The same run registered at its new path too is listed once.
        runner.watch_run(third)
        assert [r.run_dir for r in runner.list_runs()] == [third]
        assert runner.stop(third, grace=0, term_timeout=5).status == "stopped"
    finally:
        (third if third.exists() else second).rename(run_dir)


def test_missing_script_and_dir_are_user_errors(tmp_path, state_home):
    with pytest.raises(UserError, match="no such run directory"):
        runner.launch(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="single_node.sh is missing"):
        runner.launch(tmp_path / "empty")


def test_died_when_supervisor_and_group_vanish(runs):
    run_dir = runs("die", "sleep 60\n")
    manifest = runner.launch(run_dir)
    sup = manifest.current["supervisor_pid"]
    os.kill(sup, signal.SIGKILL)  # the host's OOM killer, say
    wait_for(lambda: runner.proc_info(sup) is None, 10, "supervisor gone")
    info = runner.run_status(run_dir)
    assert info.status == "running" and "supervisor is gone" in info.note  # training still there
    os.killpg(manifest.pgid, signal.SIGKILL)
    wait_for(lambda: not runner.group_pids(manifest.pgid), 10, "group gone")
    info = runner.run_status(run_dir)
    assert info.status == "died" and info.exit_code is None


def test_an_end_recorded_between_two_reads_is_not_read_as_died(runs, monkeypatch):
    """CI once saw "died" for a run whose supervisor logged "finished, exit code 0": run_status read the
    manifest while it still said running, then the supervisor wrote the end and let go of its lock, and the
    lock check found no supervisor and no processes."""
    run_dir = runs("race", "echo done\n")
    runner.launch(run_dir)
    assert wait_status(run_dir, ("finished", "failed"), 30).status == "finished"
    path = run_dir / "run_manifest.json"
    final = path.read_text()
    stale = json.loads(final)
    for record in (stale, stale["attempts"][-1]):
        record["status"], record["exit_code"] = "running", None
        record.pop("ended_at", None)
    path.write_text(json.dumps(stale))

    def supervisor_ends_now(run_dir: Path) -> bool:
        path.write_text(final)  # its last write, then it exits and the lock is free
        return False

    monkeypatch.setattr(runner, "_lock_held", supervisor_ends_now)
    info = runner.run_status(run_dir)
    assert info.status == "finished" and info.exit_code == 0, info.note


def test_supervisor_survives_sighup_and_forwards_sigterm(runs):
    run_dir = runs("hup", "sleep 2; echo done\n")
    manifest = runner.launch(run_dir)
    os.kill(manifest.current["supervisor_pid"], signal.SIGHUP)
    info = wait_status(run_dir, ("finished", "failed"), 30)
    assert info.status == "finished" and info.exit_code == 0


def test_stop_escalates_to_sigkill_and_leaves_no_process(runs):
    # A child that ignores SIGTERM: only SIGKILL ends it.
    run_dir = runs("stubborn", "trap '' TERM\nbash -c \"trap '' TERM; sleep 300\" &\nwait\n")
    manifest = runner.launch(run_dir)
    wait_for(lambda: len(runner.group_pids(manifest.pgid)) >= 2, 10, "child started")
    said: list[str] = []
    result = runner.stop(run_dir, grace=5, term_timeout=1, say=said.append)
    assert any("SIGTERM" in s for s in said) and any("SIGKILL" in s for s in said)
    assert result.left == [] and runner.group_pids(manifest.pgid) == []
    assert result.status == "stopped" and runner.run_status(run_dir).status == "stopped"
    assert runner.stop(run_dir).actions == ["not running (stopped); nothing to stop"]


TRAINER = r'''
import os, signal, sys, time
stop = False
def on_abort(signum, frame):
    global stop
    stop = True
if os.environ.get("LLAMABOARD_ENABLED"):
    signal.signal(signal.SIGABRT, on_abort)   # what LLaMA-Factory's LogCallback does
print("training", flush=True)
for step in range(600):
    time.sleep(0.05)                           # one "step"
    if stop:
        open("saved.txt", "w").write(str(step))
        print("aborted after step", step, flush=True)
        sys.exit(0)
'''


def test_stop_is_graceful_when_the_trainer_takes_the_abort(runs):
    run_dir = runs("graceful", f'"{sys.executable}" trainer.py\n')
    (run_dir / "trainer.py").write_text(TRAINER)
    manifest = runner.launch(run_dir)
    wait_for(lambda: "training" in Path(manifest.current["stdout"]).read_text(), 15, "trainer up")
    targets = runner.graceful_targets(runner.processes_of(manifest.pgid))
    assert len(targets) == 1 and targets[0] != manifest.pgid  # the python, not bash
    said: list[str] = []
    result = runner.stop(run_dir, grace=20, say=said.append)
    assert any("after the current step" in s for s in said) and not any("SIGKILL" in s for s in said)
    assert (run_dir / "saved.txt").is_file()
    assert result.status == "stopped" and result.left == []
    info = runner.run_status(run_dir)
    assert info.status == "stopped" and info.exit_code == 0


def test_resume_rules_and_attempt_history(runs):
    run_dir = runs("resume", "echo attempt\n")
    (run_dir / "train.yaml").write_text("output_dir: out\noverwrite_output_dir: false\n")
    with pytest.raises(UserError, match="nothing to resume from"):
        runner.launch(run_dir, resume=True)
    (run_dir / "out" / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(UserError, match="--resume"):
        runner.launch(run_dir)
    runner.launch(run_dir, resume=True)
    wait_status(run_dir, ("finished",), 30)
    runner.launch(run_dir, resume=True)
    wait_status(run_dir, ("finished",), 30)
    data = json.loads((run_dir / "run_manifest.json").read_text())
    assert [a["attempt"] for a in data["attempts"]] == [1, 2] and all(a["resume"] for a in data["attempts"])
    assert data["output_dir"] == str((run_dir / "out").resolve())
    (run_dir / "train.yaml").write_text("output_dir: out\noverwrite_output_dir: true\n")
    with pytest.raises(UserError, match="overwrite_output_dir"):
        runner.launch(run_dir, resume=True)


def test_a_saved_model_without_a_checkpoint_is_refused_before_launch(runs):
    # What `stop` leaves before the first save_steps: the saved model, no checkpoint-N. LLaMA-Factory then
    # refuses a new training there ("Output directory already exists and is not empty") and --resume has
    # nothing to resume; `run` used to launch anyway and fail, and --resume's fix sent you there.
    run_dir = runs("stopped", "echo attempt\n")
    (run_dir / "train.yaml").write_text("output_dir: out\noverwrite_output_dir: false\n")
    (run_dir / "out").mkdir()
    (run_dir / "out" / "adapter_model.safetensors").write_bytes(b"weights")
    with pytest.raises(UserError) as caught:
        runner.launch(run_dir)
    line = caught.value.one_line()
    assert "adapter_model.safetensors" in line and "no checkpoint-N" in line and "move the output" in line
    assert caught.value.where == str((run_dir / "out").resolve())
    with pytest.raises(UserError) as caught:
        runner.launch(run_dir, resume=True)
    assert "nothing to resume" in caught.value.one_line() and "run without --resume" not in caught.value.one_line()
    assert not (run_dir / "run_manifest.json").exists()  # nothing was launched
    # LLaMA-Factory does start when it may overwrite, or when a checkpoint is there to resume from.
    (run_dir / "train.yaml").write_text("output_dir: out\noverwrite_output_dir: true\n")
    runner.launch(run_dir)
    wait_status(run_dir, ("finished",), 30)
    (run_dir / "train.yaml").write_text("output_dir: out\noverwrite_output_dir: false\n")
    (run_dir / "out" / "checkpoint-3").mkdir()
    runner.launch(run_dir, resume=True)
    wait_status(run_dir, ("finished",), 30)


def test_run_started_by_hand_is_recognised_and_stoppable(runs):
    run_dir = runs("byhand", "sleep 60\n")
    (run_dir / "train.yaml").write_text("output_dir: out\n")
    proc = subprocess.Popen(["bash", "single_node.sh"], cwd=run_dir, start_new_session=True)
    try:
        runner.watch_run(run_dir)
        wait_for(lambda: runner.run_status(run_dir).status == "running", 10, "seen")
        info = runner.list_runs()[0]
        assert info.how == "by hand" and info.pgid == proc.pid
        result = runner.stop(run_dir, grace=0, term_timeout=5)
        assert result.left == [] and proc.wait(5) is not None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert runner.run_status(run_dir).status == "stopped"  # what `stop` did is remembered
    (run_dir / runner.HAND_RECORD).unlink()  # a run by hand that nobody saw: only its files tell
    # Finished by hand: trainer_log with a last line and all_results.json.
    (run_dir / "out").mkdir()
    (run_dir / "out" / "trainer_log.jsonl").write_text('{"current_steps": 5, "total_steps": 5}\n')
    assert runner.run_status(run_dir).status == "ended"  # gone without final results: outcome not known
    (run_dir / "out" / "all_results.json").write_text("{}")
    info = runner.run_status(run_dir)
    assert info.status == "finished" and info.progress == "5/5 (100%)"


def test_a_run_started_by_hand_and_ended_before_its_first_step_is_not_never(runs, capsys):
    # `stop` said "run is stopped", then `runs` and the monitor said "never" (not launched yet): a run started
    # by hand leaves no manifest, and before its first logging step no trainer_log.jsonl line either.
    import time

    from minicpm_tui.cli import main
    from minicpm_tui.core.monitor import RunFollower

    run_dir = runs("early", 'echo "loading model"\nsleep 60\n')
    (run_dir / "train.yaml").write_text("output_dir: out\n")
    (run_dir / "out").mkdir()
    old = run_dir / "out" / "trainer_log.jsonl"  # an earlier training's: not this run's progress
    old.write_text('{"current_steps": 5, "total_steps": 9}\n')
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    runner.watch_run(run_dir)
    procs = []
    try:
        procs.append(subprocess.Popen(["bash", "single_node.sh"], cwd=run_dir, start_new_session=True,
                                      stdout=subprocess.DEVNULL))
        wait_for(lambda: runner.run_status(run_dir).status == "running", 10, "seen")
        assert runner.stop(run_dir, grace=0, term_timeout=5).status == "stopped"
        info = runner.list_runs()[0]
        assert (info.status, info.how, info.pid, info.exit_code, info.progress) == (
            "stopped", "by hand", procs[0].pid, None, "-")
        assert "stopped by `minicpm-tui stop` before its first logging step" in info.note and info.age != "-"
        # A later run by hand that nobody saw wrote trainer_log.jsonl: the stopped one is not its story.
        later = time.time() + 60
        os.utime(old, (later, later))
        info = runner.run_status(run_dir)
        assert (info.status, info.progress) == ("ended", "5/9 (56%)") and "started by hand and not watched" in info.note
        os.utime(old, (time.time() - 3600, time.time() - 3600))
        # Seen running (by `runs`), then ended some other way (Ctrl+C): it died, and its output is its log.
        log = run_dir / "train.log"
        with open(log, "w") as handle:
            procs.append(subprocess.Popen(["bash", "single_node.sh"], cwd=run_dir, start_new_session=True,
                                          stdout=handle, stderr=subprocess.STDOUT))
        wait_for(lambda: "loading model" in log.read_text(), 10, "output")
        assert runner.list_runs()[0].status == "running"
        os.killpg(procs[1].pid, signal.SIGINT)
        procs[1].wait(10)
        info = runner.run_status(run_dir)
        assert (info.status, info.pid, info.progress) == ("died", procs[1].pid, "-"), info
        assert "ended before its first logging step" in info.note and str(log) in info.note
        snap = RunFollower(run_dir).poll()
        assert snap.status == "died" and any("loading model" in line for line in snap.log_tail)
        assert main(["monitor", str(run_dir), "--once", "--no-gpu", "--plain"]) != 2
        assert "died" in capsys.readouterr().out
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minicpm_tui", *args], capture_output=True, text=True,
                          timeout=60, **kw)


def test_cli_run_survives_sigkill_of_the_launcher_and_runs_lists_it(runs):
    run_dir = runs("cli", "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done\n")
    launcher = subprocess.Popen([sys.executable, "-m", "minicpm_tui", "run", str(run_dir), "--follow"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: runner.run_status(run_dir).status == "running", 20, "running")
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(10)
        info = wait_status(run_dir, ("finished", "failed"), 30)
        assert info.status == "finished" and info.exit_code == 0
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    out = _cli("runs")
    assert out.returncode == 0 and "finished" in out.stdout and str(run_dir) in out.stdout
    data = json.loads(_cli("runs", "--json").stdout)
    assert data[0]["status"] == "finished" and data[0]["exit_code"] == 0


def test_cli_run_stop_and_errors(runs):
    run_dir = runs("cli2", "sleep 60\n")
    out = _cli("run", str(run_dir), "--env", "A=1")
    assert out.returncode == 0, out.stderr
    assert "started" in out.stdout and "minicpm-tui monitor" in out.stdout
    again = _cli("run", str(run_dir))
    assert again.returncode == 1 and "already running" in again.stderr and "Traceback" not in again.stderr
    stopped = _cli("stop", str(run_dir), "--grace", "0", "--timeout", "5")
    assert stopped.returncode == 0 and "SIGTERM" in stopped.stdout and "run is stopped" in stopped.stdout
    assert _cli("run", str(run_dir), "--env", "nope").returncode == 2
    assert _cli("stop", str(run_dir.parent / "missing")).returncode == 2
    assert "no runs yet" in _cli("runs", env={**os.environ, "MINICPM_TUI_HOME": str(run_dir / "h")}).stdout


def test_launch_warns_when_its_gpus_are_busy(runs):
    from fake_nvml import GIB, FakePynvml, make_recording

    from minicpm_tui.core.nvml import Nvml

    rec = make_recording(2)
    rec["devices"][1]["processes"] = [{"pid": 4242, "used_memory": 30 * GIB}]
    run_dir = runs("busygpu", 'if [[ -z "${CUDA_VISIBLE_DEVICES+set}" ]]; then CUDA_VISIBLE_DEVICES=1; fi\n')
    manifest = runner.launch(run_dir, nvml=Nvml(module=FakePynvml(rec)))
    assert len(manifest.warnings) == 1 and "GPU 1 is busy" in manifest.warnings[0]
    assert manifest.current["warnings"] == manifest.warnings
    wait_status(run_dir, ("finished",), 30)
    other = runs("freegpu", "true\n")
    assert runner.launch(other, env={"CUDA_VISIBLE_DEVICES": "0"}, nvml=Nvml(module=FakePynvml(rec))).warnings == []
    wait_status(other, ("finished",), 30)


def test_runs_survives_garbage_lines_in_trainer_log(tmp_path, state_home, capsys):
    # A parseable line with string steps (a hand-edited or corrupted log) made `runs` an internal error
    # (TypeError in the progress column); torn and garbage lines are skipped like the monitor does.
    from minicpm_tui.cli import main

    run_dir = tmp_path / "garbled"
    (run_dir / "out").mkdir(parents=True)
    (run_dir / "train.yaml").write_text("output_dir: out\n")
    (run_dir / "out" / "trainer_log.jsonl").write_text(
        '{"current_steps": 1, "total_steps": 10, "loss": 2.0}\n{"current_steps": "3", "total_steps": "10"}\n'
        'garbage\n[1, 2]\n{"current_steps": true, "total_steps": 10}\n{"current_steps": 4, "tot')
    assert main(["runs", "--watch", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "1/10 (10%)" in out and "internal error" not in out
    assert runner.run_status(run_dir).step == 1


def test_age_is_never_negative_after_a_wall_clock_step(runs, capsys):
    # A start recorded while the wall clock ran ahead (then stepped back, e.g. by NTP) showed as "-3599s".
    import time

    from minicpm_tui.cli import main

    assert (runner.age_text(-5), runner.age_text(0), runner.age_text(None)) == ("?", "0s", "-")
    now = time.time()
    ahead = runner.RunInfo(run_dir=Path("x"), status="finished", started_at=now + 3600)
    assert (ahead.age_s, ahead.age) == (None, "?")
    assert runner.RunInfo(run_dir=Path("x"), status="finished", started_at=now + 10).age == "0s"  # small skew
    assert runner.RunInfo(run_dir=Path("x"), status="never").age == "-"
    # The boot clock, when the start was recorded in this boot, is immune to the step.
    booted = runner.RunInfo(run_dir=Path("x"), status="finished", started_at=now + 3600,
                            started_boottime=runner.boottime() - 120, boot_id=runner.boot_id())
    assert 119 < booted.age_s < 130 and booted.age == "2m"
    booted.boot_id = "another-boot"
    assert booted.age == "?"

    run_dir = runs("clock", "sleep 60\n")
    runner.launch(run_dir)
    wait_status(run_dir, ("running",), 30)
    path = run_dir / runner.MANIFEST
    data = json.loads(path.read_text())
    assert data["attempts"][0]["boot_id"] == runner.boot_id() and data["attempts"][0]["started_boottime"] > 0
    data["attempts"][0]["started_at"] = now + 3600
    path.write_text(json.dumps(data))
    info = runner.run_status(run_dir)
    assert info.status == "running" and 0 <= info.age_s < 60
    assert main(["runs"]) == 0
    assert "running" in capsys.readouterr().out.splitlines()[1].split()[0]
    for key in ("started_boottime", "boot_id"):  # a manifest from before they were recorded
        del data["attempts"][0][key]
    path.write_text(json.dumps(data))
    assert main(["runs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)[0]
    assert (listed["age_s"], listed["age"], listed["status"]) == (None, "?", "running")
    assert main(["runs"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:4] == ["running", "-", "-", "?"]
    runner.stop(run_dir, grace=0, term_timeout=5)


@pytest.mark.parametrize("content, named", [
    ("[]", "[] is not a JSON object"),
    ('{"attempts": "x"}', "attempts: the run manifest is damaged: 'x' is not a list"),
    ('{"attempts": [7]}', "attempts[0]: the run manifest is damaged: 7 is not an object"),
    ('{"attempts": [{"attempt": 1, "status": "running", "pgid": "x"}]}', "attempts[0].pgid"),
    ('{"attempts": [{"attempt": "one", "status": "finished"}]}', "attempts[0].attempt"),
    ('{"attempts": [{"attempt": 1, "status": "finished", "started_at": "yesterday"}]}', "attempts[0].started_at"),
    ('{"output_dir": 5, "attempts": []}', "output_dir: the run manifest is damaged: 5 is not a path"),
    ("", "cannot read the run manifest"),
])
def test_a_damaged_manifest_is_one_line_and_runs_lists_the_others(content, named, tmp_path, state_home, capsys):
    # Valid JSON of the wrong shape (a hand edit, another tool's file) was an internal error in `runs`, which
    # then listed no run at all, and in `stop`, `monitor` and `run`.
    from minicpm_tui.cli import main

    good = tmp_path / "good"
    write_script(good, "true\n")
    (good / "train.yaml").write_text("output_dir: out\n")
    bad = tmp_path / "bad"
    write_script(bad, "true\n")
    (bad / runner.MANIFEST).write_text(content)
    runner.watch_run(good)
    runner.watch_run(bad)
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert f"never        - -                    -  {good}" in out
    assert f"unknown      - -                    -  {bad}  ({bad / runner.MANIFEST}" in out and named in out
    assert "restore it from a backup or delete it" in out
    for argv in (["stop", str(bad)], ["monitor", str(bad), "--once", "--no-gpu"], ["run", str(bad)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "internal error" not in err and named in err, err
    assert not (bad / "logs" / "supervisor.out").exists()  # nothing was launched


def test_a_damaged_generated_json_is_one_line(tmp_path, state_home, capsys, monkeypatch):
    from minicpm_tui.cli import main
    from minicpm_tui.core.preflight import preflight

    run_dir = tmp_path / "run"
    write_script(run_dir, "true\n")
    (run_dir / "train.yaml").write_text("stage: sft\noutput_dir: out\n")
    for content, named in (("[1, 2]", "a JSON list, not an object"), ('{"resolved": [1]}', "`resolved` is not")):
        (run_dir / "generated.json").write_text(content)
        assert main(["smoke", str(run_dir)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"minicpm-tui: error: {run_dir / 'generated.json'}") and named in err, err
        assert "regenerate" in err and len(err.splitlines()) == 1
        # The preflight reads it leniently (it has train.yaml): it gets as far as the training Python.
        monkeypatch.setenv("TRAIN_PYTHON", str(tmp_path / "no-env" / "python"))
        with pytest.raises(UserError, match="no-env"):
            preflight(run_dir)
        monkeypatch.delenv("TRAIN_PYTHON")


def test_an_unwritable_runs_registry_does_not_fail_a_started_run(runs, tmp_path, monkeypatch, capsys):
    # The run was launched, then `run` failed (exit 2) on registering it: a running training reported as an
    # error. It is a warning now; `runs --watch`, whose whole job is registering, is a one-line error.
    from minicpm_tui.cli import main

    home = tmp_path / "blocked"
    home.mkdir()
    (home / "state").write_text("a file where the state folder should be\n")
    monkeypatch.setenv("MINICPM_TUI_HOME", str(home))
    run_dir = runs("unregistered", "true\n")
    assert main(["run", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert f"started {run_dir}" in captured.out
    warning = captured.err.strip()
    assert warning.startswith("minicpm-tui: warning: `minicpm-tui runs` will not list this run: ")
    assert f"{home / 'state' / 'runs'}: cannot write the runs registry" in warning and "XDG_STATE_HOME" in warning
    assert wait_status(run_dir, ("finished", "failed"), 30).status == "finished"
    assert main(["runs", "--watch", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write the runs registry" in err


def test_the_registry_location_ignores_a_relative_xdg_state_home(tmp_path, monkeypatch):
    # XDG_STATE_HOME=relative named another registry from every working directory: `runs` after `cd`
    # said "no runs yet". The XDG spec says to ignore a relative value.
    from minicpm_tui.core import paths

    monkeypatch.delenv("MINICPM_TUI_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")
    assert paths.state_dir() == tmp_path / "home" / ".local" / "state" / "minicpm-tui"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert paths.state_dir() == tmp_path / "xdg" / "minicpm-tui"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert paths.state_dir() == tmp_path / "home" / ".local" / "state" / "minicpm-tui"

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with pytest.raises(UserError) as caught:
        paths.state_dir()
    assert caught.value.where == "XDG_STATE_HOME" and "MINICPM_TUI_HOME" in caught.value.fix


def test_runs_says_when_every_registered_run_directory_is_gone(tmp_path, state_home, capsys):
    import shutil

    from minicpm_tui.cli import main

    run_dir = tmp_path / "vanishing"
    run_dir.mkdir()
    (run_dir / "train.yaml").write_text("output_dir: out\n")
    runner.watch_run(run_dir)
    shutil.rmtree(run_dir)
    assert main(["runs"]) == 0
    assert capsys.readouterr().out.strip() == (
        "no runs to show: 1 registered run directory is gone (`minicpm-tui runs --all` lists it; if it was moved, "
        "`minicpm-tui runs --watch NEW_PATH` registers it there; `minicpm-tui runs --forget OLD_PATH` drops it from "
        "the list)")
    assert main(["runs", "--all"]) == 0
    assert "(run directory is gone; if it was moved, `minicpm-tui runs --watch NEW_PATH`" in capsys.readouterr().out
    # Deleted for good: --forget drops the entry, and the list says nothing of it any more.
    assert main(["runs", "--forget", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"forgot {run_dir.resolve()} (dropped from the list; no file was touched)", out
    assert _registered() == []
    assert main(["runs", "--all"]) == 0
    assert capsys.readouterr().out.startswith("no runs yet")
    assert main(["runs", "--forget", str(run_dir)]) == 2  # once only: it is no longer in the registry
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"minicpm-tui: error: {run_dir}: is not in the runs registry") and "runs --all" in err, err


def test_runs_forget_drops_an_ended_run_and_refuses_a_live_one(runs, capsys):
    # A list that only grows: every run ever launched stayed in `runs` for good. --forget drops an entry and
    # nothing else (the run directory keeps every file); a run still working is refused, so it is never lost.
    from minicpm_tui.cli import main

    done, live = runs("done", "true\n"), runs("live", "sleep 60\n")
    runner.launch(done)
    wait_status(done, ("finished",), 30)
    runner.launch(live)
    wait_status(live, ("running",), 30)
    files = sorted(p.relative_to(done) for p in done.rglob("*"))
    assert main(["runs", "--forget", str(live)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"minicpm-tui: error: {live}: its run is running; stop it first (`minicpm-tui stop {live}`), or leave it listed", err
    assert main(["runs", "--watch", str(done), "--forget", str(done)]) == 2
    assert capsys.readouterr().err.strip().startswith("minicpm-tui: error: --forget: --watch and --forget are given together")
    assert main(["runs", "--forget", str(done)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"forgot {done.resolve()} (dropped from the list; no file was touched)\n"), out
    assert str(live) in out and f"{done}  " not in out  # the list that follows has the live run only
    assert sorted(p.relative_to(done) for p in done.rglob("*")) == files
    assert [d["run_dir"] for d in _registered()] == [str(live.resolve())]
    assert runner.run_status(done).status == "finished"  # its record is its own, not the registry's
    # Launched again, it is registered again.
    runner.launch(done)
    wait_status(done, ("finished",), 30)
    assert [d["run_dir"] for d in _registered()] == sorted([str(done.resolve()), str(live.resolve())])


def test_a_run_directory_moved_to_another_filesystem_while_it_runs(runs, tmp_path, capsys):
    # `mv` to another mount copies the folder, then deletes the original: new inodes, and the processes work on
    # in the deleted folder, so nothing of them leads to the copy. `runs` dropped the run without a word, and the
    # copy said "unknown: copied from ... (deleted)", which `stop` refused.
    import shutil

    from minicpm_tui.cli import main

    other = runs("other", "true\n")
    (other / "train.yaml").write_text("output_dir: out\n")
    runner.watch_run(other)
    run_dir = runs("origin", "sleep 60\n")
    runner.launch(run_dir)
    wait_status(run_dir, ("running",), 30)
    old = run_dir.resolve()
    moved = (tmp_path / "other-mount" / "origin").resolve()
    shutil.copytree(run_dir, moved, symlinks=True)
    shutil.rmtree(run_dir)
    try:
        assert main(["runs"]) == 0
        out = capsys.readouterr().out
        assert out.strip().endswith("(1 registered run directory is gone (`minicpm-tui runs --all` lists it; if it "
                                    "was moved, `minicpm-tui runs --watch NEW_PATH` registers it there; `minicpm-tui "
                                    "runs --forget OLD_PATH` drops it from the list))"), out
        assert main(["runs", "--all"]) == 0
        line = [row for row in capsys.readouterr().out.splitlines() if str(old) in row][0]
        assert "work on in the deleted folder: moved to another filesystem while it ran" in line, line
        assert "`minicpm-tui stop OLD_PATH` (or NEW_PATH, once registered) stops them" in line
        # Its processes work on: forgetting it would leave them listed nowhere.
        assert main(["runs", "--forget", str(old)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"minicpm-tui: error: {old}: processes of its run still work (pid ") and "`minicpm-tui stop " in err, err
        assert len(_registered()) == 2
        info = runner.run_status(moved)
        assert info.status == "running" and f"work on in the deleted {old}, so nothing" in info.note, info.note
        assert "`minicpm-tui run --resume`" in info.note
        # Registered at its new path, it is the run its old entry named (its manifest holds that launch).
        assert main(["runs", "--watch", str(moved)]) == 0
        out = capsys.readouterr().out
        assert str(moved) in out and str(other) in out and "gone" not in out, out
        assert [(d["run_dir"], d.get("moved_from")) for d in _registered()] == [
            (str(other.resolve()), None), (str(moved), str(old))]
        result = runner.stop(moved, grace=0, term_timeout=5)
        assert (result.status, result.left) == ("stopped", [])
        assert runner.run_status(moved).status == "stopped"
    finally:
        kill_run(moved)


# A torchrun stand-in: it starts its "worker" in a session of its own, as torch's elastic agent does.
FAKE_TORCHRUN = ('"{python}" -c "import subprocess, sys; '
                 "sys.exit(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
                 'start_new_session=True).wait())"\n')


def _wait_worker(run_dir: Path) -> None:
    def up() -> bool:
        cur = runner.RunManifest.load(run_dir).current
        return any(p.pgid != cur.get("pgid") for p in runner._attempt_procs(cur)) if cur.get("pgid") else False

    wait_for(up, 15, "worker up")


@pytest.mark.parametrize("damage", ['{"attempts": [', "", '{"attempts": "x"}'])
def test_stop_stops_a_run_whose_manifest_is_damaged(damage, runs, tmp_path, capsys):
    # `stop` refused ("cannot read the run manifest") while the training kept its GPUs: the only way out was
    # kill by hand. The run's processes carry its tag and work in its folder: that is enough to stop them.
    from minicpm_tui.cli import main

    run_dir = runs("damaged", FAKE_TORCHRUN.format(python=sys.executable))
    manifest = runner.launch(run_dir)
    _wait_worker(run_dir)
    procs = runner._attempt_procs(manifest.current)
    sup = manifest.current["supervisor_pid"]
    # Another run's process nearby (a nested run directory's, tagged too) must be left alone.
    nested = runs("damaged/nested", "sleep 60\n")
    other = runner.launch(nested)
    wait_status(nested, ("running",), 30)
    (run_dir / runner.MANIFEST).write_text(damage)
    assert main(["stop", str(run_dir), "--grace", "0", "--timeout", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"stop: {run_dir / runner.MANIFEST}: ") and "stopping the run without it" in out[0]
    assert all(str(p.pid) in out[0] for p in procs) and str(sup) not in out[0]
    assert out[-1].startswith("stop: run is stopped; its manifest is left as it was: restore it from a backup")
    assert all(runner.proc_info(p.pid) is None for p in procs)
    wait_for(lambda: runner.proc_info(sup) is None, 15, "supervisor ended by itself")
    assert "cannot record it in run_manifest.json" in (run_dir / "logs" / "supervisor.log").read_text()
    assert runner.run_status(nested).status == "running" and runner.proc_info(other.pid) is not None
    runner.stop(nested, grace=0, term_timeout=5)
    # Nothing of the run is left: a one-line refusal that says so, with the manifest's fix.
    assert main(["stop", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no process of this run is alive" in err and "restore it" in err


def test_a_moved_run_whose_supervisor_was_killed_is_found_by_its_training_alone(runs, tmp_path):
    # Its script works elsewhere (a LLaMA-Factory checkout, as OpenBMB's guide does), its supervisor and
    # torchrun were killed (the OOM killer), and the folder was moved: `runs` lost it and `stop NEW` said
    # "copied from ... while it ran". The worker's stdout is the attempt's log file in the run directory,
    # which moved along, and the manifest there holds the worker's attempt.
    checkout = tmp_path / "LLaMA-Factory"
    checkout.mkdir()
    run_dir = runs("elsewhere", f'cd "{checkout}"\n' + FAKE_TORCHRUN.format(python=sys.executable))
    manifest = runner.launch(run_dir)
    _wait_worker(run_dir)
    sup = manifest.current["supervisor_pid"]
    os.kill(sup, signal.SIGKILL)
    os.killpg(manifest.pgid, signal.SIGKILL)
    wait_for(lambda: runner.proc_info(sup) is None and not runner.group_pids(manifest.pgid), 10, "launcher gone")
    worker = runner._attempt_procs(runner.RunManifest.load(run_dir).current)
    assert len(worker) == 1 and os.readlink(f"/proc/{worker[0].pid}/cwd") == str(checkout)
    info = runner.run_status(run_dir)
    assert info.status == "running" and "supervisor is gone" in info.note
    moved = tmp_path / "moved"
    run_dir.rename(moved)
    try:
        assert [(r.run_dir, r.status) for r in runner.list_runs()] == [(moved, "running")]
        assert [d["run_dir"] for d in _registered()] == [str(moved)]
        assert runner.run_pids(moved) == [worker[0].pid]
        said: list[str] = []
        result = runner.stop(moved, grace=0, term_timeout=5, say=said.append)
        # The worker, whose torchrun is gone, gets the SIGTERM itself: no SIGKILL needed.
        assert result.status == "stopped" and result.left == [] and not any("SIGKILL" in s for s in said)
        assert runner.proc_info(worker[0].pid) is None
    finally:
        moved.rename(run_dir)


@pytest.mark.parametrize("damage", ['{"attempts": [', '{"attempts": "x"}'])
def test_runs_and_the_monitor_say_a_run_with_a_damaged_manifest_is_running(damage, runs, capsys):
    # `runs` and the monitor said "unknown" (with the damage) while its training kept the GPUs, and never that
    # it was alive: `stop` found its processes, they did not. They find them the same way now, say the manifest
    # is damaged and how to go on, and never write over it.
    from minicpm_tui.cli import main
    from minicpm_tui.core.monitor import RunFollower

    run_dir = runs("damaged", "echo training-output >&2\n" + FAKE_TORCHRUN.format(python=sys.executable))
    manifest = runner.launch(run_dir)
    _wait_worker(run_dir)
    pids = sorted(p.pid for p in runner._attempt_procs(manifest.current))
    (run_dir / runner.MANIFEST).write_text(damage)
    runner.watch_run(run_dir)
    info = runner.run_status(run_dir)
    assert (info.status, info.attempt, info.pgid) == ("running", 1, manifest.pgid), info
    assert f"pid {', '.join(map(str, pids))}" in info.note and "minicpm-tui stop" in info.note
    assert f"{run_dir / runner.MANIFEST}" in info.note and "restore it from a backup" in info.note
    assert runner.run_pids(run_dir) == pids
    assert main(["runs"]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert row.startswith("running") and str(pids[-1]) in row and "still stops it" in row, row
    snap = RunFollower(run_dir).poll()
    assert (snap.status, snap.attempt, snap.note) == ("running", 1, info.note)
    assert "training-output" in snap.log_tail  # the attempt's stderr, found through its processes
    assert main(["monitor", str(run_dir), "--once", "--no-gpu"]) == 0
    out = capsys.readouterr().out
    assert "running" in out and "note: " in out and "still stops it" in out
    with pytest.raises(UserError, match="already running"):
        runner.launch(run_dir)
    assert (run_dir / runner.MANIFEST).read_text() == damage
    assert main(["stop", str(run_dir), "--grace", "0", "--timeout", "5"]) == 0
    capsys.readouterr()
    assert (run_dir / runner.MANIFEST).read_text() == damage
    # Nothing of it is left: the damage again, as before.
    assert [(r.status, r.note.split(": ")[0]) for r in runner.list_runs()] == [
        ("unknown", str(run_dir / runner.MANIFEST))]


def test_stop_lists_a_run_started_by_hand_in_runs(runs):
    # `runs` and `monitor` put a run started by hand into the registry when they see it; `stop` did not, so a
    # run stopped right away was never listed (its end was recorded, but nobody was shown it).
    run_dir = runs("unlisted", "sleep 60\n")
    (run_dir / "train.yaml").write_text("output_dir: out\n")
    proc = subprocess.Popen(["bash", "single_node.sh"], cwd=run_dir, start_new_session=True)
    try:
        wait_for(lambda: runner.run_status(run_dir).status == "running", 10, "seen")
        assert runner.list_runs() == []
        said: list[str] = []
        assert runner.stop(run_dir, grace=0, term_timeout=5, say=said.append).status == "stopped"
        assert proc.wait(5) is not None
        assert [(r.run_dir, r.status, r.how) for r in runner.list_runs()] == [(run_dir, "stopped", "by hand")]
        assert not any("will not list" in text for text in said)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_run_started_by_hand_after_a_launched_attempt_is_seen_and_stopped(runs, tmp_path, capsys):
    # An earlier `minicpm-tui run` attempt ended, then the user ran `bash single_node.sh` by hand in the same
    # folder: `runs` showed the old attempt's end and `stop` said "not running" while it trained. A nested run
    # directory's and a copy's runs by hand are never taken for it (a nested one named by its absolute path,
    # from elsewhere, was, even without a manifest).
    import shutil

    from minicpm_tui.cli import main
    from minicpm_tui.core.monitor import RunFollower

    run_dir = runs("over", 'echo "by hand: ${NAP:-0}" >&2\nsleep "${NAP:-0}"\n')
    (run_dir / "train.yaml").write_text("output_dir: out\n")
    nested = runs("over/nested", "sleep 60\n")
    (nested / "train.yaml").write_text("output_dir: out\n")
    copy = tmp_path / "over-copy"
    procs: list[subprocess.Popen] = []

    def by_hand(folder: Path, cwd: Path, **kw) -> subprocess.Popen:
        procs.append(subprocess.Popen(["bash", str(folder / "single_node.sh")], cwd=cwd, start_new_session=True,
                                      env={**os.environ, "NAP": "60"}, **kw))
        return procs[-1]

    try:
        by_hand(nested, tmp_path)
        wait_for(lambda: runner.run_status(nested).status == "running", 10, "nested seen")
        assert runner.run_status(run_dir).status == "never"
        runner.launch(run_dir)
        assert wait_status(run_dir, ("finished",), 30).how == "minicpm-tui"
        shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("nested"))
        by_hand(copy, copy)
        wait_for(lambda: runner.run_status(copy).status == "running", 10, "copy seen")
        before = (run_dir / runner.MANIFEST).read_text()
        # A viewer left open on its train.yaml is no training.
        viewer = subprocess.Popen(["tail", "-f", "train.yaml"], cwd=run_dir, start_new_session=True,
                                  stdout=subprocess.DEVNULL)
        try:
            assert runner.run_status(run_dir).status == "finished"  # nested, copy, viewer: not this folder's
        finally:
            viewer.kill()
            viewer.wait()
        log = run_dir / "train.log"
        with open(log, "w") as handle:
            hand = by_hand(run_dir, run_dir, stdout=handle, stderr=subprocess.STDOUT)
        wait_for(lambda: "by hand: 60" in log.read_text(), 10, "output")
        info = runner.run_status(run_dir)
        assert (info.status, info.how, info.pid, info.pgid) == ("running", "by hand", hand.pid, hand.pid), info
        assert "attempt 1 of `minicpm-tui run` had ended (finished)" in info.note
        runner.watch_run(run_dir)
        assert main(["runs"]) == 0
        assert any(line.startswith("running") and str(run_dir) + "  [by hand]" in line
                   for line in capsys.readouterr().out.splitlines())
        snap = RunFollower(run_dir).poll()
        assert (snap.status, snap.pid) == ("running", hand.pid) and "by hand: 60" in snap.log_tail
        assert runner.run_pids(run_dir) == sorted(p.pid for p in runner.processes_of(hand.pid))
        result = runner.stop(run_dir, grace=0, term_timeout=5)
        assert (result.was, result.status, result.left) == ("running", "stopped", [])
        assert hand.wait(5) is not None
        assert all(p.poll() is None for p in procs if p is not hand)
        assert runner.run_status(nested).status == runner.run_status(copy).status == "running"
        info = runner.run_status(run_dir)
        assert (info.status, info.how, info.pid) == ("stopped", "by hand", hand.pid)
        assert "attempt 1 of `minicpm-tui run` had ended (finished)" in info.note
        assert (run_dir / runner.MANIFEST).read_text() == before  # the attempt's record is left as it was
        # A later `minicpm-tui run` is the story again.
        runner.launch(run_dir, env={"NAP": "0"})
        info = wait_status(run_dir, ("finished",), 30)
        assert (info.how, info.attempt) == ("minicpm-tui", 2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _fake_trained(runs, name: str) -> Path:
    """A run directory whose single_node.sh runs the stand-in trainer (tests/_runner_util.FAKE_TRAINER)."""
    from _runner_util import write_fake_trainer

    run_dir = runs(name, "")
    write_script(run_dir, write_fake_trainer(run_dir))
    (run_dir / "train.yaml").write_text("output_dir: out\n")
    (run_dir / "generated.json").write_text("{}\n")  # what `generate` writes: older files are not a run's
    return run_dir


def _by_hand(run_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """`bash single_node.sh` to its end, with nothing of minicpm-tui looking while it runs."""
    return subprocess.run(["bash", "single_node.sh"], cwd=run_dir, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60)


def test_a_run_by_hand_that_nobody_saw_is_known_from_what_it_left(runs, capsys):
    # It started and ended while no `runs`, `monitor` or `stop` looked: it showed `never` (or `died`), with no
    # time, though trainer_log.jsonl and the final results in output_dir say how far it got, and when.
    import io
    import time

    from minicpm_tui.cli import main
    from minicpm_tui.commands.monitor import plain_loop
    from minicpm_tui.core.monitor import RunFollower

    run_dir = _fake_trained(runs, "unseen")
    runner.watch_run(run_dir)  # listed, as after `runs --watch`; nothing looks while it runs
    before = time.time()
    assert _by_hand(run_dir, STEPS="3", TOTAL="5", CODE="1").returncode == 1  # a crash (or Ctrl+C) at step 3
    assert not (run_dir / runner.HAND_RECORD).exists()  # nobody saw it alive
    info = runner.run_status(run_dir)
    assert (info.status, info.how, info.progress, info.exit_code, info.pid) == ("ended", "by hand", "3/5 (60%)",
                                                                              None, None)
    log = run_dir / "out" / runner.TRAINER_LOG
    assert info.ended_at == log.stat().st_mtime and before - 1 <= info.started_at <= info.ended_at
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.ended_at)) in info.note
    assert "no process is left and it wrote no final results, so how it ended" in info.note
    assert main(["runs"]) == 0
    line = [row for row in capsys.readouterr().out.splitlines() if str(run_dir) in row][0]
    assert line.split()[:3] == ["ended", "-", "3/5"] and "[by hand]" in line, line
    snap = RunFollower(run_dir).poll()
    assert (snap.status, snap.phase, snap.step, snap.ended) == ("ended", "ended", 3, True)
    assert [step for step, _ in snap.losses] == [1, 2, 3] and snap.wall_s is not None
    out = io.StringIO()  # not a terminal: a line per change, then the end
    assert plain_loop(run_dir, interval=0.1, gpu=False, out=out) == 1  # outcome unknown: not a success
    assert out.getvalue().splitlines()[-1] == "run ended: final loss 0.6667, steps 3/5"

    # Again by hand in the same output_dir: its lines go under the first run's; it finishes all its steps.
    assert _by_hand(run_dir, STEPS="4", TOTAL="4", LOSS="1.0", RESULTS="1").returncode == 0
    info = runner.run_status(run_dir)
    assert (info.status, info.progress) == ("finished", "4/4 (100%)")
    assert info.note.startswith("started by hand and not watched; LLaMA-Factory wrote its final results at ")
    snap = RunFollower(run_dir).poll()
    assert snap.losses == [(1, 1.0), (2, 0.5), (3, 0.3333), (4, 0.25)] and snap.phase == "done"  # its own only
    # Results written before the last step: LLaMA-Factory's abort (or early stopping) ended it cleanly.
    (run_dir / "out" / "all_results.json").unlink()
    (run_dir / "out" / "train_results.json").unlink()
    assert _by_hand(run_dir, STEPS="2", TOTAL="6", RESULTS="1").returncode == 0
    info = runner.run_status(run_dir)
    assert (info.status, info.progress) == ("stopped", "2/6 (33%)") and "before its last step" in info.note
    # A copy of an old output_dir under a freshly generated folder is no run of it.
    later = time.time() + 5
    os.utime(run_dir / "generated.json", (later, later))
    assert runner.run_status(run_dir).status == "never"


def test_a_run_by_hand_after_launched_attempts_is_told_from_their_files(runs):
    # The attempts' own files in output_dir are theirs (the manifest knows when they ran), and a smoke attempt
    # writes to smoke/output: a later run by hand writes train.yaml's output_dir, under attempt 1's lines.
    import time

    from minicpm_tui.core.monitor import RunFollower

    run_dir = _fake_trained(runs, "after")
    runner.launch(run_dir, env={"STEPS": "5", "TOTAL": "5", "RESULTS": "1"})
    info = wait_status(run_dir, ("finished",), 30)
    assert (info.how, info.attempt, info.progress, info.note) == ("minicpm-tui", 1, "5/5 (100%)", "")
    smoke_out = run_dir / "smoke" / "output"
    runner.launch(run_dir, env={"OUT": str(smoke_out), "STEPS": "2", "TOTAL": "2", "RESULTS": "1"},
                  output_dir=smoke_out)
    info = wait_status(run_dir, ("finished",), 30)
    assert (info.how, info.attempt, info.progress) == ("minicpm-tui", 2, "2/2 (100%)")
    time.sleep(1.1)  # the attempt's last write and the run by hand's first are not the same instant
    assert _by_hand(run_dir, STEPS="2", TOTAL="5", LOSS="4.0", CODE="1").returncode == 1
    info = runner.run_status(run_dir)
    assert (info.status, info.how, info.progress, info.output_dir) == ("ended", "by hand", "2/5 (40%)",
                                                                      run_dir / "out")
    assert info.note.endswith("; attempt 2 of `minicpm-tui run` had ended (finished)")
    snap = RunFollower(run_dir).poll()
    assert (snap.status, snap.output_dir, snap.losses) == ("ended", str(run_dir / "out"), [(1, 4.0), (2, 2.0)])
    # A later `minicpm-tui run` is the story again.
    runner.launch(run_dir, env={"STEPS": "1", "TOTAL": "1", "RESULTS": "1"})
    info = wait_status(run_dir, ("finished",), 30)
    assert (info.how, info.attempt) == ("minicpm-tui", 3)


def test_a_live_run_by_hand_shows_only_its_own_trainer_log_lines(runs):
    # An earlier training in the same output_dir left its lines in trainer_log.jsonl (LLaMA-Factory appends
    # without overwrite_output_dir): progress and loss mixed them with the new run's.
    import time

    from minicpm_tui.core.monitor import RunFollower

    run_dir = _fake_trained(runs, "live")
    assert _by_hand(run_dir, STEPS="7", TOTAL="9", LOSS="9.0", CODE="1").returncode == 1
    time.sleep(1.1)
    proc = subprocess.Popen(["bash", "single_node.sh"], cwd=run_dir, start_new_session=True, stdout=subprocess.DEVNULL,
                            env={**os.environ, "STEPS": "0", "TOTAL": "9", "NAP": "60"})
    try:
        wait_for(lambda: runner.run_status(run_dir).status == "running", 10, "seen")
        early = RunFollower(run_dir)
        snap = early.poll()
        assert (snap.step, snap.losses, runner.run_status(run_dir).progress) == (None, [], "-")  # not its lines
        proc.kill()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    wait_for(lambda: runner.run_status(run_dir).status != "running", 10, "gone")
    proc = subprocess.Popen(["bash", "single_node.sh"], cwd=run_dir, start_new_session=True, stdout=subprocess.DEVNULL,
                            env={**os.environ, "STEPS": "2", "TOTAL": "9", "LOSS": "1.0", "NAP": "60"})
    try:
        log = run_dir / "out" / runner.TRAINER_LOG
        wait_for(lambda: log.read_text().count("\n") == 9, 10, "its two steps")
        info = runner.run_status(run_dir)
        assert (info.status, info.pid, info.progress) == ("running", proc.pid, "2/9 (22%)")
        snap = RunFollower(run_dir).poll()
        assert (snap.step, snap.losses) == (2, [(1, 1.0), (2, 0.5)])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_run_by_hand_that_llamafactory_resumed_by_itself_is_marked(runs):
    # `bash single_node.sh` again after a crash: overwrite_output_dir is false, so LLaMA-Factory goes on from the
    # last checkpoint by itself. The monitor showed a run that began at step 4: no curve before it, and
    # LLaMA-Factory's ETA, which divides this run's time by every step, the checkpoint's included.
    import shutil
    import time
    from datetime import timedelta

    from minicpm_tui.commands.monitor import _block
    from minicpm_tui.core.monitor import RunFollower

    def line(step: int, loss: float, elapsed: int) -> str:
        return json.dumps({"current_steps": step, "total_steps": 10, "loss": loss, "lr": 1e-4,
                           "elapsed_time": str(timedelta(seconds=elapsed)),
                           "remaining_time": str(timedelta(seconds=(10 - step) * elapsed // step))}) + "\n"

    run_dir = _fake_trained(runs, "again")
    (run_dir / "train.yaml").write_text("output_dir: out\noverwrite_output_dir: false\n")
    out = run_dir / "out"
    out.mkdir()
    (out / "checkpoint-3").mkdir()  # saved every 3 steps; the crash came at step 4
    log = out / runner.TRAINER_LOG
    log.write_text("".join(line(s, 4.0 - s / 2, 10 * s) for s in (1, 2, 3, 4)))
    time.sleep(1.1)
    proc = subprocess.Popen(["bash", "single_node.sh"], cwd=run_dir, start_new_session=True, stdout=subprocess.DEVNULL,
                            env={**os.environ, "STEPS": "0", "TOTAL": "10", "NAP": "60"})
    try:
        wait_for(lambda: runner.run_status(run_dir).status == "running", 10, "seen")
        follower = RunFollower(run_dir, status_every=0)
        snap = follower.poll()
        assert (snap.step, snap.losses, snap.resumed_from) == (None, [], None)  # nothing of it logged yet
        with open(log, "a", encoding="utf-8") as handle:  # steps 4 and 5 again, 30 s and 60 s into this run
            handle.write(line(4, 1.9, 30) + line(5, 1.4, 60))
        snap = follower.poll()
        assert (snap.step, snap.resumed_from) == (5, 3), snap
        assert snap.losses == [(1, 3.5), (2, 3.0), (3, 2.5), (4, 1.9), (5, 1.4)]  # step 4 once, its newest
        assert snap.remaining_s == 5 * 60 / 2  # its own 2 steps in 60 s, not LLaMA-Factory's 5 in 60 s
        assert _block(snap, None)[0] == f"{run_dir.resolve()}  resumed from step 3  pid {proc.pid}  by hand"
        # A run by hand that starts over (a fresh output_dir) is no resume.
        shutil.rmtree(out)
        out.mkdir()
        fresh = RunFollower(run_dir, status_every=0)
        log.write_text(line(1, 3.0, 5))
        assert (fresh.poll().step, fresh.poll().resumed_from) == (1, None)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_run_by_hand_seen_alive_that_ended_by_itself_has_an_end_and_a_later_one_its_own_story(runs, monkeypatch):
    # Seen alive (by `runs` or the monitor), then ended by itself: no end was recorded, so a later run by hand
    # that started and ended while nothing looked was shown as the seen one (its pid, its "finished" or a
    # "stopped" from the earlier run's final results) with the later one's steps.
    import time

    from minicpm_tui.core.monitor import RunFollower

    run_dir = _fake_trained(runs, "seen")
    (run_dir / "train.yaml").write_text("output_dir: out\noverwrite_output_dir: false\n")
    runner.watch_run(run_dir)

    def seen_by_hand(**env: str) -> subprocess.Popen:
        proc = subprocess.Popen(["bash", "single_node.sh"], cwd=run_dir, start_new_session=True,
                                stdout=subprocess.DEVNULL, env={**os.environ, "RESULTS": "1", "NAP": "1.5", **env})
        wait_for(lambda: runner.run_status(run_dir).status == "running", 10, "seen")
        return proc

    proc = seen_by_hand(STEPS="5", TOTAL="5")
    try:
        first = runner.hand_run_record(run_dir)
        monkeypatch.setattr(runner, "ALIVE_EVERY_S", 0.0)
        time.sleep(0.05)
        assert runner.run_status(run_dir).status == "running"
        assert runner.hand_run_record(run_dir)["alive_at"] > first["alive_at"]  # the last time seen alive
        assert proc.wait(30) == 0
    finally:
        _kill_group(proc)
    # Looked at again once it has ended by itself: its end is recorded, bounded by what it left.
    info = runner.run_status(run_dir)
    assert (info.status, info.how, info.pid, info.progress) == ("finished", "by hand", proc.pid, "5/5 (100%)")
    record = runner.hand_run_record(run_dir)
    results = (run_dir / "out" / "all_results.json").stat().st_mtime
    assert record["files_at"] >= results and info.ended_at == record["ended_at"] >= record["alive_at"]
    assert runner.run_status(run_dir).ended_at == info.ended_at  # recorded once
    # A later run by hand that nobody saw crashes at step 2: its own story, not the seen one's.
    assert _by_hand(run_dir, STEPS="2", TOTAL="6", LOSS="4.0", CODE="1").returncode == 1
    info = runner.run_status(run_dir)
    assert (info.status, info.how, info.pid, info.progress) == ("ended", "by hand", None, "2/6 (33%)"), info.note
    assert "started by hand and not watched" in info.note
    snap = RunFollower(run_dir).poll()
    assert (snap.status, snap.step, snap.losses) == ("ended", 2, [(1, 4.0), (2, 2.0)])

    # Seen alive, then it and a later unseen one both ended before the next look: the later lines in
    # trainer_log.jsonl tell that another training ran since; the seen one's results are not the later one's.
    proc = seen_by_hand(STEPS="3", TOTAL="3")
    try:
        assert proc.wait(30) == 0
    finally:
        _kill_group(proc)
    time.sleep(2.5)  # real trainings are seconds apart (imports, model loading): the results predate its first step
    assert _by_hand(run_dir, STEPS="1", TOTAL="4", LOSS="3.0", CODE="1").returncode == 1
    info = runner.run_status(run_dir)
    assert (info.status, info.pid, info.progress) == ("ended", None, "1/4 (25%)"), info.note
    assert runner.hand_run_record(run_dir)["later_run"] == 1
    snap = RunFollower(run_dir).poll()
    assert (snap.status, snap.step, snap.losses) == ("ended", 1, [(1, 3.0)])
    # And once it finishes, that is its own too.
    assert _by_hand(run_dir, STEPS="4", TOTAL="4", LOSS="1.0", RESULTS="1").returncode == 0
    assert runner.run_status(run_dir).status == "finished"


def test_a_resumed_attempt_shows_its_own_progress_and_each_step_once(runs):
    # On resume LLaMA-Factory appends to trainer_log.jsonl and logs at the trainer's global step, going on from
    # the checkpoint's, with its clock restarted (LogCallback, 0.9.2-0.9.5): the steps between the checkpoint and
    # the crash were in the loss curve twice, and progress was the crashed attempt's until the resumed one logged.
    from minicpm_tui.core.monitor import RunFollower

    run_dir = _fake_trained(runs, "resumed")
    (run_dir / "train.yaml").write_text("output_dir: out\noverwrite_output_dir: false\n")
    out = run_dir / "out"

    def checkpoint(step: int) -> None:
        (out / f"checkpoint-{step}").mkdir()
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))

    def attempt(resume: bool, **env: str) -> runner.RunInfo:
        runner.launch(run_dir, resume=resume, env={"TOTAL": "8", "CODE": "1", **env})
        return wait_status(run_dir, ("failed", "finished"), 30)

    watching = RunFollower(run_dir, status_every=0)  # open all along
    attempt(False, STEPS="5", LOSS="2.0")  # crashes after step 5
    assert [step for step, _ in watching.poll().losses] == [1, 2, 3, 4, 5]
    checkpoint(3)
    runner.launch(run_dir, resume=True, env={"TOTAL": "8", "FIRST": "4", "STEPS": "3", "NAP": "30"})
    try:
        # Resumed from checkpoint-3 and not logged yet: the curve up to the checkpoint, no progress of its own.
        assert runner.RunManifest.load(run_dir).current["resume_step"] == 3
        for snap in (watching.poll(), RunFollower(run_dir).poll()):
            assert (snap.status, snap.step, snap.total_steps, snap.remaining_s) == ("running", None, None, None)
            assert snap.losses == [(1, 2.0), (2, 1.0), (3, 0.6667)] and [s for s, _ in snap.lrs] == [1, 2, 3]
        assert runner.run_status(run_dir).progress == "-"
    finally:
        runner.stop(run_dir, grace=0, term_timeout=5)
    info = attempt(True, FIRST="4", STEPS="6", LOSS="1.0", PACE="0.6")  # steps 4-6 again, then a crash
    assert (info.step, info.total_steps) == (6, 8)
    for snap in (watching.poll(), RunFollower(run_dir).poll()):
        assert snap.losses == [(1, 2.0), (2, 1.0), (3, 0.6667), (4, 0.25), (5, 0.2), (6, 0.1667)]
        assert (snap.step, snap.total_steps) == (6, 8) and snap.elapsed_s >= 1
        # LogCallback's ETA divides this attempt's time by all 6 steps; 3 of them are this attempt's.
        assert snap.remaining_s == pytest.approx((8 - 6) * snap.elapsed_s / 3)
    checkpoint(5)
    info = attempt(True, FIRST="6", STEPS="8", LOSS="0.5", RESULTS="1", CODE="0")
    assert (info.status, info.progress) == ("finished", "8/8 (100%)")
    rows = [json.loads(line) for line in (out / runner.TRAINER_LOG).read_text().splitlines()]
    assert [row["current_steps"] for row in rows] == [1, 2, 3, 4, 5, 4, 5, 6, 6, 7, 8]  # all of it is kept
    for snap in (watching.poll(), RunFollower(run_dir).poll()):
        assert [step for step, _ in snap.losses] == [1, 2, 3, 4, 5, 6, 7, 8]
        assert [loss for step, loss in snap.losses if step in (3, 5, 6)] == [0.6667, 0.2, 0.0833]
        assert (snap.status, snap.step, snap.phase) == ("finished", 8, "done")


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_newest_run_start_finds_where_the_latest_training_begins(tmp_path):
    from datetime import timedelta

    path = tmp_path / runner.TRAINER_LOG

    def line(step: int, total: int = 9, elapsed: int = 0, **extra) -> str:
        return json.dumps({"current_steps": step, "total_steps": total, "elapsed_time": str(timedelta(seconds=elapsed)),
                           **extra}) + "\n"

    first = line(1, loss=2.0) + line(2, elapsed=3, loss=1.5) + line(2, elapsed=4, eval_loss=1.4)
    path.write_text(first)
    assert runner.newest_run_start(path) == 0  # an eval line at the same step is the same run
    again = line(1, loss=2.1) + line(2, elapsed=2, loss=1.6)  # a fresh start: steps and clock restart
    with open(path, "a") as handle:
        handle.write(again + "not json\n" + line(2, elapsed=2, train_loss=1.6))  # the end-of-training line
    assert runner.newest_run_start(path) == len(first)
    resumed = line(2, elapsed=0, loss=1.55) + line(3, elapsed=1, loss=1.2)  # from checkpoint-1: steps go on
    with open(path, "a") as handle:
        handle.write(resumed + '{"current_steps": 4, "tot')  # a torn line being written
    start = len(first) + len(again) + len("not json\n") + len(line(2, elapsed=2, train_loss=1.6))
    assert runner.newest_run_start(path) == start
    assert runner.last_trainer_log(tmp_path, start=start)["current_steps"] == 3
    other = line(9, total=20, elapsed=30, loss=0.5)  # another config: total_steps changes
    with open(path, "a") as handle:
        handle.write('al_steps": 9}\n' + line(3, elapsed=1, loss=1.2))  # the same step's loss twice: a new run
    assert runner.newest_run_start(path) == path.stat().st_size - len(line(3, elapsed=1, loss=1.2))
    with open(path, "a") as handle:
        handle.write(other)
    assert runner.newest_run_start(path) == path.stat().st_size - len(other)
    path.write_text(again)  # overwrite_output_dir deleted it: a new file, one run
    assert runner.newest_run_start(path) == 0
    assert runner.newest_run_start(tmp_path / "missing.jsonl") == 0


def test_stop_a_run_whose_folder_was_deleted_stops_only_its_tagged_processes(runs, tmp_path, capsys):
    """`stop DIR` after DIR was deleted while its run went on said only "no such run directory": the registry
    knows the run, and its processes carry its tag. Only those are signalled; a process that merely worked in
    the folder (a shell, a `tail -f`) is left alone."""
    import shutil

    from minicpm_tui.cli import main

    run_dir = runs("deleted", "sleep 120 & sleep 121\n")
    runner.launch(run_dir)
    wait_status(run_dir, ("running",), 30)
    tag = runner.RunManifest.load(run_dir).current["run_tag"]
    def training() -> list[runner.ProcInfo]:  # what carries the tag, but the supervisor
        return [p for p in runner.all_procs() if runner._run_tag_of(p.pid) == tag
                and not any("run_supervisor.py" in part for part in p.cmdline)]

    wait_for(lambda: len(training()) == 3, 10, "both sleeps up")  # bash and its two sleeps
    bystander = subprocess.Popen(["sleep", "120"], cwd=run_dir, start_new_session=True)
    try:
        shutil.rmtree(run_dir)
        assert main(["stop", str(run_dir), "--grace", "0", "--timeout", "5"]) == 0
        out = capsys.readouterr().out
        assert "stop: the run directory is gone (deleted, or moved to another filesystem), but 3 process(es) carry " \
               "its run tag" in out and f"run tag {tag}" in out and "attempt 1 launched" in out, out
        assert "run is stopped" in out, out
        assert training() == []
        assert bystander.poll() is None  # not the run's: untouched
        wait_for(lambda: not runner._tagged_processes().get(tag), 15, "the supervisor ends by itself")
        # Asked again: said what is known, and that nothing is left to stop.
        assert main(["stop", str(run_dir), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert (result["was"], result["status"], result["left"]) == ("unknown", "unknown", [])
        assert "no process carrying its run tag is alive: nothing to stop" in result["actions"][0]
        # A path the registry never knew is still just missing.
        assert main(["stop", str(tmp_path / "never-there")]) == 2
        assert "never-there: no such run directory" in capsys.readouterr().err
    finally:
        bystander.kill()
        bystander.wait()
        for proc in runner.processes_of(None, tag):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)


def test_stop_a_deleted_run_directory_that_was_moved_stops_it_at_its_new_path(runs, tmp_path, capsys):
    from minicpm_tui.cli import main

    run_dir, moved = _launch_and_move(runs, tmp_path, "sleep 120\n")
    try:
        assert main(["stop", str(run_dir), "--grace", "0", "--timeout", "5"]) == 0
        out = capsys.readouterr().out
        assert f"the run directory was moved to {moved.resolve()} while it ran; stopping it there" in out, out
        assert runner.run_status(moved).status == "stopped"
    finally:
        kill_run(moved)
