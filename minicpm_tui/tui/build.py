"""The wizard's state as a core Recipe: a mapping of registry fields, validated by the recipe core."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from minicpm_tui.tui.state import WizardState

PROBE = "probe"
ENTRY = "entry:"  # state.dataset_file of a dataset chosen from a dataset_info.json


def recipe_values(state: WizardState) -> dict[str, Any]:
    from minicpm_tui.tui.screens.hparams import defaults

    values: dict[str, Any] = dict(defaults(state))
    values.update(state.hparams)
    values.update({"model": state.model, "method": state.method, "stage": state.stage})
    values["name"] = run_name(state)
    if state.dataset_name:
        values["datasets"] = [state.dataset_name]
    if state.dataset_file.startswith("demo:"):
        from minicpm_tui.tui.screens.dataset import demo_dir

        values["dataset_dir"] = str(demo_dir())
    elif state.dataset_file.startswith(ENTRY):  # registered there: its folder is LLaMA-Factory's dataset_dir
        values["dataset_dir"] = str(Path(state.dataset_info).expanduser().absolute().parent)
    elif state.dataset_file:
        values["dataset_dir"] = str(Path(state.dataset_file).expanduser().absolute().parent)
    if state.lf_target and state.lf_target != "installed":  # unset: the recipe's default, this machine's
        values["lf_target"] = state.lf_target
    if state.bundle_data:
        values["bundle_data"] = True
    hw = state.hardware
    values["hardware"] = "auto" if hw in ("", PROBE) else hw.removeprefix("preset:")
    values.update(state.plan_overrides)
    # The registry decides which fields exist; stale keys from an old draft are dropped here.
    from minicpm_tui.core.recipe import OPTIONS_BY_NAME

    return {k: v for k, v in values.items() if k in OPTIONS_BY_NAME}


def build_recipe(state: WizardState) -> Any:
    from minicpm_tui.core.recipe import Recipe

    return Recipe.from_dict(recipe_values(state), where="wizard")


def recipe_digest(state: WizardState) -> str:
    """A fingerprint of everything the run directory is written from (run directory aside)."""
    text = json.dumps(recipe_values(state), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def run_name(state: WizardState) -> str:
    base = f"{state.model or 'model'}-{state.stage}-{state.method}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-").lower()


def default_out_dir(state: WizardState) -> str:
    return str(Path("runs") / run_name(state))


def lf_target_value(typed: str) -> str:
    """What the person typed as the LLaMA-Factory to write for, as the state keeps it: "" (this machine's),
    a release as typed, else the path made absolute (the recipe resolves a relative one beside itself)."""
    from minicpm_tui.core.lftarget import INSTALLED, looks_like_release

    value = typed.strip()
    if value in ("", INSTALLED):
        return ""
    if looks_like_release(value) and not Path(value).expanduser().exists():
        return value
    return str(Path(value).expanduser().absolute())


def target_facts(state: WizardState) -> Any:
    """The LLaMA-Factory facts of ``state.lf_target`` (core.lftarget.target_info): a release snapshot or a
    saved report, read without any LLaMA-Factory here; None for this machine's (the caller asks
    ``lf_info``, which needs none to be installed either). UserError when it cannot be read."""
    if not state.lf_target:
        return None
    from minicpm_tui.core.lftarget import target_info
    from minicpm_tui.core.recipe import Recipe

    return target_info(Recipe(lf_target=state.lf_target))


def target_templates(state: WizardState) -> list[str]:
    """The templates of the LLaMA-Factory the run is written for (a worker's call: this machine's is read
    in a subprocess, once); [] when none is installed here."""
    facts = target_facts(state)
    if facts is not None:
        return facts.templates
    from minicpm_tui.core.lfinfo import lf_info

    try:
        return lf_info().templates
    except Exception:  # no LLaMA-Factory here: our own templates (train_entry.py registers them)
        return []
