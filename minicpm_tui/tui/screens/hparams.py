"""Step 5: hyper-parameters, rendered from the recipe's one options registry (defaults, hints, checks)."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Select, Static

from minicpm_tui.tui.screens.base import WizardStep
from minicpm_tui.tui.widgets.field import Field
from minicpm_tui.tui.widgets.render import one_line

# Shown here; the plan step owns the batch sizes, the model step the method and stage.
GROUPS = ("train", "eval", "method", "dataset")
SKIP = {"micro_batch", "grad_accum", "stage", "method", "datasets", "dataset_dir"}
ONLY_FOR = {"pref_beta": ("stage", ("dpo", "kto")), "lora_rank": ("method", ("lora", "qlora"))}


def form_options(state: Any) -> list[Any]:
    from minicpm_tui.core.recipe import options

    shown = []
    for option in options():
        if option.group not in GROUPS or option.advanced or option.name in SKIP:
            continue
        if option.name in ONLY_FOR:
            attr, allowed = ONLY_FOR[option.name]
            if getattr(state, attr) not in allowed:
                continue
        shown.append(option)
    return shown


def defaults(state: Any) -> dict[str, Any]:
    """Per method and stage, from the recipe core (its presets), else the registry's defaults."""
    from minicpm_tui.core import recipe as recipe_core

    picker = getattr(recipe_core, "defaults_for", None)
    if callable(picker):
        try:
            found = dict(picker(method=state.method, stage=state.stage, model=state.model))
            if state.suggested_cutoff:
                found["cutoff_len"] = int(state.suggested_cutoff)
            return found
        except Exception:
            pass
    out = {o.name: o.default for o in recipe_core.options()}
    if state.suggested_cutoff:  # from the dataset's token statistics
        out["cutoff_len"] = int(state.suggested_cutoff)
    return out


class HparamsScreen(WizardStep):
    STEP = 4
    HELP_TITLE = "5 Hyper-parameters"
    HELP = """
Sensible defaults for the chosen method and stage, each with its hint. Type to change one; a value
that the recipe would refuse turns red with the reason, and Next waits until it is fixed.
`max_steps` > 0 overrides the epochs; `val_size` > 0 holds data out for evaluation.
"""

    def __init__(self) -> None:
        super().__init__()
        self.options = form_options(self.state)
        self.defaults = defaults(self.state)
        self.problems: dict[str, str] = {}

    def value_of(self, name: str) -> Any:
        # cutoff_len can also be set at the plan step: the value shown is the one the files get.
        state = self.state
        return state.plan_overrides.get(name, state.hparams.get(name, self.defaults.get(name)))

    def body(self) -> ComposeResult:
        with VerticalScroll(classes="body pane", id="hp-form") as form:
            form.border_title = f"Hyper-parameters for {self.state.method} {self.state.stage}"
            for option in self.options:
                with Horizontal(classes="field"):
                    yield Label(option.name)
                    value = self.value_of(option.name)
                    if option.choices:
                        yield Select([(str(c), c) for c in option.choices], value=value, allow_blank=False,
                                     id=f"hp-{option.name}", compact=True)
                    else:
                        yield Field(str(value), id=f"hp-{option.name}", compact=True)
                    # Wrapped in its row (tcss): every hint whole at 80x24, a refused value's reason too.
                    yield Static(option.help, classes="fhint", id=f"hint-{option.name}")

    def on_mount(self) -> None:
        super().on_mount()
        first = self.query(Input).first() if self.query(Input) else None
        if first is not None:
            first.focus()

    @on(Input.Changed)
    def typed(self, event: Input.Changed) -> None:
        self.set_value(event.input.id or "", event.value)

    @on(Select.Changed)
    def chose(self, event: Select.Changed) -> None:
        self.set_value(event.select.id or "", event.value)

    def set_value(self, widget_id: str, raw: Any) -> None:
        from minicpm_tui.core.recipe import OPTIONS_BY_NAME

        name = widget_id.removeprefix("hp-")
        option = OPTIONS_BY_NAME.get(name)
        if option is None:
            return
        hint = self.query_one(f"#hint-{name}", Static)
        widget = self.query_one(f"#{widget_id}")
        try:
            value = option.coerce(raw, "form")
        except Exception as exc:
            self.problems[name] = one_line(exc).removeprefix("form: ")
            hint.update(self.problems[name])
            hint.add_class("bad")
            widget.add_class("-invalid")
        else:
            self.problems.pop(name, None)
            hint.update(option.help)
            hint.remove_class("bad")
            widget.remove_class("-invalid")
            self.state.plan_overrides.pop(name, None)  # the latest value typed wins, in either step
            if value == self.defaults.get(name):
                self.state.hparams.pop(name, None)
            else:
                self.state.hparams[name] = value
        self.changed()

    def ready(self) -> bool:
        if self.problems:
            self.blocked_reason = f"fix {next(iter(self.problems))}"
            return False
        return True
