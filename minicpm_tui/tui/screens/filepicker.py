"""A file tree for picking a data file, or a dataset_info.json (Enter picks, Esc closes)."""

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

    def __init__(self, start: Path, *, registry: bool = False) -> None:
        """``registry``: pick a dataset_info.json; Enter on a folder holding one picks the folder."""
        super().__init__()
        start = start if start.is_dir() else start.parent
        self.start = start if start.is_dir() else Path.cwd()
        self.registry = registry

    def compose(self) -> ComposeResult:
        what = "a dataset_info.json (or the folder holding one)" if self.registry else "a data file"
        with Vertical(classes="dialog"):
            yield Label(f"Pick {what} under {self.start}", classes="question")
            yield DirectoryTree(self.start, id="picker")

    def on_mount(self) -> None:
        self.query_one(DirectoryTree).focus()

    @on(DirectoryTree.FileSelected)
    def chosen(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(event.path)

    @on(DirectoryTree.DirectorySelected)
    def folder_chosen(self, event: DirectoryTree.DirectorySelected) -> None:
        from minicpm_tui.core.datasets.register import INFO_NAME

        if self.registry and (event.path / INFO_NAME).is_file():
            self.dismiss(event.path)

    def action_dismiss_modal(self) -> None:
        self.dismiss(None)
