"""Step 2: the model (MiniCPM catalogue, a local path or a hub id), the method and the stage."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, OptionList, RadioSet, Static
from textual.widgets.option_list import Option

from minicpm_tui.tui.screens.base import WizardStep
from minicpm_tui.tui.widgets.field import Field
from minicpm_tui.tui.widgets.pathinput import PathSuggester
from minicpm_tui.tui.widgets.radio import ChoiceSet, MarkedRadioButton
from minicpm_tui.tui.widgets.render import one_line, option_choices, option_help, render_model


class ModelScreen(WizardStep):
    STEP = 1
    HELP_TITLE = "2 Model and method"
    HELP = """
Pick a MiniCPM model from the catalogue, or type a local checkpoint folder (with a config.json) or a
hub id you have cached. The details show its size, context, the chat template the installed
LLaMA-Factory (or the one chosen at step 1 to write for) will use and whether it ships remote code. Then the **method** (LoRA, full, QLoRA) and the **stage** (SFT, DPO, KTO); each shows what it needs.
"""

    class Loaded(Message):
        def __init__(self, name: str, arch: Any, error: str | None, template: str | None) -> None:
            super().__init__()
            self.name = name
            self.arch = arch
            self.error = error
            self.template = template

    def __init__(self) -> None:
        super().__init__()
        self.arch: Any = None
        self.error: str | None = None
        self.catalogue: list[Any] = []

    def body(self) -> ComposeResult:
        from minicpm_tui.core.models import list_models

        try:
            self.catalogue = list_models()
        except Exception as exc:
            self.catalogue = []
            self.error = str(exc)
        with Horizontal(classes="body"):
            with Vertical(classes="pane side", id="model-side") as side:
                side.border_title = "Model"
                yield OptionList(*[Option(f"{m.name:<15} {m.param_count() / 1e9:5.1f}B", id=m.name)
                                   for m in self.catalogue], id="model-list", compact=True)
                yield Label("or a local path / hub id:", classes="hint")
                yield Field(placeholder="/models/my-ckpt", id="model-path", suggester=PathSuggester(), compact=True)
            with VerticalScroll(classes="pane main", id="model-main") as main:
                main.border_title = "Details"
                yield Static("", id="model-details")
                with Horizontal(id="model-choices"):
                    with ChoiceSet(id="method", compact=True):
                        for m in option_choices("method"):
                            yield MarkedRadioButton(m, value=self.state.method == m, name=m)
                    with ChoiceSet(id="stage", compact=True):
                        for s in option_choices("stage"):
                            yield MarkedRadioButton(s, value=self.state.stage == s, name=s)
                yield Static("", id="choice-help", classes="hint")

    def on_mount(self) -> None:
        super().on_mount()
        names = [m.name for m in self.catalogue]
        chosen = self.state.model or (names[0] if names else "")
        models = self.query_one("#model-list", OptionList)
        if chosen in names:
            models.highlighted = names.index(chosen)
        elif chosen:
            self.query_one("#model-path", Input).value = chosen
        models.focus()
        self.show_choice_help()
        if chosen:
            self.load(chosen)

    @on(OptionList.OptionHighlighted, "#model-list")
    def highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id and event.option.id != self.state.model:
            self.load(event.option.id)

    @on(OptionList.OptionSelected, "#model-list")
    def selected(self, event: OptionList.OptionSelected) -> None:
        # Enter on a model moves to the method choice.
        self.query_one("#method", RadioSet).focus()

    @on(Input.Submitted, "#model-path")
    def path_given(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.load(event.value.strip())

    @on(RadioSet.Changed)
    def radio(self, event: RadioSet.Changed) -> None:
        if event.radio_set.id in ("method", "stage"):
            setattr(self.state, event.radio_set.id, event.pressed.name)
            self.show_choice_help()
            self.changed()

    def show_choice_help(self) -> None:
        self.query_one("#choice-help", Static).update(
            f"{option_help('method')}\n{option_help('stage')}")

    def load(self, name: str) -> None:
        self.state.model = name
        self.arch = None
        self.error = None
        self.query_one("#model-details", Static).update(f"Reading {name}…")
        self.update_nav()
        self._load(name)

    @work(thread=True, exclusive=True, exit_on_error=False, group="model")
    def _load(self, name: str) -> None:
        from minicpm_tui.core.models import load_model

        try:
            arch = load_model(name)
        except Exception as exc:
            self.post_message(self.Loaded(name, None, one_line(exc), None))
            return
        # The model is known: Next need not wait for the template, whose first lookup asks the installed
        # LLaMA-Factory in a subprocess (lf_info: seconds, once; cached after).
        self.post_message(self.Loaded(name, arch, None, None))
        try:  # the template the target LLaMA-Factory will use (the installed one by default): the writers' choice
            from minicpm_tui.core import writers
            from minicpm_tui.core.recipe import Recipe
            from minicpm_tui.tui.build import target_facts

            facts = target_facts(self.state)  # a release snapshot or saved report: no LLaMA-Factory needed here
            if facts is None:
                from minicpm_tui.core.lfinfo import lf_info

                templates = lf_info().templates
            else:
                templates = facts.templates
            template, by_entry, why = writers.choose_template(Recipe(model=arch.name), arch.chat_format, templates)
            template = f"{template} (added by the run's train_entry.py)" if by_entry else template
            if facts is not None:
                template = f"{template}, for {facts.describe()}"
        except Exception as exc:
            template = f"unknown ({one_line(exc)})"
        self.post_message(self.Loaded(name, arch, None, template))

    def on_model_screen_loaded(self, message: Loaded) -> None:
        if message.name != self.state.model:
            return
        self.arch = message.arch
        self.error = message.error
        details = self.query_one("#model-details", Static)
        details.set_class(bool(message.error), "bad")
        details.update(message.error or render_model(message.arch, message.template))
        self.changed()

    def ready(self) -> bool:
        if self.arch is None:
            reading = self.state.model and not self.error
            self.blocked_reason = ("reading the model…" if reading else
                                   self.error and "that model does not load" or "pick a model")
            return False
        return True
