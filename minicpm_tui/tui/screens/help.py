"""F1: what this screen is for, and every key of its own and the app's (from the one key registry).

The keys are the screen's and the app's bindings, not what is active now: a key that does nothing at
the moment (Next on an unfinished step, Register before a file validates) is listed too, marked, with
the reason when the screen gives one. Keys that widgets bind for themselves (an Input's cursor keys,
a table's paging) are not listed: they are the widgets' own, and Tab/Enter are said once in words.
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingsMap
from textual.containers import VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Markdown

from minicpm_tui.tui import keys

PALETTE = "Command palette: every action as \"area: action\""
_PALETTE_ACTIONS = ("command_palette", "app.command_palette")


def _ours(binding: Binding) -> bool:
    return binding.id in keys.IDS or binding.action in _PALETTE_ACTIONS


def _available(app: App, namespace: DOMNode, action: str) -> bool:
    """The action's check_action answer (as the footer asks it), ignoring its parameters."""
    target, name = (app, action.removeprefix("app.")) if action.startswith("app.") else (namespace, action)
    return bool(target.check_action(name, ()))


def declared_bindings(node: DOMNode) -> BindingsMap:
    """A screen's or the app's own bindings, from the public ``BINDINGS`` of each class along its MRO
    merged as Textual merges them at class creation (``DOMNode._merge_bindings``: a subclass's binding
    for a key replaces its bases'). Neither Screen, App nor ours sets ``inherit_bindings=False``."""
    merged: dict[str, list[Binding]] = {}
    for cls in reversed(type(node).__mro__):
        if issubclass(cls, DOMNode):
            merged.update(BindingsMap(cls.__dict__.get("BINDINGS", [])).key_to_bindings)
    if isinstance(node, App) and node.ENABLE_COMMAND_PALETTE and not any(
            b.action in _PALETTE_ACTIONS for bindings in merged.values() for b in bindings):
        # Textual adds the palette's key in App.__init__, from these public class variables.
        key = node.COMMAND_PALETTE_BINDING
        merged.setdefault(key, []).append(Binding(key, "command_palette", "palette", show=False,
                                                  key_display=node.COMMAND_PALETTE_DISPLAY))
    return BindingsMap.from_keys(merged)


def help_keys(screen: Screen) -> list[tuple[str, str, str | None]]:
    """(keys as shown, what it does, None or why it does nothing now), one row per binding id: the
    screen's bindings first, then the app's, with the person's keymap applied."""
    app = screen.app
    # The keymap the app was given (MiniCPMApp keeps it; Textual's own copy is private).
    keymap: dict[str, str] = getattr(app, "user_keymap", None) or {}
    rows: dict[str, tuple[list[str], str, str | None]] = {}
    for namespace in (screen, app):
        # Not Screen.active_bindings: it leaves out the keys whose action is unavailable now, which this lists.
        bindings = declared_bindings(namespace)
        if keymap:
            bindings.apply_keymap(keymap)
        for _, binding in bindings:
            if not _ours(binding):
                continue
            ident = binding.id or binding.action
            if ident in rows:  # the same binding on two keys (a remap "a,b"): one row
                rows[ident][0].append(app.get_key_display(binding))
                continue
            does = PALETTE if binding.action in _PALETTE_ACTIONS else binding.tooltip or binding.description
            why = None
            if not _available(app, namespace, binding.action):
                why_not = getattr(namespace, "why_not", None)
                why = (why_not(binding.action) if callable(why_not) else "") or "not available now"
            rows[ident] = ([app.get_key_display(binding)], does, why)
    return [(" / ".join(dict.fromkeys(shown)), does, why) for shown, does, why in rows.values()]


def help_markdown(screen: Screen) -> str:
    title = getattr(screen, "HELP_TITLE", "") or type(screen).__name__.removesuffix("Screen")
    lines = [f"# {title}", "", (getattr(screen, "HELP", "") or "").strip(), "", "## Keys", "",
             "| key | does |", "|---|---|"]
    for shown, does, why in help_keys(screen):
        lines.append(f"| `{shown}` | {does} |" if why is None else f"| `{shown}` | {does} *(not now: {why})* |")
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
