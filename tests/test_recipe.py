"""The recipe and its one options registry (unit tests, no subprocess)."""

from __future__ import annotations

import argparse

import pytest
import yaml

from minicpm_tui.core.errors import UserError
from minicpm_tui.core.recipe import (
    OPTIONS_BY_NAME,
    Recipe,
    add_recipe_arguments,
    apply_overrides,
    defaults_for,
    import_lf_yaml,
    list_presets,
    load_recipe,
    options,
    recipe_overrides,
)


def test_registry_declares_each_field_once_with_help_and_group():
    names = [o.name for o in options()]
    assert len(names) == len(set(names))
    for option in options():
        assert option.help and option.group
        assert option.flag == "--" + option.name.replace("_", "-")
    assert OPTIONS_BY_NAME["stage"].choices == ("sft", "dpo", "kto")
    assert OPTIONS_BY_NAME["zero_stage"].auto


def test_roundtrip_through_recipe_yaml(tmp_path):
    recipe = Recipe.from_dict({"stage": "dpo", "datasets": ["a", "b"], "zero_stage": 3, "nccl_env":
                               {"NCCL_P2P_DISABLE": "1"}, "extra_args": {"max_grad_norm": 0.5}})
    path = recipe.save(tmp_path / "recipe.yaml")
    again = Recipe.load(path)
    assert again.to_dict() == recipe.to_dict()
    assert yaml.safe_load(path.read_text())["stage"] == "dpo"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("data, needle", [
    ({"stgae": "sft"}, "did you mean 'stage'"),
    ({"stage": "ppo"}, "stage must be one of sft, dpo, kto"),
    ({"learning_rate": "fast"}, "learning_rate must be number"),
    ({"zero_stage": 1}, "zero_stage must be one of 0, 2, 3"),
    ({"datasets": ["a,b"]}, "comma"),
    ({"datasets": ["a\nb"]}, "control character"),
    ({"nccl_env": {"HF_TOKEN": "x"}}, "secret"),
    ({"offload": "all", "zero_stage": 2}, "needs ZeRO-3"),
    ({"cuda_visible_devices": "0;rm -rf /"}, "comma-separated"),
    ({"max_steps": 0, "num_train_epochs": 0}, "nothing to train"),
    ({"micro_batch": 0}, "micro_batch must be >= 1"),
    # An empty output_dir passed LLaMA-Factory's parser and the smoke run (which overrides it), then the
    # real run died in the trainer's os.makedirs('').
    ({"output_dir": ""}, "output_dir: is empty"),
    ({"output_dir": None}, "output_dir: is empty"),
    ({"output_dir": "  "}, "output_dir: is empty"),
    # a learning rate of 0 (or one that underflows to 0) passed ">= 0" and trained nothing
    ({"learning_rate": 0}, "learning_rate: must be above 0"),
    ({"learning_rate": "1e-999"}, "learning_rate: must be above 0"),
    ({"num_train_epochs": 1e308}, "num_train_epochs must be <= 10000"),
])
def test_bad_values_name_the_field(data, needle):
    with pytest.raises(UserError) as info:
        Recipe.from_dict(data, where="r.yaml")
    assert needle in str(info.value)
    assert "r.yaml" in str(info.value)


def test_cli_flags_render_from_the_registry():
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser)
    args = parser.parse_args(["--stage", "kto", "--zero-stage", "auto", "--datasets", "x,y", "--lora-rank", "16"])
    over = recipe_overrides(args)
    assert over == {"stage": "kto", "zero_stage": "auto", "datasets": "x,y", "lora_rank": "16"}
    recipe = apply_overrides(Recipe(), over)
    assert recipe.stage == "kto" and recipe.datasets == ["x", "y"] and recipe.lora_rank == 16
    help_text = parser.format_help()
    for option in options():
        assert option.flag in help_text
    # Choices show as choices, not as the internal dest (it read `--stage RECIPE_STAGE`).
    assert "--stage {sft,dpo,kto}" in help_text and "RECIPE_" not in help_text
    # A bad value names the flag typed (it said "command line: micro_batch: ...").
    with pytest.raises(UserError) as info:
        recipe_overrides(parser.parse_args(["--micro-batch", "foo"]))
    assert info.value.where == "--micro-batch" and "got 'foo'" in str(info.value)


def test_presets_cover_each_model_and_kind():
    names = list_presets()
    for model in ("minicpm-1b", "minicpm-2b", "minicpm3-4b", "minicpm4-0.5b", "minicpm4-8b", "minicpm4.1-8b"):
        for kind in ("sft-lora", "sft-full", "dpo-lora", "kto-lora"):
            assert f"{model}-{kind}" in names
    recipe = load_recipe("minicpm3-4b-dpo-lora")
    assert recipe.stage == "dpo" and recipe.datasets == ["demo_dpo"]


def test_new_recipe_defaults_follow_the_nearest_preset():
    """What the wizard starts a method and stage from: not one learning rate for every kind of run."""
    assert defaults_for("lora", "sft", "MiniCPM4-8B")["learning_rate"] == 1e-4
    assert defaults_for("full", "sft", "MiniCPM4-8B")["learning_rate"] == 1e-5
    assert defaults_for("lora", "dpo", "MiniCPM4-8B")["num_train_epochs"] == 2.0
    assert defaults_for("qlora", "kto", "MiniCPM-1B")["learning_rate"] == 5e-5  # as LoRA KTO
    assert defaults_for("full", "sft", "/ckpt/mine")["cutoff_len"] in (1024, 2048)  # another model's preset
    assert not {"name", "model", "stage", "method", "datasets"} & set(defaults_for("lora", "sft"))

def test_full_preference_tuning_defaults_to_a_preference_learning_rate():
    """Full DPO/KTO ship no preset and took full SFT's 1e-5: far too high when every weight moves against a
    frozen reference. They take 5e-7 (Zephyr's full DPO, KTO's paper) and full SFT's other values."""
    from types import SimpleNamespace

    from minicpm_tui.core.recipe import FULL_PREFERENCE_LR
    from minicpm_tui.tui.screens.hparams import defaults

    assert FULL_PREFERENCE_LR == 5e-7
    for model in ("MiniCPM4-8B", "MiniCPM-1B", "/ckpt/mine"):
        sft = defaults_for("full", "sft", model)
        for stage in ("dpo", "kto"):
            found = defaults_for("full", stage, model)
            assert found["learning_rate"] == 5e-7, (model, stage)
            assert {k: v for k, v in found.items() if k != "learning_rate"} == \
                {k: v for k, v in sft.items() if k != "learning_rate"}
        assert sft["learning_rate"] == 1e-5
    assert defaults_for("lora", "dpo", "MiniCPM4-8B")["learning_rate"] == 5e-5  # LoRA keeps its preset's
    # The wizard's hyper-parameter step starts from it.
    state = SimpleNamespace(method="full", stage="kto", model="MiniCPM4-8B", suggested_cutoff=None)
    assert defaults(state)["learning_rate"] == 5e-7
    assert "full DPO/KTO ~5e-7" in {o.name: o for o in options()}["learning_rate"].help


def test_a_learning_rate_far_above_the_usual_one_is_noted():
    from minicpm_tui.core.recipe import apply_overrides, learning_rate_note, load_recipe

    assert all(learning_rate_note(load_recipe(name)) is None for name in list_presets())
    switched = apply_overrides(load_recipe("minicpm4-8b-dpo-lora"), {"method": "full"})
    assert learning_rate_note(switched) == ("learning_rate 5e-05 is 100x the usual 5e-07 for full dpo; "
                                            "if that is not meant, pass --learning-rate 5e-07")
    assert learning_rate_note(apply_overrides(switched, {"learning_rate": "1e-6"})) is None


def test_import_old_openbmb_yaml(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({
        "model_name_or_path": "openbmb/MiniCPM-2B-sft-bf16", "stage": "kto", "do_train": True,
        "finetuning_type": "lora", "lora_target": "q_proj,v_proj", "template": "cpm", "dataset": "kto_demo",
        "evaluation_strategy": "steps", "kto_ftx": 0.1, "warmup_steps": 0.1, "deepspeed": "ds_z3_config.json",
        "bf16": True, "output_dir": "saves/x", "mystery_key": 3, "max_grad_norm": 1.0,
    }))
    report = import_lf_yaml(old, known_keys={"max_grad_norm", "eval_strategy"})
    assert ("evaluation_strategy", "eval_strategy") in report.mapped
    assert ("kto_ftx", "pref_ftx") in report.mapped
    assert ("warmup_steps", "warmup_ratio") in report.mapped
    assert report.unknown == ["mystery_key"]
    assert report.recipe.pref_ftx == 0.1 and report.recipe.warmup_ratio == 0.1
    assert report.recipe.zero_stage == 3 and report.recipe.precision == "bf16"
    assert report.recipe.extra_args == {"max_grad_norm": 1.0}


def test_import_of_a_binary_file_is_one_error_naming_it(tmp_path):
    # `generate --from-yaml model.bin` was an internal error (UnicodeDecodeError).
    old = tmp_path / "old.yaml"
    old.write_bytes(b"\xff\xfe\x00binary\x00")
    with pytest.raises(UserError) as info:
        import_lf_yaml(old)
    assert str(old) in str(info.value) and "UTF-8" in str(info.value)


def test_import_keeps_fp16_when_bf16_is_false_and_refuses_freeze(tmp_path):
    # A V100 config says `bf16: false` and `fp16: true`: fp16 was dropped (the key bf16 was present) and
    # the plan chose bf16. `finetuning_type: freeze` silently became lora.
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"stage": "sft", "dataset": "demo_sft", "finetuning_type": "lora",
                                   "bf16": False, "fp16": True}))
    assert import_lf_yaml(old).recipe.precision == "fp16"
    old.write_text(yaml.safe_dump({"stage": "sft", "dataset": "demo_sft", "finetuning_type": "freeze"}))
    with pytest.raises(UserError) as info:
        import_lf_yaml(old)
    assert "finetuning_type" in str(info.value) and "freeze" in str(info.value) and str(old) in str(info.value)


def test_import_maps_warmup_steps_0_to_no_warmup(tmp_path):
    # `warmup_steps: 0` (no warmup) stayed beside the recipe's default warmup_ratio 0.1, which won.
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"stage": "sft", "dataset": "demo_sft", "warmup_steps": 0}))
    report = import_lf_yaml(old)
    assert report.recipe.warmup_ratio == 0.0 and "warmup_steps" not in report.recipe.extra_args
    assert ("warmup_steps", "warmup_ratio") in report.mapped


def test_import_keeps_preprocessing_workers(tmp_path):
    # It was dropped as "derived", but nothing writes it: OpenBMB's 16 workers became one process.
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"stage": "sft", "dataset": "demo_sft", "preprocessing_num_workers": 16}))
    report = import_lf_yaml(old)
    assert report.recipe.extra_args == {"preprocessing_num_workers": 16}
    assert "preprocessing_num_workers" not in report.dropped
