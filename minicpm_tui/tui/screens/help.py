"""F1: what this screen is for, and every key that works on it (from the one key registry)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Markdown

from minicpm_tui.tui import keys


def help_markdown(screen: Screen) -> str:
    title = getattr(screen, "HELP_TITLE", "") or type(screen).__name__.removesuffix("Screen")
    lines = [f"# {title}", "", (getattr(screen, "HELP", "") or "").strip(), "", "## Keys", "",
             "| key | does |", "|---|---|"]
    seen: set[str] = set()
    for active in screen.active_bindings.values():
        binding = active.binding
        if not binding.description or binding.id in seen:
            continue
        seen.add(binding.id or binding.action)
        key = screen.app.get_key_display(binding)
        lines.append(f"| `{key}` | {binding.tooltip or binding.description} |")
    lines.append("| `ctrl+p` | Command palette: every action as \"area: action\" |")
    lines += ["", "Tab / Shift+Tab move between fields; Enter presses a button or picks an item.",
              f"Remap keys by id in `<config dir>/{keys.KEYMAP_NAME}`, e.g. `{{\"wizard.next\": \"f8\"}}`."]
    return "\n".join(lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [*keys.MODAL, ("f1", "dismiss_modal", "Close")]
    HELP_TITLE = "Help"

    def __init__(self, about: Screen) -> None:
        super().__init__()
        self.text = help_markdown(about)

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Markdown(self.text)

    def action_dismiss_modal(self) -> None:
        self.dismiss(None)
