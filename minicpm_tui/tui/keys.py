"""Every key binding in one place: ids, keys, descriptions and tooltips.

Screens take their BINDINGS from here, the F1 help lists them from here, and a person can remap
any of them by id in ``<config dir>/keymap.json`` (``{"wizard.next": "ctrl+right"}``).
Keys were chosen to survive tmux and SSH: no Ctrl+B (tmux prefix), no keys that need the kitty
keyboard protocol.
"""

from __future__ import annotations

import json

from textual.binding import Binding

from minicpm_tui.core.paths import config_dir

KEYMAP_NAME = "keymap.json"


def _b(key: str, action: str, description: str, id: str, tooltip: str, *, show: bool = True,
       priority: bool = False, key_display: str | None = None) -> Binding:
    return Binding(key, action, description, show=show, priority=priority, id=id, tooltip=tooltip,
                   key_display=key_display)


APP = [
    _b("f1", "app.help", "Help", "app.help", "Help for this screen and its keys"),
    _b("ctrl+q", "app.request_quit", "Quit", "app.quit",
       "Quit; the wizard's choices are kept as a draft, a launched run keeps running", priority=True),
    _b("ctrl+c", "app.request_quit", "Quit", "app.interrupt",
       "Asks before leaving; never stops a launched run silently", show=False, priority=True),
    # Priority, as Textual's screen binds them otherwise: a screen binding runs once the key has bubbled up
    # from the focused widget, and the app has forwarded the keys after it to that widget by then, so the
    # Z of Shift+Tab Z went to the file tree it left. A focused field passes them on in turn (widgets/field.py).
    _b("tab", "app.focus_next", "Next field", "app.focus_next", "Move the focus to the next field or list",
       show=False, priority=True),
    _b("shift+tab", "app.focus_previous", "Previous field", "app.focus_previous",
       "Move the focus to the previous field or list", show=False, priority=True),
]

WIZARD = [
    _b("ctrl+n", "next", "Next", "wizard.next", "Go to the next step (when this one is complete)",
       priority=True),
    _b("escape", "back", "Back", "wizard.back", "Go back one step; nothing is lost"),
]

HARDWARE = [
    _b("ctrl+r", "reprobe", "Re-probe", "hardware.reprobe", "Probe this machine's GPUs again"),
]

DATASET = [
    _b("ctrl+o", "browse", "Browse", "dataset.browse", "Pick the dataset file from a file tree"),
    _b("ctrl+g", "register", "Register", "dataset.register",
       "Register the file in a dataset_info.json (merge, backup, atomic)"),
    _b("ctrl+t", "pick_registered", "Registered", "dataset.registered",
       "Pick a dataset already registered in a dataset_info.json (used as it is registered there)"),
]

REVIEW = [
    # Priority: the run directory's Input binds Ctrl+W (delete a word); ^w writes wherever the focus is.
    _b("ctrl+w", "write", "Write", "review.write", "Write the run directory (asks before overwriting)",
       priority=True),
    _b("ctrl+l", "bundle", "Carry data", "review.bundle",
       "Carry the datasets' files in the run directory (data/), or name them by their paths here"),
]

RUN = [
    _b("s", "smoke", "Smoke run", "run.smoke", "Prove the run directory with a short CPU run of a tiny model"),
    _b("l", "launch", "Launch", "run.launch", "Launch the real training, detached (survives SSH drops)"),
    _b("m", "monitor", "Monitor", "run.monitor", "Open the live monitor of this run"),
]

MONITOR = [
    _b("d", "detach", "Detach", "monitor.detach", "Leave the monitor; training keeps running"),
    _b("escape", "back", "Back", "monitor.back", "Back to the screen you opened the monitor from (as d); "
       "training keeps running", show=False),
    _b("x", "stop", "Stop run", "monitor.stop", "Stop the run (asks first)"),
    _b("r", "refresh", "Refresh", "monitor.refresh", "Read the run's logs now"),
]

RUNS = [
    # priority: else the table's own Enter (select cell) hides this one from the footer and F1 help.
    _b("enter", "open", "Monitor", "runs.open", "Open the selected run in the monitor", priority=True),
    _b("r", "refresh", "Refresh", "runs.refresh", "Read the runs list again"),
    _b("x", "forget", "Forget", "runs.forget",
       "Drop the selected run from this list; its files stay, and a run still working is refused"),
    _b("escape", "close", "Close", "runs.close", "Back to where you were"),
]

MODAL = [
    _b("escape", "dismiss_modal", "Close", "modal.close", "Close this dialog"),
]

ALL: dict[str, list[Binding]] = {
    "App": APP, "Wizard": WIZARD, "Hardware": HARDWARE, "Dataset": DATASET, "Review": REVIEW,
    "Run": RUN, "Monitor": MONITOR, "Runs": RUNS,
}
# Every binding id of ours (F1 help lists these, not the keys widgets bind for themselves).
IDS: frozenset[str] = frozenset(b.id for group in (*ALL.values(), MODAL) for b in group if b.id)


def user_keymap() -> dict[str, str]:
    """The person's remaps, by binding id; a broken file is ignored (the defaults still work)."""
    try:
        data = json.loads((config_dir() / KEYMAP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}
