"""Real CPU smoke runs through each generated single_node.sh (LLaMA-Factory 0.9.5, tiny model).

Each smoke is one launch of `bash single_node.sh` (2 steps, cutoff 64, a loss logged at each step) in its
own process group, stopped with everything it started if it overruns. The DeepSpeed tests come last in
this module so the one-time build of DeepSpeed's shm comm op overlaps the single-process smokes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import psutil
import pytest
from test_smoke_support import SMOKE_TIMEOUT_S, TEST_TIMEOUT_S, DsOpBuild, demo_recipe

from minicpm_tui.core.smoke import prepare_smoke, read_losses, run_spec, smoke, stop_tree
from minicpm_tui.core.writers import generate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(TEST_TIMEOUT_S)]

STEPS = 2


@pytest.fixture(scope="session")
def ds_op_build(test_home):
    """Started by the first test of this module; waited for by the DeepSpeed tests."""
    build = DsOpBuild(test_home)
    yield build
    build.kill()


@pytest.fixture(scope="module", autouse=True)
def _start_ds_op_build(ds_op_build):
    return ds_op_build


def _check(result, steps: int = STEPS):
    assert result.passed, f"{result.reason}\n{result.log_tail}"
    log = result.output_dir / "trainer_log.jsonl"
    assert log.is_file()
    assert result.losses == read_losses(result.output_dir)
    assert [s for s, _ in result.losses] == list(range(1, steps + 1))  # a loss at every step
    assert all(math.isfinite(v) for _, v in result.losses), result.losses


def test_single_node_passes_overrides_and_env(tmp_path, lf, tiny_model_cpm3):
    """The SFT + LoRA smoke, launched with an extra argument: it reaches LLaMA-Factory as a key=value
    override (max_steps=2 wins over the smoke yaml's 3), while TRAIN_YAML, NPROC_PER_NODE, MASTER_PORT
    and CUDA_VISIBLE_DEVICES="" come from the environment."""
    run = tmp_path / "run"
    generate(demo_recipe("sft", "lora"), run, info=lf, preflight=False)
    spec = prepare_smoke(run, steps=3)
    assert "max_steps: 3" in spec.yaml_path.read_text()
    result = run_spec(spec, extra_args=[f"max_steps={STEPS}"], timeout=SMOKE_TIMEOUT_S)
    _check(result)
    log = result.log_path.read_text(errors="replace")
    assert f"1 node(s) x 1 process(es), node rank 0, master 127.0.0.1:{spec.env['MASTER_PORT']}, " \
           "config smoke/train.yaml" in log
    assert (result.output_dir / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("stage, method", [("sft", "full"), ("dpo", "lora"), ("dpo", "full"), ("kto", "lora"),
                                           ("kto", "full")])
def test_smoke_stage_method(tmp_path, lf, tiny_model_cpm3, stage, method):
    """SFT + LoRA is test_single_node_passes_overrides_and_env (the same launch, with an override)."""
    run = tmp_path / "run"
    generate(demo_recipe(stage, method), run, info=lf, preflight=False)
    result = smoke(run, steps=STEPS, timeout=SMOKE_TIMEOUT_S)
    _check(result)
    if stage == "dpo":  # LLaMA-Factory logs the preference accuracy with each DPO loss
        rows = [json.loads(line) for line in (result.output_dir / "trainer_log.jsonl").read_text().splitlines()]
        assert all("accuracy" in row for row in rows if "loss" in row), rows
    saved = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    assert (result.output_dir / saved).is_file()


def test_smoke_minicpm_2b_cpm_template_on_installed_lf(tmp_path, lf, tiny_model_cpm):
    """Through the CLI (`minicpm-tui smoke RUN --json`): the same one launch, the command covered too."""
    run = tmp_path / "run"
    generate(demo_recipe("sft", "lora", model="MiniCPM-2B"), run, info=lf, preflight=False)  # matrix covers it
    assert "template: cpm  #" in (run / "train.yaml").read_text()
    proc = subprocess.Popen([sys.executable, "-m", "minicpm_tui", "smoke", str(run), "--steps", str(STEPS),
                             "--timeout", str(SMOKE_TIMEOUT_S), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=SMOKE_TIMEOUT_S + 60)
    except BaseException:  # the CLI and the launch it started, in their groups
        stop_tree(proc, grace=10)
        raise
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    result = json.loads(out)
    assert result["passed"], result
    output = run / "smoke" / "output"
    losses = [(row["step"], row["loss"]) for row in result["losses"]]
    assert losses == read_losses(output) and [s for s, _ in losses] == list(range(1, STEPS + 1))
    assert all(math.isfinite(v) for _, v in losses), losses
    if not lf.has_template("cpm"):
        log = (run / "smoke" / "smoke.log").read_text(errors="replace")
        assert "registered chat template(s) missing from this LLaMA-Factory: cpm" in log


def _workers(tree: list[psutil.Process]) -> list[psutil.Process]:
    # A worker after its exec (a fork not yet exec'd still shows torchrun's command line)
    out = []
    for p in tree:
        try:
            cmd = " ".join(p.cmdline())
            if "train_entry.py" in cmd and "torch.distributed.run" not in cmd:
                out.append(p)
        except psutil.Error:
            pass
    return out


def test_stopping_a_smoke_leaves_no_process(tmp_path, lf, tiny_model_cpm3):
    """torchrun starts its workers in sessions of their own: stop_tree must still end every one."""
    run = tmp_path / "run"
    generate(demo_recipe("sft", "lora", gpus=2), run, info=lf, preflight=False)
    spec = prepare_smoke(run, steps=500)  # still training when stopped
    assert spec.nproc == 2
    proc = subprocess.Popen(spec.argv, cwd=run, env=spec.full_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        tree: list[psutil.Process] = []
        while time.monotonic() < deadline and proc.poll() is None:
            tree = psutil.Process(proc.pid).children(recursive=True)
            if len(_workers(tree)) >= 2:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the launch ended before its workers started"
        assert len(_workers(tree)) >= 2, [p.cmdline() for p in tree]
        # The reason for stop_tree: killing the launch's group alone would orphan these.
        assert all(os.getpgid(p.pid) == p.pid for p in _workers(tree)), "workers share the launch's group"
    finally:
        stop_tree(proc, grace=0)  # the hard path: torchrun gets no time to stop its workers itself
    time.sleep(0.5)
    assert proc.poll() is not None
    alive = []
    for p in tree:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append((p.pid, p.cmdline()))
        except psutil.NoSuchProcess:
            pass
    assert not alive, alive


@pytest.mark.timeout(TEST_TIMEOUT_S + 900)  # the first one may still wait for the shm op build
@pytest.mark.parametrize("zero, stage, method", [(2, "sft", "lora"), (3, "sft", "full"), (3, "dpo", "lora")])
def test_smoke_deepspeed_two_processes(tmp_path, lf, tiny_model_cpm3, ds_op_build, zero, stage, method):
    ds_op_build.wait()
    run = tmp_path / "run"
    generate(demo_recipe(stage, method, zero_stage=zero, gpus=2), run, info=lf, preflight=False)
    spec = prepare_smoke(run, steps=STEPS)
    assert spec.nproc == 2 and spec.env["TRAIN_YAML"] == "smoke/train.yaml" and spec.deepspeed
    text = spec.yaml_path.read_text()
    assert "use_cpu" not in text  # use_cpu would make accelerate bypass DeepSpeed
    result = run_spec(spec, timeout=SMOKE_TIMEOUT_S)
    _check(result)
    # DeepSpeed really ran (not plain DDP): its ZeRO checkpoint shards are there, for both ranks.
    shards = sorted(p.name for p in result.output_dir.glob(f"checkpoint-{STEPS}/global_step{STEPS}/*"))
    assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= set(shards), shards
    if zero == 3:
        assert "Detected DeepSpeed ZeRO-3" in result.log_path.read_text(errors="replace")


def test_a_bundled_run_directory_trains_after_a_move_without_the_users_files(tmp_path, lf, tiny_model_cpm3):
    """generate --bundle-data: moved to another folder (another machine, as far as its paths go) with the
    user's data folder gone, the run directory still trains, reading the files it carries."""
    import shutil

    from minicpm_tui.assets import asset_path

    data = tmp_path / "mydata"
    shutil.copytree(asset_path("data"), data)
    run = tmp_path / "run"
    generate(demo_recipe("sft", "lora", dataset_dir=str(data), bundle_data=True), run, info=lf, preflight=False)
    shutil.rmtree(data)
    moved = tmp_path / "moved" / "run"
    moved.parent.mkdir()
    run.rename(moved)
    _check(smoke(moved, steps=STEPS, timeout=SMOKE_TIMEOUT_S))
