"""The Textual application: the wizard's seven steps, the live monitor and the runs list.

Kept small on purpose: screens live in ``screens/`` (one module each, imported when first shown so
startup stays fast), keys in ``keys.py``, styles in ``styles/app.tcss``. Every decision a screen
shows comes from a core function; the app only navigates and keeps the draft.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual import events
from textual.app import App, SystemCommand
from textual.screen import Screen

from minicpm_tui.tui import keys, resume_gc
from minicpm_tui.tui.keyhold import KeyHold
from minicpm_tui.tui.screens.base import WizardStep
from minicpm_tui.tui.state import WizardState, clear_draft, load_draft, save_draft
from minicpm_tui.tui.widgets.field import Field, InTurn

# (id, title, "module:Class"); the order is the wizard's.
STEPS: list[tuple[str, str, str]] = [
    ("hardware", "Hardware", "hardware:HardwareScreen"),
    ("model", "Model", "model:ModelScreen"),
    ("dataset", "Dataset", "dataset:DatasetScreen"),
    ("plan", "Plan", "plan:PlanScreen"),
    ("hparams", "Hyper-params", "hparams:HparamsScreen"),
    ("review", "Review", "review:ReviewScreen"),
    ("run", "Run", "run:RunScreen"),
]


def screen_class(spec: str) -> type[Screen]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(f"minicpm_tui.tui.screens.{module}"), name)


class MiniCPMApp(App[int]):
    TITLE = "minicpm-tui"
    CSS_PATH = "styles/app.tcss"
    BINDINGS = keys.APP
    # No blinking cursor: it is noise over SSH and makes snapshots flaky.
    ENABLE_COMMAND_PALETTE = True

    def __init__(self, *, monitor_dir: str | Path | None = None, use_draft: bool = True,
                 state: WizardState | None = None, open_runs: bool = False) -> None:
        super().__init__()
        self.open_runs_at_start = open_runs
        self.monitor_dir = Path(monitor_dir) if monitor_dir else None
        self.use_draft = use_draft
        self.state = state or WizardState()
        self.exit_code = 0
        self.draft_warned = False
        # While the saved draft is offered (or, with --runs, the wizard is not shown yet), it is not overwritten.
        self.draft_held = False
        self.user_keymap: dict[str, str] = {}
        self.key_hold = KeyHold(self)
        # The Run step's `minicpm-tui export` subprocess while it runs (screens.run.start_export).
        self.export_process: Any = None

    # -- start ---------------------------------------------------------------
    def get_default_screen(self) -> Screen:
        # The first screen is the real one (step 1 or the monitor), not an empty screen that a
        # pushed screen then covers: one compose and one layout before the first frame.
        if self.monitor_dir is not None:
            from minicpm_tui.tui.screens.monitor import MonitorScreen

            return MonitorScreen(self.monitor_dir, standalone=True)
        self.state.step = 0
        return screen_class(STEPS[0][2])()

    def on_mount(self) -> None:
        self.call_after_refresh(resume_gc)  # paused for a faster start (tui.gc_paused_for_startup)
        self.user_keymap = keys.user_keymap()  # kept for F1 help, which lists every key as remapped
        self.set_keymap(self.user_keymap)
        if self.monitor_dir is not None:
            return
        if self.open_runs_at_start:
            # `minicpm-tui --runs`: the wizard is not in use while its runs list is up, so no draft is
            # written (nor one on disk replaced, by the first probe under the list or by quitting);
            # closing the list starts the wizard as a plain start would, offering the draft.
            self.draft_held = True

            def wizard_shown(_: object = None) -> None:
                self.draft_held = False
                self.offer_draft()

            self.push_screen(self.runs_screen(), wizard_shown)
            return
        self.offer_draft()

    def offer_draft(self) -> None:
        """Offer the saved draft (from step 2 on); else start fresh, saving this session's draft."""
        draft = load_draft() if self.use_draft else None
        if draft is None or draft[0].step == 0:
            self.call_after_refresh(self.save_draft)
        else:
            from minicpm_tui.tui.screens.confirm import ConfirmScreen

            # Until it is answered, the draft on disk stays as it is: quitting (or a dropped SSH session)
            # with the question open, or the first probe finishing, must not replace it with step 1.
            self.draft_held = True
            saved, when = draft
            title = next((t for i, (_, t, _) in enumerate(STEPS) if i == saved.step), "?")
            question = (f"Continue the draft you left at step {saved.step + 1} ({title}), "
                        f"model {saved.model or '-'}, dataset {saved.dataset_name or saved.dataset_file or '-'}?")

            def resume(yes: bool | None) -> None:
                self.draft_held = False
                if yes:
                    self.state = saved
                    self.goto_step(saved.step)
                else:
                    clear_draft()
                    self.save_draft()

            # Esc (closing the question) must not delete the draft: it continues it.
            self.push_screen(ConfirmScreen(question, yes="Continue draft", no="Start fresh", escape=True), resume)

    # -- keys sent faster than they are handled (widgets/field.py, keyhold.py) --
    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and not event.is_forwarded and self.key_hold.take(event):
            return  # for a screen still mounting: sent again once it is
        await super().on_event(event)

    async def _check_bindings(self, key: str, priority: bool = False) -> bool:
        # Textual runs a priority binding (Ctrl+N, Ctrl+Q) as the key arrives, ahead of the keys before
        # it that a focused field has not handled yet: `5 C-n` sent at once left step 5 before the 5
        # was typed. A focused field gets it instead and passes it on in turn (on_key runs it).
        if priority and isinstance(self.focused, Field):
            return False
        return await super()._check_bindings(key, priority)

    async def on_key(self, event: events.Key) -> None:
        # A key a field passed on: its priority binding first, as Textual would have; else Textual's
        # own handling goes on (the other bindings from the focused widget up). Then the keys sent
        # after it, which waited in the field, go on where the focus is now.
        if isinstance(event, InTurn):
            self.call_next(event.field.replay)
            if await super()._check_bindings(event.key, priority=True):
                event.prevent_default()

    # -- wizard navigation ------------------------------------------------------
    def goto_step(self, index: int) -> None:
        index = max(0, min(index, len(STEPS) - 1))
        self.state.step = index
        first = self.screen_stack[0]
        if index == 0 and isinstance(first, WizardStep) and first.STEP == 0:
            # Step 1 is the app's first screen, which stays at the bottom of the stack (Textual
            # cannot switch away the default screen): go back down to it.
            while len(self.screen_stack) > 1 and isinstance(self.screen, WizardStep):
                self.pop_screen()
            first.sync_from_state()
        elif isinstance(self.screen, WizardStep) and len(self.screen_stack) > 1:
            self.switch_screen(screen_class(STEPS[index][2])())
        else:
            self.push_screen(screen_class(STEPS[index][2])())
        self.save_draft()

    def save_draft(self) -> None:
        if self.monitor_dir is None and self.use_draft and not self.draft_held:
            try:
                save_draft(self.state)
            except OSError as exc:  # a read-only home must not break the wizard
                # Said once: the draft is saved on every change, and a toast per key would bury the screen.
                if not self.draft_warned:
                    self.draft_warned = True
                    self.notify(f"could not save the draft: {exc} (tried again at each change; said once)",
                                severity="warning", timeout=8)

    # -- app-wide actions ------------------------------------------------------
    def action_help(self) -> None:
        from minicpm_tui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def live_run_dir(self) -> Path | None:
        """A run this session launched that is still running (then quitting asks first)."""
        for screen in self.screen_stack:
            getter = getattr(screen, "live_run_dir", None)
            if callable(getter) and (found := getter()):
                return found
        return None

    def running_export(self) -> Path | None:
        """The run directory whose export (the Run step's) is running now, else None."""
        export = self.state.export
        if export is None or not export.running:
            return None
        proc = self.export_process
        return Path(export.run_dir) if proc is None or proc.poll() is None else None

    def action_request_quit(self) -> None:
        from minicpm_tui.tui.screens.confirm import ConfirmScreen, QuitScreen

        if isinstance(self.screen, QuitScreen) or getattr(self.screen, "asks_quit", False):
            return
        exporting = self.running_export()
        if exporting is not None:
            def stop_it(yes: bool | None) -> None:
                if yes:
                    self.stop_export_then_quit()

            question = ConfirmScreen(f"An export is running (the merged model of {exporting.name}); quit and stop "
                                     "it? Nothing half-written is kept.", yes="Stop it and quit", no="Stay",
                                     danger=True)
            question.asks_quit = True  # type: ignore[attr-defined]
            self.push_screen(question, stop_it)
            return
        live = self.live_run_dir()
        if live is None:
            self.save_draft()
            self.exit(self.exit_code)
            return

        def chosen(answer: str | None) -> None:
            if answer == "leave":
                self.save_draft()
                self.exit(self.exit_code)
            elif answer == "stop":
                self.stop_then_quit(live)

        self.push_screen(QuitScreen(live), chosen)

    def stop_export_then_quit(self) -> None:
        """Stop the export (its subprocess, in a thread: it may take a few seconds to end cleanly), then go on
        quitting (a live run still asks)."""
        from minicpm_tui.tui.screens.run import stop_export

        self.notify("stopping the export…", timeout=30)

        def work_() -> None:
            import time

            deadline = time.monotonic() + 10  # asked for before the worker had started the process
            while self.export_process is None and time.monotonic() < deadline:
                time.sleep(0.05)
            stop_export(self.export_process)
            self.call_from_thread(self.action_request_quit)

        self.run_worker(work_, thread=True, group="export-stop", exit_on_error=False)

    def stop_then_quit(self, run_dir: Path) -> None:
        from minicpm_tui.tui.screens.monitor import stop_run_worker

        stop_run_worker(self, run_dir, then_exit=True)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Palette entries named "area: action", offered only where they work now."""
        for i, (_, title, _) in enumerate(STEPS):
            if self.monitor_dir is None and i != self.state.step and i <= self.furthest_step():
                yield SystemCommand(f"wizard: go to {i + 1} {title}", f"Jump to step {i + 1}",
                                    lambda i=i: self.goto_step(i))
        provider = getattr(screen, "palette_commands", None)
        if callable(provider):
            yield from provider()
        yield SystemCommand("runs: list", "Every run on this machine; open one in the monitor", self.open_runs)
        yield SystemCommand("help: keys and this screen", "F1", self.action_help)
        yield SystemCommand("app: quit", "Leave; the draft is kept and runs keep running",
                            self.action_request_quit)
        yield from (c for c in super().get_system_commands(screen) if c.title in ("Theme", "Keys"))

    def furthest_step(self) -> int:
        return max(self.state.step, 0)

    def runs_screen(self) -> Screen:
        from minicpm_tui.tui.screens.runs import RunsScreen

        return RunsScreen()

    def open_runs(self) -> None:
        self.push_screen(self.runs_screen())


def run_wizard(*, use_draft: bool = True, runs: bool = False) -> int:
    app = MiniCPMApp(use_draft=use_draft, open_runs=runs)
    app.run()
    return app.return_code or 0


def run_monitor(run_dir: str | Path) -> int:
    """The monitor screen on its own: ``minicpm-tui monitor RUN_DIR``."""
    app = MiniCPMApp(monitor_dir=run_dir, use_draft=False)
    app.run()
    return app.return_code or 0
