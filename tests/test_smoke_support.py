"""Helpers shared by the run-directory tests (no tests here): recipes on the shipped demo data, and the
DeepSpeed shared-memory comm op built once per test home."""

from __future__ import annotations

import subprocess
from pathlib import Path

from minicpm_tui.assets import asset_path
from minicpm_tui.core.lfinfo import training_python
from minicpm_tui.core.recipe import Recipe
from minicpm_tui.core.tinymodel import offline_env

DEMO = {"sft": "demo_sft", "dpo": "demo_dpo", "kto": "demo_kto"}


def demo_recipe(stage: str = "sft", method: str = "lora", **values) -> Recipe:
    base = {"name": f"t-{stage}-{method}", "model": "MiniCPM4-0.5B", "stage": stage, "method": method,
            "datasets": [DEMO[stage]], "dataset_dir": str(asset_path("data")), "gpus": 1, "zero_stage": 0,
            "precision": "bf16", "flash_attn": "sdpa", "gradient_checkpointing": "false", "micro_batch": 1,
            "grad_accum": 1, "hardware": "auto", "cutoff_len": 128, "max_steps": 3}
    base.update(values)
    return Recipe.from_dict(base)


def build_ds_ops(home: Path) -> None:
    """DeepSpeed JIT-builds its shm comm op on first use (~35 s, more on a busy machine); build it once."""
    marker = home / "ds_shm_built"
    if marker.exists():
        return
    code = ("from deepspeed.ops.op_builder.cpu.comm import ShareMemCommBuilder\n"
            "ShareMemCommBuilder().load()\n")
    proc = subprocess.run([training_python(), "-c", code], capture_output=True, text=True, env=offline_env(),
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    marker.write_text("ok")
