"""The one-line wizard header: where you are among the seven steps."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class StepBar(Static):
    def __init__(self, titles: list[str], current: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.titles = titles
        self.current = current

    def render(self) -> Text:
        text = Text(" minicpm-tui ", style="bold")
        for i, title in enumerate(self.titles):
            label = f"{i + 1} {title}" if i == self.current else str(i + 1)
            style = "reverse bold" if i == self.current else ("" if i < self.current else "dim")
            text.append(" ")
            text.append(f" {label} ", style=style)
        return text
