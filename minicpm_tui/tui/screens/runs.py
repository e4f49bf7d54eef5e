"""Every run on this machine (core.runner.list_runs); Enter opens one in the monitor."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from minicpm_tui.tui import keys
from minicpm_tui.tui.widgets.footer import KeysFooter
from minicpm_tui.tui.widgets.render import one_line


class RunsScreen(Screen):
    HELP_TITLE = "Runs"
    HELP = ("Every run this machine knows (launched here, or started by hand from a watched run directory); "
            "Forget drops the selected one from the list, never its files (a run still working is refused). "
            "A status marked * has a note (a damaged run_manifest.json, a run started by hand): the line under "
            "the table shows the selected run's. \"ended\": a run started by hand that ended while nothing "
            "watched it, without final results; its files tell how far it got and when, not how it ended.")
    BINDINGS = keys.RUNS

    class Forgot(Message):
        def __init__(self, run_dir: str, error: str | None) -> None:
            super().__init__()
            self.run_dir = run_dir
            self.error = error

    class Listed(Message):
        def __init__(self, runs: list[Any], error: str | None) -> None:
            super().__init__()
            self.runs = runs
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.notes: dict[str, str] = {}  # run directory -> its note, in the TUI's words
        self.error = ""

    def compose(self) -> ComposeResult:
        yield Static(" runs on this machine", id="stepbar")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-note", classes="hint")
        yield KeysFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("status", "progress", "age", "exit", "run directory")
        table.focus()
        self.action_refresh()

    def action_refresh(self) -> None:
        self._list()

    def on_screen_resume(self) -> None:
        # Back from a run's monitor (where it may have been stopped): its status and age move on.
        if self.is_mounted and self.row_count():
            self._list()

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def _list(self) -> None:
        try:
            from minicpm_tui.core.runner import list_runs

            self.post_message(self.Listed(list_runs(), None))
        except Exception as exc:
            self.post_message(self.Listed([], one_line(exc)))

    def on_runs_screen_listed(self, message: Listed) -> None:
        tables = self.query(DataTable)
        if not tables:
            return  # listed after the screen closed
        table = tables.first()
        table.clear()
        self.notes = {}
        for run in message.runs:
            # The note (a damaged manifest with the run still alive, a run started by hand) has no column:
            # a * on the status, the selected run's note on the line under the table.
            note = getattr(run, "note_tui", "") or getattr(run, "note", "")
            if note:
                self.notes[str(run.run_dir)] = note
            # the runner's age: boot clock when it can, never negative after a wall-clock step
            table.add_row(run.status + (" *" if note else ""), run.progress, run.age,
                          "-" if run.exit_code is None else str(run.exit_code), str(run.run_dir),
                          key=str(run.run_dir))
        self.error = message.error or ("" if message.runs else "No runs yet: the wizard's last step launches one.")
        self.show_note()
        self.refresh_bindings()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_note()

    def show_note(self) -> None:
        """The selected run's note (wrapped under the table), else the list's own message."""
        note = self.notes.get(self.selected() or "", "")
        self.query_one("#runs-note", Static).update(f"* {note}" if note else self.error)

    def row_count(self) -> int:
        """The table's rows; 0 while it is not there. The footer asks check_action while the screen closes too,
        after the table has been removed (that NoMatches ended the app when Escape closed the list)."""
        tables = self.query(DataTable)
        return tables.first().row_count if tables else 0

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("open", "forget"):
            return self.row_count() > 0
        return True

    def why_not(self, action: str) -> str:
        return "no runs yet" if action in ("open", "forget") else ""

    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def palette_commands(self):
        from textual.app import SystemCommand

        if self.row_count():
            yield SystemCommand("runs: open in the monitor", "The selected run's progress, logs and GPUs",
                                self.action_open)
            yield SystemCommand("runs: forget", "Drop the selected run from this list (its files stay)",
                                self.action_forget)
        yield SystemCommand("runs: refresh", "Read the runs list again", self.action_refresh)

    def action_forget(self) -> None:
        run_dir = self.selected()
        if run_dir is not None:
            self._forget(run_dir)

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs-forget")
    def _forget(self, run_dir: str) -> None:
        # A thread: it reads the run's status and this user's processes, as `runs --forget` does.
        try:
            from minicpm_tui.core.runner import forget_run

            forget_run(run_dir)
            self.post_message(self.Forgot(run_dir, None))
        except Exception as exc:
            self.post_message(self.Forgot(run_dir, one_line(exc)))

    def on_runs_screen_forgot(self, message: Forgot) -> None:
        if message.error:
            self.notify(message.error, severity="error", timeout=8)
            return
        self.notify(f"forgot {message.run_dir}: no longer listed (its files stay)")
        self._list()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.open(str(event.row_key.value))

    def action_open(self) -> None:
        run_dir = self.selected()
        if run_dir is not None:
            self.open(run_dir)

    def open(self, run_dir: str) -> None:
        from minicpm_tui.tui.screens.monitor import MonitorScreen

        self.app.push_screen(MonitorScreen(run_dir))

    def action_close(self) -> None:
        self.dismiss()  # not pop_screen: whoever opened the list may wait for it to close
