"""A file tree for picking a data file (Enter picks, Esc closes)."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Label

from minicpm_tui.tui import keys


class FilePickerScreen(ModalScreen[Path | None]):
    BINDINGS = keys.MODAL

    def __init__(self, start: Path) -> None:
        super().__init__()
        start = start if start.is_dir() else start.parent
        self.start = start if start.is_dir() else Path.cwd()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Pick a data file under {self.start}", classes="question")
            yield DirectoryTree(self.start, id="picker")

    def on_mount(self) -> None:
        self.query_one(DirectoryTree).focus()

    @on(DirectoryTree.FileSelected)
    def chosen(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(event.path)

    def action_dismiss_modal(self) -> None:
        self.dismiss(None)
