"""Core errors and planner suggestions in the wizard's words: its fields and steps, not CLI flags.

A core ``UserError`` names a CLI flag as its ``where`` (``--gpus``) and says its fix in CLI terms. The
wizard shows the field the flag sets instead, found through the one options registry
(``core.recipe.options()``: each field's flag and group) and the step that shows it; the fix is the
error's ``fix_tui`` when the core gives one, else its fix with each flag named as that field.
"""

from __future__ import annotations

import functools
import re

from minicpm_tui.core.errors import UserError

# Where each recipe group's fields are set in the wizard (the plan and hyper-parameter steps show
# some fields of other groups: see ``field_steps``).
GROUP_STEPS = {"model": "Model", "method": "Model", "dataset": "Dataset", "train": "Hyper-params",
               "eval": "Hyper-params", "plan": "Plan", "output": "Review", "llamafactory": "Review"}
# Flags whose field the group places wrongly (the hardware step sets hardware and nodes; the
# dataset folder is the chosen file's) or that are other commands' (``--out``; ``--name`` is the
# register command's: the recipe's run name is not typed in the wizard, it follows the choices).
OTHER_FLAGS = {"--name": ("register as", "Dataset"), "--out": ("run directory", "Review"),
               "--dataset-dir": ("dataset folder", "Dataset"), "--hardware": ("hardware", "Hardware"),
               "--nodes": ("nodes", "Hardware")}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# "(--hardware)": a pointer to the CLI's flag, which says nothing in the wizard.
FLAG_ONLY = re.compile(r"\s*\(--[a-z][a-z0-9-]*\)")


@functools.cache
def field_steps() -> dict[str, tuple[str, str]]:
    """CLI flag -> (the wizard's field, the step it is on), for every recipe field and the flags above."""
    from minicpm_tui.core.recipe import options
    from minicpm_tui.tui.screens.hparams import form_options
    from minicpm_tui.tui.screens.plan import OVERRIDES
    from minicpm_tui.tui.state import WizardState

    hparams = {o.name for o in form_options(WizardState(method="lora", stage="dpo"))}
    out: dict[str, tuple[str, str]] = {}
    for option in options():
        step = ("Plan" if option.name in OVERRIDES else "Hyper-params" if option.name in hparams
                else GROUP_STEPS.get(option.group, "Review"))
        out[option.flag] = (option.name, step)
    out.update(OTHER_FLAGS)
    return out


def control(flag: str) -> str | None:
    """``--gpus`` -> ``gpus (Plan step)``; None for what is not a flag the wizard knows."""
    found = field_steps().get(flag.strip())
    return f"{found[0]} ({found[1]} step)" if found else None


def flags_as_fields(text: str) -> str:
    """Each CLI flag in ``text`` named as the wizard's field: ``use --gpus 2`` -> ``use gpus 2``; a
    flag only pointed to in parentheses is left out."""
    return FLAG.sub(lambda m: field_steps().get(m.group(0), (m.group(0),))[0], FLAG_ONLY.sub("", text))


def change_in_tui_words(change: str) -> str:
    """A planner suggestion (``--method lora``) as the wizard's: ``method lora, on the Model step``."""
    found = FLAG.match(change)
    step = field_steps().get(found.group(0)) if found else None
    return f"{flags_as_fields(change)}, on the {step[1]} step" if step else flags_as_fields(change)


def in_tui_words(exc: BaseException) -> str:
    """One line for an error shown in the wizard: a core error's where and fix in the wizard's words."""
    if not isinstance(exc, UserError):  # a bug in a core: its type says most
        return f"{type(exc).__name__}: {exc}"
    return exc.one_line(where=control(exc.where) if exc.where else None,
                        fix=exc.fix_tui or flags_as_fields(exc.fix or ""))


def issue_fix(issue: dict) -> str:
    """A datasets issue's fix (``Issue.to_json``) in the wizard's words: the core's own wording for the
    wizard where a fix names a command, else the fix with each flag named as the wizard's field."""
    if issue.get("kind") == "openai_system_prompt":
        from minicpm_tui.core.datasets.entry import OPENAI_FIX_TUI

        return OPENAI_FIX_TUI
    return flags_as_fields(str(issue.get("fix") or ""))
