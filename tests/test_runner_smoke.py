"""Done-when tests with REAL CPU smoke runs (LLaMA-Factory, tiny model) through a generated single_node.sh:
the run outlives a SIGKILLed launcher and a killed tmux session; stop leaves no process of the run's group;
the plain monitor piped to a file shows the phases in order and the final loss."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _runner_util import kill_run, tail_logs, wait_for, wait_status

from minicpm_tui.core import runner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    rows = [{"instruction": f"count to {i}", "input": "", "output": " ".join(str(n) for n in range(i))}
            for i in range(1, 25)]
    (folder / "tiny_sft.json").write_text(json.dumps(rows))
    (folder / "dataset_info.json").write_text(json.dumps({"tiny_sft": {"file_name": "tiny_sft.json"}}))
    return folder


@pytest.fixture()
def smoke_run(tmp_path, data_dir, tiny_model_cpm3):
    """A generated run directory prepared for a CPU smoke of ``steps`` steps: (run_dir, env)."""
    from minicpm_tui.core.recipe import Recipe
    from minicpm_tui.core.smoke import prepare_smoke
    from minicpm_tui.core.writers import generate

    made: list[Path] = []

    def make(steps: int) -> tuple[Path, dict[str, str]]:
        run_dir = tmp_path / f"run{len(made)}"
        recipe = Recipe(name="smoke-test", hardware="1x-a10-24gb", method="lora", stage="sft",
                        datasets=["tiny_sft"], dataset_dir=str(data_dir), max_steps=steps, logging_steps=1)
        generate(recipe, run_dir)
        spec = prepare_smoke(run_dir, steps=steps)
        made.append(run_dir)
        return run_dir, dict(spec.env)

    yield make
    for run_dir in made:
        kill_run(run_dir)


def _env_args(env: dict[str, str]) -> list[str]:
    return [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "minicpm_tui", *args]


def _losses(run_dir: Path) -> list[float]:
    out = runner.output_dir_of(run_dir)
    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines() if line.strip()]
    return [r["loss"] for r in rows if "loss" in r]


def _runs_entry(run_dir: Path) -> dict:
    proc = subprocess.run(_cli("runs", "--json"), capture_output=True, text=True, timeout=60)
    entries = [r for r in json.loads(proc.stdout) if r["run_dir"] == str(run_dir.resolve())]
    assert len(entries) == 1, proc.stdout
    return entries[0]


def test_survives_sigkill_of_the_launcher_and_monitor_plain_shows_it(smoke_run, tmp_path):
    run_dir, env = smoke_run(steps=40)
    launcher = subprocess.Popen(_cli("run", str(run_dir), "--follow", *_env_args(env)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    monitor_out = tmp_path / "monitor.txt"
    monitor = None
    try:
        wait_for(lambda: runner.run_status(run_dir).status == "running", 60, "run started")
        with open(monitor_out, "w") as handle:
            monitor = subprocess.Popen(_cli("monitor", str(run_dir), "--plain", "--interval", "0.5"),
                                       stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        os.killpg(launcher.pid, signal.SIGKILL)  # the launching process dies hard
        launcher.wait(10)
        info = wait_status(run_dir, ("finished", "failed", "died"), 300)
        assert info.status == "finished" and info.exit_code == 0, tail_logs(run_dir)
        assert monitor.wait(60) == 0
    finally:
        for proc in (launcher, monitor):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    entry = _runs_entry(run_dir)
    assert entry["status"] == "finished" and entry["exit_code"] == 0 and entry["progress"].startswith("40/40")
    text = monitor_out.read_text()
    phases = [line.split("phase: ")[1] for line in text.splitlines() if " phase: " in line]
    order = ["starting", "tokenizing", "loading model", "training", "saving", "done"]
    assert [p for p in phases if p in order] == [p for p in order if p in phases], text
    assert phases[-1] == "done" and {"tokenizing", "loading model", "training", "done"} <= set(phases), text
    final = text.strip().splitlines()[-1]
    assert final.startswith("run finished (exit 0): final loss ") and final.endswith("steps 40/40"), text
    assert f"final loss {_losses(run_dir)[-1]:.4f}" in final


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install -y tmux)")
def test_survives_the_terminal_session_being_killed(smoke_run, tmp_path):
    run_dir, env = smoke_run(steps=40)
    sock = tmp_path / "tmux.sock"
    command = shlex.join(_cli("run", str(run_dir), "--follow", *_env_args(env)))
    subprocess.run(["tmux", "-S", str(sock), "new-session", "-d", "-s", "train", command], check=True, timeout=30)
    try:
        wait_for(lambda: runner.run_status(run_dir).status == "running", 60, "run started in tmux")
        time.sleep(1)
        # The terminal goes away: every process attached to it gets SIGHUP.
        subprocess.run(["tmux", "-S", str(sock), "kill-server"], check=True, timeout=30)
        info = wait_status(run_dir, ("finished", "failed", "died"), 300)
        assert info.status == "finished" and info.exit_code == 0, tail_logs(run_dir)
    finally:
        subprocess.run(["tmux", "-S", str(sock), "kill-server"], capture_output=True, timeout=30)
    entry = _runs_entry(run_dir)
    assert entry["status"] == "finished" and entry["exit_code"] == 0


def test_stop_leaves_no_process_of_the_run(smoke_run):
    run_dir, env = smoke_run(steps=5000)
    manifest = runner.launch(run_dir, env=env)
    pgid = manifest.pgid
    out = runner.output_dir_of(run_dir)
    wait_for(lambda: (out / "trainer_log.jsonl").is_file() and (out / "trainer_log.jsonl").stat().st_size > 0,
             180, "training steps")
    tag = manifest.current["run_tag"]
    procs = runner.processes_of(pgid, tag)
    # torchrun (the launch group's leader) and its worker, which torchrun puts in a session of its own.
    assert len(procs) >= 2 and any(p.pgid != pgid for p in procs), procs
    proc = subprocess.run(_cli("stop", str(run_dir), "--grace", "60"), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "run is stopped" in proc.stdout
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    assert runner.group_pids(pgid) == [] and runner.processes_of(pgid, tag) == []
    assert all(runner.proc_info(p.pid) is None for p in procs)
    entry = _runs_entry(run_dir)
    assert entry["status"] == "stopped"
    # The graceful path: LLaMA-Factory took the abort after a step and exited by itself.
    assert "after the current step" in proc.stdout, proc.stdout
    assert len(_losses(run_dir)) < 5000


def test_stop_with_a_damaged_manifest_still_ends_the_real_training(smoke_run):
    # The manifest is truncated mid-run: `stop` refused while torchrun and its worker kept going.
    run_dir, env = smoke_run(steps=5000)
    manifest = runner.launch(run_dir, env=env)
    out = runner.output_dir_of(run_dir)
    wait_for(lambda: (out / "trainer_log.jsonl").is_file() and (out / "trainer_log.jsonl").stat().st_size > 0,
             180, "training steps")
    procs = runner.processes_of(manifest.pgid, manifest.current["run_tag"], exclude=[manifest.current["supervisor_pid"]])
    text = (run_dir / runner.MANIFEST).read_text()
    (run_dir / runner.MANIFEST).write_text(text[: len(text) // 2])
    proc = subprocess.run(_cli("stop", str(run_dir), "--grace", "60"), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stopping the run without it" in proc.stdout and "after the current step" in proc.stdout, proc.stdout
    assert "run is stopped; its manifest is left as it was" in proc.stdout
    assert all(runner.proc_info(p.pid) is None for p in procs)
    rows = (out / "trainer_log.jsonl").read_text().splitlines()  # output_dir_of needs the manifest
    assert 0 < len(rows) < 5000


def _log_rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line torn by the kill
            rows.append(json.loads(line))
    return rows


def test_runs_by_hand_that_nobody_watched_are_told_from_their_files(smoke_run):
    # Real trainings through the generated single_node.sh, by hand, with nothing of minicpm-tui looking: one
    # killed mid-run (no results: "ended", at the step it reached), then another in the same output_dir, whose
    # lines LLaMA-Factory appends under the first one's in trainer_log.jsonl (no overwrite_output_dir).
    import yaml

    from minicpm_tui.core.monitor import RunFollower

    run_dir, env = smoke_run(steps=3)
    cfg = yaml.safe_load((run_dir / "smoke" / "train.yaml").read_text())
    cfg.update(output_dir="output", overwrite_output_dir=False, max_steps=5000)  # the smoke's tiny model, by hand
    (run_dir / "train.yaml").write_text(yaml.safe_dump(cfg))
    env.pop("TRAIN_YAML")
    hand_env = {**os.environ, **env}
    log = run_dir / "output" / runner.TRAINER_LOG
    proc = subprocess.Popen(["bash", "single_node.sh"], cwd=run_dir, env=hand_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: log.is_file() and len(_log_rows(log)) >= 3, 240, "three logged steps")
    finally:
        # kill -9 all of it: bash, torchrun and its worker (in a session of its own, but torchrun's child)
        for p in runner.processes_of(proc.pid):
            os.kill(p.pid, signal.SIGKILL)
        proc.wait(30)
    wait_for(lambda: not runner.processes_of(proc.pid) and not runner._hand_processes(run_dir.resolve()), 30, "gone")
    reached = _log_rows(log)[-1]["current_steps"]
    info = runner.run_status(run_dir)
    assert not (run_dir / runner.HAND_RECORD).exists()  # nobody saw it alive
    assert (info.status, info.how, info.step, info.total_steps) == ("ended", "by hand", reached, 5000), info
    assert info.ended_at == log.stat().st_mtime and "wrote no final results" in info.note

    done = subprocess.run(["bash", "single_node.sh", "max_steps=3"], cwd=run_dir, env=hand_env, capture_output=True,
                          text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = _log_rows(log)
    assert rows[0]["total_steps"] == 5000 and rows[-1]["total_steps"] == 3  # appended under the killed run's
    info = runner.run_status(run_dir)
    assert (info.status, info.how, info.progress) == ("finished", "by hand", "3/3 (100%)"), info
    assert info.ended_at >= (run_dir / "output" / "all_results.json").stat().st_mtime
    own = [(r["current_steps"], r["loss"]) for r in rows if r["total_steps"] == 3 and "loss" in r]
    snap = RunFollower(run_dir).poll()
    assert len(own) == 3 and snap.losses == own and (snap.step, snap.phase) == (3, "done"), snap.losses


def test_a_resumed_real_training_shows_its_own_progress_and_each_step_once(smoke_run):
    # A real crash and `run --resume`: LLaMA-Factory appends the resumed training's lines to trainer_log.jsonl,
    # at the trainer's global step from the checkpoint's on, with its clock restarted; the monitor showed the
    # steps between the checkpoint and the crash twice, and the crashed attempt's progress until the new one logged.
    import yaml

    from minicpm_tui.core.monitor import RunFollower, parse_hms

    run_dir, env = smoke_run(steps=3)
    cfg = yaml.safe_load((run_dir / "smoke" / "train.yaml").read_text())
    cfg.update(output_dir="output", overwrite_output_dir=False, max_steps=5000, save_strategy="steps", save_steps=3)
    (run_dir / "train.yaml").write_text(yaml.safe_dump(cfg))
    env.pop("TRAIN_YAML")
    out = run_dir / "output"
    log = out / runner.TRAINER_LOG
    manifest = runner.launch(run_dir, env=env)
    wait_for(lambda: log.is_file() and any(r.get("current_steps", 0) >= 6 for r in _log_rows(log)), 240,
             "six logged steps")
    cur = manifest.current
    for p in runner.processes_of(cur["pgid"], cur["run_tag"], exclude=[cur["supervisor_pid"]]):
        os.kill(p.pid, signal.SIGKILL)  # a crash; the supervisor records it
    wait_status(run_dir, ("failed", "died"), 60)
    for folder in runner.checkpoints(out):
        if folder.name != "checkpoint-3":
            shutil.rmtree(folder)  # as if it had crashed before its next save
    crashed = _log_rows(log)
    reached = crashed[-1]["current_steps"]
    assert reached >= 6

    runner.launch(run_dir, resume=True, env=env)
    watching = RunFollower(run_dir, status_every=0)
    snap = watching.poll()
    before = {r["current_steps"]: r["loss"] for r in crashed if "loss" in r and r["current_steps"] <= 3}
    assert (snap.step, snap.total_steps, snap.losses) == (None, None, sorted(before.items()))  # still loading
    assert runner.run_status(run_dir).progress == "-"
    wait_for(lambda: any(r.get("current_steps", 0) > reached for r in _log_rows(log)[len(crashed):]), 240,
             "the resumed training past the crash")
    rows = _log_rows(log)
    resumed = rows[len(crashed):]
    # What LLaMA-Factory really writes on resume: appended, steps on from checkpoint-3, its clock restarted.
    assert resumed[0]["current_steps"] == 4 and resumed[0]["total_steps"] == 5000
    assert parse_hms(resumed[0]["elapsed_time"]) <= parse_hms(crashed[-1]["elapsed_time"])
    snap = watching.poll()
    newest = {**before, **{r["current_steps"]: r["loss"] for r in resumed if "loss" in r}}
    for follower_snap in (snap, RunFollower(run_dir).poll()):
        assert follower_snap.losses[:len(newest)] == sorted(newest.items())
        steps = [step for step, _ in follower_snap.losses]
        assert steps == list(range(1, steps[-1] + 1))  # each step once
        assert follower_snap.step >= resumed[-1]["current_steps"] and follower_snap.total_steps == 5000
    info = runner.run_status(run_dir)
    assert info.status == "running" and info.step >= resumed[-1]["current_steps"]
    runner.stop(run_dir, grace=0, term_timeout=10)


def test_the_smoke_command_says_its_phases_on_stderr(smoke_run):
    """`minicpm-tui smoke` printed nothing for the tens of seconds it trains. It now says each phase on stderr,
    read from its log by the monitor's parsing: one line per phase when stderr is no terminal."""
    run_dir, _env = smoke_run(2)
    proc = subprocess.run(_cli("smoke", str(run_dir), "--steps", "2"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("smoke: ")]
    assert lines == ["smoke: preparing", "smoke: starting", "smoke: tokenizing", "smoke: loading model",
                     "smoke: training step 1/2", "smoke: saving"], proc.stderr
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("smoke PASSED")  # stdout keeps the result only
    assert not any(line.startswith("smoke: ") for line in proc.stdout.splitlines())

