"""Names with spaces, quotes, $(), backticks and newlines: nothing executes; the run works or is refused."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from test_smoke_support import SMOKE_TIMEOUT_S, TEST_TIMEOUT_S, demo_recipe

from minicpm_tui.assets import asset_path
from minicpm_tui.core.errors import UserError
from minicpm_tui.core.recipe import Recipe
from minicpm_tui.core.smoke import smoke
from minicpm_tui.core.writers import generate

HOSTILE = "a b it's \"q\" $(touch PWNED1) `touch PWNED2` ;touch PWNED3"


def _data_dir(root):
    data = root / f"data {HOSTILE}"
    data.mkdir(parents=True)
    shutil.copy(asset_path("data", "demo_sft.json"), data / f"sft {HOSTILE}.json")
    entry = json.loads(asset_path("data", "dataset_info.json").read_text())["demo_sft"]
    entry["file_name"] = f"sft {HOSTILE}.json"
    (data / "dataset_info.json").write_text(json.dumps({f"ds {HOSTILE}": entry}))
    return data


def _no_pwned(root):
    assert not list(root.rglob("PWNED*"))


def test_hostile_generation_is_quoted(tmp_path, lf):
    data = _data_dir(tmp_path)
    run = tmp_path / f"run {HOSTILE}"
    recipe = demo_recipe(name=HOSTILE, datasets=[f"ds {HOSTILE}"], dataset_dir=str(data),
                         output_dir=f"out {HOSTILE}")
    generate(recipe, run, info=lf, preflight=False)
    import subprocess

    for script in ("single_node.sh", "multi_node.sh", "slurm.sbatch"):
        assert subprocess.run(["bash", "-n", str(run / script)]).returncode == 0
    _no_pwned(tmp_path)


@pytest.mark.parametrize("field, value", [
    ("datasets", ["bad\nname"]), ("name", "line\nbreak"), ("output_dir", "o\nx"), ("model", "m\n$(x)"),
    ("master_addr", "$(touch x)"), ("cuda_visible_devices", "0`x`"), ("nccl_env", {"A B": "1"}),
])
def test_control_characters_are_refused(field, value):
    with pytest.raises(UserError):
        Recipe.from_dict({field: value})


@pytest.mark.integration
@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_hostile_run_still_trains(tmp_path, lf, tiny_model_cpm3):
    data = _data_dir(tmp_path)
    run = tmp_path / f"run {HOSTILE}"
    recipe = demo_recipe(name=HOSTILE, datasets=[f"ds {HOSTILE}"], dataset_dir=str(data),
                         output_dir=f"out {HOSTILE}")
    generate(recipe, run, info=lf, preflight=True)
    result = smoke(run, steps=2, timeout=SMOKE_TIMEOUT_S)
    assert result.passed, result.log_tail
    assert [s for s, _ in result.losses] == [1, 2] and all(math.isfinite(v) for _, v in result.losses)
    _no_pwned(tmp_path)
    _no_pwned(run)
