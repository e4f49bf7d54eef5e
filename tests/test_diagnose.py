"""Failure diagnosis: real LLaMA-Factory failures (produced here) and fixtures for GPU-only ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _runner_util import kill_run, wait_status

from minicpm_tui.core import runner
from minicpm_tui.core.diagnose import diagnose, diagnose_all, diagnose_run, oom_suggestion

FIXTURES = Path(__file__).parent / "fixtures" / "logs"


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name, kind, words", [
    ("cuda_oom.stderr.log", "cuda_oom", ["2.19 GiB", "GPU 0"]),
    ("nccl_timeout.stderr.log", "nccl_timeout", ["NCCL_P2P_DISABLE=1", "NCCL_IB_DISABLE=1"]),
    ("nccl_error.stderr.log", "nccl_error", ["NCCL_P2P_DISABLE=1"]),
    ("flash_attn_pre_ampere.stderr.log", "flash_attn_arch", ["flash_attn: sdpa"]),
    ("remote_code.stderr.log", "remote_code", ["trust_remote_code: true"]),
    ("disk_full.stderr.log", "disk_full", ["--resume", "save_total_limit"]),
    ("host_oom_killer.stderr.log", "host_oom_killer", ["dmesg"]),
    ("missing_template.stderr.log", "missing_template", ["cpm3", "cpm4"]),
    ("no_valid_samples.stderr.log", "no_valid_samples", ["minicpm-tui validate"]),
    ("deepspeed_no_torchrun.stderr.log", "deepspeed_no_launcher", ["FORCE_TORCHRUN=1", "torchrun"]),
    # A real rerun after `stop` (the stop saved the model, no checkpoint-N yet), on LLaMA-Factory 0.9.5.
    ("output_dir_not_empty.stderr.log", "output_dir_not_empty", ["move the output directory", "checkpoint-N"]),
])
def test_fixture_maps_to_its_fix(name, kind, words):
    diag = diagnose(_fixture(name), 1)
    assert diag is not None and diag.kind == kind, diag
    text = diag.one_line()
    assert "\n" not in text
    for word in words:
        assert word in text
    assert diag.evidence  # the line that gave it away


def test_bf16_without_any_gpu_is_not_blamed_on_the_gpu():
    # A run on a box where torch sees no CUDA GPU was diagnosed "this GPU cannot do bf16: regenerate with
    # --precision fp16", which fails the same way; transformers names Ampere only when it sees CUDA.
    diag = diagnose(_fixture("bf16_no_gpu.stderr.log"), 1)
    assert diag.kind == "no_gpu" and "no CUDA GPU" in diag.summary and "fp16" not in diag.fix
    assert "CUDA_VISIBLE_DEVICES" in diag.fix and "bf16/gpu" in diag.evidence
    for line in ("ValueError: Your setup doesn't support bf16/gpu. You need Ampere+ GPU with cuda>=11.0",
                 "ValueError: Your setup doesn't support bf16/gpu. You need to assign use_cpu if you want to train "
                 "the model on CPU. You need Ampere+ GPU with cuda>=11.0."):
        diag = diagnose(line + "\n", 1)
        assert diag.kind == "bf16_unsupported" and "--precision fp16" in diag.fix


def test_oom_outranks_the_torchrun_summary_and_exit_137_without_text():
    kinds = [d.kind for d in diagnose_all(_fixture("cuda_oom.stderr.log"), 1)]
    assert kinds[0] == "cuda_oom"
    diag = diagnose("nothing useful here", 137)
    assert diag.kind == "host_oom_killer" and "137" in diag.summary


def test_unknown_failure_still_points_somewhere_and_success_is_silent():
    diag = diagnose("ValueError: something odd\n", 3)
    assert diag.kind == "unknown" and "exit code 3" in diag.summary and "ValueError" in diag.evidence
    assert diagnose("all good", 0) is None


def _run_dir(tmp_path: Path, train: dict, ds: dict | None = None) -> Path:
    import yaml

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train.yaml").write_text(yaml.safe_dump(train))
    if ds is not None:
        (run_dir / "ds_config.json").write_text(json.dumps(ds))
    return run_dir


def test_oom_suggests_the_next_configuration(tmp_path):
    base = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "finetuning_type": "full",
            "deepspeed": "ds_config.json", "cutoff_len": 2048}
    run_dir = _run_dir(tmp_path, base, {"zero_optimization": {"stage": 2}})
    text = oom_suggestion(run_dir)
    assert "micro-batch 4 -> 2" in text and "accumulation 2 -> 4" in text
    diag = diagnose(_fixture("cuda_oom.stderr.log"), 1, run_dir=run_dir)
    assert "micro-batch 4 -> 2" in diag.fix
    # Micro-batch already 1: the ladder moves on to ZeRO-3, then offload, then LoRA.
    (run_dir / "train.yaml").write_text((run_dir / "train.yaml").read_text().replace(
        "per_device_train_batch_size: 4", "per_device_train_batch_size: 1"))
    assert "ZeRO-3" in oom_suggestion(run_dir)
    (run_dir / "ds_config.json").write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    assert "--offload optimizer" in oom_suggestion(run_dir)
    (run_dir / "ds_config.json").write_text(json.dumps(
        {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"},
                               "offload_param": {"device": "cpu"}}}))
    assert "--method lora" in oom_suggestion(run_dir)
    assert "minicpm-tui plan" in oom_suggestion(None)


# -- real failures ---------------------------------------------------------------------------------
def _dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"instruction": f"say {i}", "input": "", "output": f"number {i}"} for i in range(8)]
    (folder / "ok.json").write_text(json.dumps(rows))
    # Every row starts with the assistant: LLaMA-Factory drops each ("Invalid role tag"), none survive.
    bad = [{"conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "x"}]}] * 4
    (folder / "bad.json").write_text(json.dumps(bad))
    (folder / "dataset_info.json").write_text(json.dumps({
        "ok": {"file_name": "ok.json"}, "bad": {"file_name": "bad.json", "formatting": "sharegpt"}}))
    return folder


@pytest.mark.integration
def test_real_failures_are_diagnosed(tmp_path, tiny_model_cpm3):
    """Three real LLaMA-Factory failures, launched through the runner, each mapped to its fix."""
    import yaml

    from minicpm_tui.core.lfinfo import training_python

    data = _dataset(tmp_path / "data")
    base = {"model_name_or_path": str(tiny_model_cpm3), "stage": "sft", "do_train": True,
            "finetuning_type": "lora", "lora_target": "all", "dataset_dir": str(data), "cutoff_len": 32,
            "per_device_train_batch_size": 1, "max_steps": 1, "report_to": "none", "overwrite_output_dir": True,
            "template": "cpm4", "dataset": "ok", "output_dir": "out"}
    cases = {
        # cpm3 was removed in LLaMA-Factory 0.9.5 (the installed version).
        "missing_template": {"template": "cpm3"},
        "no_valid_samples": {"dataset": "bad"},
        "deepspeed_no_launcher": {"deepspeed": "ds.json"},
    }
    launched = []
    try:
        for kind, change in cases.items():
            run_dir = tmp_path / kind
            run_dir.mkdir()
            (run_dir / "train.yaml").write_text(yaml.safe_dump({**base, **change}))
            (run_dir / "ds.json").write_text(json.dumps({
                "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
                "gradient_accumulation_steps": "auto", "zero_optimization": {"stage": 2}}))
            runner.launch(run_dir, command=[training_python(), "-m", "llamafactory.cli", "train", "train.yaml"])
            launched.append(run_dir)
            info = wait_status(run_dir, ("failed", "finished"), timeout=240)
            assert info.status == "failed" and info.exit_code not in (None, 0)
            diag = diagnose_run(run_dir)
            assert diag is not None and diag.kind == kind, (kind, diag)
    finally:
        for run_dir in launched:
            kill_run(run_dir)


@pytest.mark.integration
def test_oom_fix_comes_from_the_planner_for_a_generated_run(tmp_path):
    from minicpm_tui.core.recipe import Recipe
    from minicpm_tui.core.writers import generate

    data = _dataset(tmp_path / "data")
    run_dir = tmp_path / "oom-run"
    generate(Recipe(model="MiniCPM4-0.5B", hardware="1x-t4-16gb", method="full", stage="sft", datasets=["ok"],
                    dataset_dir=str(data), cutoff_len=2048, micro_batch=8), run_dir)
    diag = diagnose(_fixture("cuda_oom.stderr.log"), 1, run_dir=run_dir)
    assert diag.kind == "cuda_oom"
    assert diag.fix.startswith("planner's next configuration: "), diag.fix
    assert "estimated peak" in diag.fix and "GiB/GPU" in diag.fix and "--micro-batch" in diag.fix
