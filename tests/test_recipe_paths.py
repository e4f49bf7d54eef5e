"""A recipe's relative paths (dataset_dir, a saved probe as hardware, a local model) keep their meaning
when the recipe is copied into the run directory, and typed flags are relative to where they were typed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from minicpm_tui.assets import asset_path
from minicpm_tui.core.probe import load_hardware
from minicpm_tui.core.recipe import Recipe, load_recipe
from minicpm_tui.core.writers import generate, recipe_hardware

ROOT = Path(__file__).resolve().parent.parent


def _project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    shutil.copytree(asset_path("data"), proj / "data")
    (proj / "box.json").write_text(json.dumps(load_hardware("1x-rtx4090").to_dict()), encoding="utf-8")
    recipe = Recipe.from_dict({"name": "p", "model": "MiniCPM4-0.5B", "datasets": ["demo_sft"],
                               "dataset_dir": "data", "hardware": "box.json"})
    recipe.save(proj / "recipe.yaml")
    return proj


def test_a_recipes_saved_probe_is_read_beside_the_recipe(tmp_path, monkeypatch):
    proj = _project(tmp_path)
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    hardware = recipe_hardware(load_recipe(str(proj / "recipe.yaml")))
    assert [g.name for g in hardware.gpus] == [g.name for g in load_hardware("1x-rtx4090").gpus]


def test_the_run_directorys_recipe_regenerates_from_anywhere(tmp_path, monkeypatch, lf):
    proj = _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    generate(load_recipe(str(proj / "recipe.yaml")), tmp_path / "runs" / "a", info=lf, preflight=False)
    saved = yaml.safe_load((tmp_path / "runs" / "a" / "recipe.yaml").read_text(encoding="utf-8"))
    assert saved["dataset_dir"] == str((proj / "data").resolve())
    assert saved["hardware"] == str((proj / "box.json").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = load_recipe(str(tmp_path / "runs" / "a" / "recipe.yaml"))
    generate(again, tmp_path / "runs" / "b", info=lf, preflight=False)
    assert (tmp_path / "runs" / "b" / "train.yaml").read_text(encoding="utf-8") == \
        (tmp_path / "runs" / "a" / "train.yaml").read_text(encoding="utf-8")


def test_typed_path_flags_are_relative_to_the_current_folder(tmp_path):
    # `generate OTHER/recipe.yaml --hardware box.json --dataset-dir data` means ./box.json and ./data.
    proj = _project(tmp_path)
    here = tmp_path / "here"
    shutil.copytree(proj, here)
    shutil.rmtree(proj / "data")
    (proj / "box.json").unlink()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "minicpm_tui", "generate", str(proj / "recipe.yaml"),
                           "--hardware", "box.json", "--dataset-dir", "data", "--out", "run", "--no-preflight"],
                          cwd=here, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    saved = yaml.safe_load((here / "run" / "recipe.yaml").read_text(encoding="utf-8"))
    assert saved["hardware"] == str((here / "box.json").resolve())
    assert saved["dataset_dir"] == str((here / "data").resolve())
