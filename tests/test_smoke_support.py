"""Helpers shared by the run-directory tests (no tests here): recipes on the shipped demo data, the
DeepSpeed shared-memory comm op built once per test home, and per-test time limits."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from minicpm_tui.assets import asset_path
from minicpm_tui.core.lfinfo import training_python
from minicpm_tui.core.recipe import Recipe
from minicpm_tui.core.tinymodel import offline_env
from minicpm_tui.core.writers import generate

DEMO = {"sft": "demo_sft", "dpo": "demo_dpo", "kto": "demo_kto"}

# Time limits. A tiny smoke takes 10-20 s on a quiet 2-core machine (mostly imports) and up to ~45 s with
# six other jobs on those cores; the limits leave a wide margin but still end a hang in minutes.
SMOKE_TIMEOUT_S = 420  # one launch through a generated script (core.smoke.run_spec's own limit)
TEST_TIMEOUT_S = 600  # pytest-timeout for a test with one launch (the launch's limit + generate/preflight)
# DeepSpeed's shm comm op: ~35 s of g++ on a quiet machine, 5.5 min measured under a load of 7 on 2 cores.
DS_BUILD_TIMEOUT_S = 900


def demo_recipe(stage: str = "sft", method: str = "lora", **values) -> Recipe:
    base = {"name": f"t-{stage}-{method}", "model": "MiniCPM4-0.5B", "stage": stage, "method": method,
            "datasets": [DEMO[stage]], "dataset_dir": str(asset_path("data")), "gpus": 1, "zero_stage": 0,
            "precision": "bf16", "flash_attn": "sdpa", "gradient_checkpointing": "false", "micro_batch": 1,
            "grad_accum": 1, "hardware": "auto", "cutoff_len": 64, "max_steps": 2, "logging_steps": 1}
    base.update(values)
    return Recipe.from_dict(base)


MODELS = ["MiniCPM-1B", "MiniCPM-2B", "MiniCPM3-4B", "MiniCPM4-0.5B", "MiniCPM4-8B", "MiniCPM4.1-8B"]
HARDWARE = sorted(p.stem for p in asset_path("presets", "hardware").glob("*.yaml"))


def write_matrix(root: Path, info) -> list[Path]:
    """Run directories for every model x stage x method (planned for 8x A100), 4-bit QLoRA under ZeRO-3,
    and MiniCPM4-8B full SFT on every hardware preset, generated against ``info``'s LLaMA-Factory."""
    dirs = []
    for model in MODELS:
        for stage in ("sft", "dpo", "kto"):
            for method in ("lora", "full"):
                recipe = demo_recipe(stage, method, model=model, zero_stage="auto", gpus="auto",
                                     micro_batch="auto", grad_accum="auto", precision="auto", flash_attn="auto",
                                     gradient_checkpointing="auto", hardware="8x-a100-80gb-nvlink",
                                     max_steps=0, cutoff_len=2048)
                out = root / f"{model}-{stage}-{method}"
                generate(recipe, out, info=info, preflight=False)
                dirs.append(out)
    for zero in (3, "auto"):  # 4-bit QLoRA under ZeRO-3 (chosen by the planner on two 3090s)
        recipe = demo_recipe("sft", "qlora", model="MiniCPM4-8B", zero_stage=zero, gpus=2, hardware="2x-rtx3090",
                             micro_batch="auto", grad_accum="auto", precision="auto", cutoff_len=2048)
        out = root / f"qlora-zero-{zero}"
        generate(recipe, out, info=info, preflight=False)
        dirs.append(out)
    for hw in HARDWARE:
        recipe = demo_recipe("sft", "full", model="MiniCPM4-8B", zero_stage="auto", gpus="auto", nodes=2,
                             micro_batch="auto", grad_accum="auto", precision="auto", flash_attn="auto",
                             gradient_checkpointing="auto", offload="auto", hardware=hw)
        out = root / f"hw-{hw}"
        generate(recipe, out, info=info, preflight=False)
        dirs.append(out)
    return dirs


class DsOpBuild:
    """Builds DeepSpeed's shm comm op (JIT, on first use) in the background, once per session.

    Started early so the g++ work overlaps the single-process smokes; ``wait()`` blocks until it is done.
    Once built (cached under TORCH_EXTENSIONS_DIR, in the test home) this is only a ~5 s load. The build
    runs in its own process group, killed whole if the session ends first.
    """

    def __init__(self, home: Path) -> None:
        self.log = home / "ds_shm_build.log"
        self.proc: subprocess.Popen[bytes] | None = None
        code = ("from deepspeed.ops.op_builder.cpu.comm import ShareMemCommBuilder\n"
                "ShareMemCommBuilder().load()\n")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([training_python(), "-c", code], env=offline_env(), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def wait(self, timeout: float = DS_BUILD_TIMEOUT_S) -> None:
        if self.proc is None:
            return
        try:
            code = self.proc.wait(timeout=timeout)
        except BaseException:
            self.kill()
            raise
        tail = self.log.read_text(errors="replace")[-3000:]
        assert code == 0, f"building DeepSpeed's shm comm op failed ({code}):\n{tail}"
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def build_ds_ops(home: Path) -> None:
    """DeepSpeed JIT-builds its shm comm op on first use; build it once, now (blocking)."""
    DsOpBuild(home).wait()
