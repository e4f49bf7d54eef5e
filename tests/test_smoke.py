"""Real CPU smoke runs through each generated single_node.sh (LLaMA-Factory 0.9.5, tiny model)."""

from __future__ import annotations

import math

import pytest
from test_smoke_support import build_ds_ops, demo_recipe

from minicpm_tui.core.smoke import prepare_smoke, read_losses, smoke
from minicpm_tui.core.writers import generate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ds_ops(test_home):
    build_ds_ops(test_home)


def _check(result):
    assert result.passed, f"{result.reason}\n{result.log_tail}"
    assert len(result.losses) >= 2
    assert all(math.isfinite(v) for _, v in result.losses)
    assert result.losses == read_losses(result.output_dir)
    assert (result.output_dir / "trainer_log.jsonl").is_file()


@pytest.mark.parametrize("stage", ["sft", "dpo", "kto"])
@pytest.mark.parametrize("method", ["lora", "full"])
def test_smoke_stage_method(tmp_path, lf, tiny_model_cpm3, stage, method):
    run = tmp_path / "run"
    generate(demo_recipe(stage, method), run, info=lf, preflight=False)
    _check(smoke(run, steps=3))


@pytest.mark.parametrize("zero", [2, 3])
def test_smoke_deepspeed_two_processes(tmp_path, lf, tiny_model_cpm3, ds_ops, zero):
    run = tmp_path / "run"
    generate(demo_recipe("sft", "full" if zero == 3 else "lora", zero_stage=zero, gpus=2), run, info=lf,
             preflight=False)
    spec = prepare_smoke(run)
    assert spec.nproc == 2 and spec.env["TRAIN_YAML"] == "smoke/train.yaml"
    _check(smoke(run, steps=3))


def test_smoke_minicpm_2b_cpm_template_on_installed_lf(tmp_path, lf, tiny_model_cpm):
    run = tmp_path / "run"
    generate(demo_recipe("sft", "lora", model="MiniCPM-2B"), run, info=lf, preflight=True)
    assert "template: cpm  #" in (run / "train.yaml").read_text()
    result = smoke(run, steps=3)
    _check(result)
    if not lf.has_template("cpm"):
        assert "registered chat template(s) missing from this LLaMA-Factory: cpm" in result.log_path.read_text()


def test_single_node_passes_overrides_and_env(tmp_path, lf, tiny_model_cpm3):
    """Extra arguments reach LLaMA-Factory as key=value overrides (max_steps=2 wins over the yaml's 3)."""
    from minicpm_tui.core.smoke import run_spec

    run = tmp_path / "run"
    generate(demo_recipe(), run, info=lf, preflight=False)
    spec = prepare_smoke(run, steps=3)
    result = run_spec(spec, extra_args=["max_steps=2"])
    assert result.passed, result.log_tail
    assert [s for s, _ in result.losses][-1] == 2
