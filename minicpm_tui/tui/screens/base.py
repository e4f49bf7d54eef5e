"""The base of every wizard step: step bar, Back/Next gating, help text, draft saving."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Button, Static

from minicpm_tui.tui import keys
from minicpm_tui.tui.widgets.footer import KeysFooter
from minicpm_tui.tui.widgets.stepbar import StepBar

if TYPE_CHECKING:
    from minicpm_tui.tui.app import MiniCPMApp
    from minicpm_tui.tui.state import WizardState


class WizardStep(Screen):
    """Subclasses set STEP (index), HELP (markdown) and override ``body()`` and ``ready()``."""

    STEP = 0
    HELP = ""
    BINDINGS = keys.WIZARD
    # Shown beside the Next button when the step is not complete yet.
    blocked_reason = ""

    @property
    def wapp(self) -> MiniCPMApp:
        return self.app  # type: ignore[return-value]

    @property
    def state(self) -> WizardState:
        return self.wapp.state

    def compose(self) -> ComposeResult:
        from minicpm_tui.tui.app import STEPS

        yield StepBar([t for _, t, _ in STEPS], self.STEP, id="stepbar")
        yield from self.body()
        with Horizontal(id="nav"):
            yield Button("< Back", id="nav-back", disabled=self.STEP == 0, compact=True)
            yield Static("", id="nav-why")
            yield Button("Next >", id="nav-next", variant="primary", compact=True)
        yield KeysFooter()

    def body(self) -> ComposeResult:  # pragma: no cover - overridden
        yield from ()

    def ready(self) -> bool:
        """True when Next may be pressed; set ``blocked_reason`` when not."""
        return True

    def on_mount(self) -> None:
        self.update_nav()

    def sync_from_state(self) -> None:
        """Show the state again when the wizard comes back to this (kept) screen."""
        self.update_nav()

    def update_nav(self) -> None:
        """Call after anything that changes ``ready()``: refreshes the button and the footer."""
        ok = self.ready()
        try:
            self.query_one("#nav-next", Button).disabled = not ok
            self.query_one("#nav-why", Static).update("" if ok else self.blocked_reason)
        except Exception:  # not composed yet
            pass
        self.refresh_bindings()  # KeysFooter folds these and redraws only when its keys change

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next":
            return self.ready()
        if action == "back":
            return self.STEP > 0
        return True

    def why_not(self, action: str) -> str:
        """Why a key of this screen does nothing now (F1 help says it beside the key)."""
        if action == "next":
            return self.blocked_reason
        if action == "back":
            return "this is the first step"
        return ""

    def leave(self) -> None:
        """Write this screen's fields into the state before moving (subclasses extend)."""

    def action_next(self) -> None:
        if not self.ready():
            self.notify(self.blocked_reason or "this step is not complete", severity="warning")
            return
        self.leave()
        self.wapp.goto_step(self.STEP + 1)

    def action_back(self) -> None:
        if self.STEP > 0:
            self.leave()
            self.wapp.goto_step(self.STEP - 1)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "nav-next":
            event.stop()
            self.action_next()
        elif event.button.id == "nav-back":
            event.stop()
            self.action_back()

    def changed(self) -> None:
        """A field changed: keep the draft current and re-gate Next."""
        self.wapp.save_draft()
        self.update_nav()
