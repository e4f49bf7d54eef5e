"""Small typed dialogs: yes/no confirmations and the quit question when a run is live."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from minicpm_tui.tui import keys


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = keys.MODAL

    def __init__(self, question: str, *, yes: str = "Yes", no: str = "No", danger: bool = False,
                 escape: bool = False) -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.no = no
        self.danger = danger
        self.escape = escape  # the answer Esc gives: the one that loses nothing

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(self.yes, id="yes", variant="error" if self.danger else "primary", compact=True)
                yield Button(self.no, id="no", compact=True)

    def on_mount(self) -> None:
        # The safe answer has the focus when the action is destructive.
        self.query_one("#no" if self.danger else "#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_dismiss_modal(self) -> None:
        self.dismiss(self.escape)


class QuitScreen(ModalScreen[str]):
    """Ctrl+C / Ctrl+Q while a launched run is training: leave it running, stop it, or stay."""

    BINDINGS = keys.MODAL

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"A run is still training in {self.run_dir}.\n"
                        "Leaving keeps it running (reattach with `minicpm-tui monitor RUN_DIR`).",
                        classes="question")
            with Horizontal(classes="buttons"):
                yield Button("Leave it running", id="leave", variant="primary", compact=True)
                yield Button("Stop run", id="stop", variant="error", compact=True)
                yield Button("Stay", id="stay", compact=True)

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or "stay")

    def action_dismiss_modal(self) -> None:
        self.dismiss("stay")
