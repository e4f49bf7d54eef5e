"""Step 7: smoke run first (one key), then launch; both open the live monitor."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from minicpm_tui.tui import keys
from minicpm_tui.tui.screens.base import WizardStep
from minicpm_tui.tui.state import ExportStatus
from minicpm_tui.tui.widgets.render import one_line


def start_smoke(run_dir: Path) -> Any:
    """Prepare the smoke config (core.smoke) and launch it detached through the runner, so the monitor
    can follow it like any run. Returns the runner's manifest."""
    import shutil

    from minicpm_tui.core import runner, smoke
    from minicpm_tui.core.tinymodel import offline_env

    launcher = getattr(smoke, "launch_smoke", None)
    if callable(launcher):
        return launcher(run_dir)
    spec = smoke.prepare_smoke(run_dir)
    if spec.output_dir.exists():  # a smoke run always starts over (as core.smoke.run_spec does)
        shutil.rmtree(spec.output_dir)
    return runner.launch(run_dir, env=offline_env(dict(spec.env)), output_dir=spec.output_dir)


def export_run_dir(run_dir: Path, force: bool = False, on_start: Callable[[Any], None] | None = None
                   ) -> tuple[bool, str]:
    """`minicpm-tui export RUN_DIR` as a subprocess (LLaMA-Factory runs there, never in the TUI):
    whether it succeeded, and its last line. ``on_start`` gets the process (``stop_export`` ends it)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "minicpm_tui", "export", str(run_dir),
                             *(["--force"] if force else [])], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    if on_start is not None:
        on_start(proc)
    stdout, stderr = proc.communicate()
    lines = (stdout if proc.returncode == 0 else stderr or stdout).strip().splitlines()
    text = lines[-1] if lines else f"export exited with code {proc.returncode}"
    return proc.returncode == 0, text.removeprefix("minicpm-tui: error: ").removeprefix("minicpm-tui: ")


def stop_export(proc: Any, grace: float = 60.0) -> None:
    """End an export started by ``export_run_dir`` and wait for it: SIGTERM, which `minicpm-tui export` takes
    as Ctrl+C (LLaMA-Factory's process ended, its temporary folder removed: no half-written model); killed
    only if it has not ended after ``grace`` seconds."""
    import signal
    import subprocess

    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_export(app: App, run_dir: Path, force: bool) -> None:
    """Run the export in an app worker, not the Run screen's: leaving the step removes that screen (and
    cancels its workers), while the export goes on and its result must still reach the app's state. The
    process is kept as the app's ``export_process``, for quitting to stop it."""

    def started(proc: Any) -> None:
        app.export_process = proc  # type: ignore[attr-defined]

    def work_() -> None:
        try:
            ok, text = export_run_dir(run_dir, force, on_start=started)
        except Exception as exc:
            ok, text = False, one_line(exc)
        with contextlib.suppress(RuntimeError):  # the app has exited meanwhile: nobody to tell
            app.call_from_thread(export_finished, app, run_dir, ok, text)

    app.export_process = None  # type: ignore[attr-defined]
    app.run_worker(work_, thread=True, exclusive=True, group="export", exit_on_error=False)


def export_finished(app: App, run_dir: Path, ok: bool, text: str) -> None:
    """Keep the result in the state, redraw a Run step in the stack, and say it wherever the person is."""
    state = getattr(app, "state", None)
    if state is not None:
        state.export = ExportStatus(str(run_dir), running=False, ok=ok, text=text)
    for screen in app.screen_stack:
        if isinstance(screen, RunScreen):
            screen.redraw()
    here = isinstance(app.screen, RunScreen)
    app.notify(text if here else f"export of {run_dir.name}: {text}",
               severity="information" if ok else "error", timeout=12)


class RunScreen(WizardStep):
    STEP = 6
    HELP_TITLE = "7 Run"
    HELP = """
**s** runs the smoke test: a tiny model of the same chat format through this run directory's own
`single_node.sh`, on the CPU, for a few steps (about a minute; no GPU, no download). Written for another
machine's LLaMA-Factory (step 1), it runs with the LLaMA-Factory here: the line says which release, and
that it then proves the data and scripts, not the target's; it is not offered when the LLaMA-Factory here
cannot read that train.yaml (a key or template only the target has). **l** launches
the real training detached: it survives closing this window, the terminal and the SSH session. It is
not offered for a run directory written for another machine's LLaMA-Factory: copy it there and launch it
there (the line says how).
Both open the live monitor; **d** there detaches, `minicpm-tui monitor RUN_DIR` reattaches.
Once a LoRA run has finished (or was stopped), the palette (**ctrl+p**) offers **run: export merged model**:
`minicpm-tui export RUN_DIR`, the adapter merged into the base model in RUN_DIR/merged (it asks before
replacing an earlier export; the launch waits until it is done). It goes on if you leave this step;
its result is said when it ends and stays here.
"""
    BINDINGS = [*WizardStep.BINDINGS, *keys.RUN]

    class Checked(Message):
        """What a smoke run here would prove of a run directory written for another LLaMA-Factory."""

        def __init__(self, run_dir: Path, here: Any) -> None:
            super().__init__()
            self.run_dir = run_dir
            self.here = here  # core.smoke.SmokeHere

    class Started(Message):
        def __init__(self, kind: str, run_dir: Path, error: str | None) -> None:
            super().__init__()
            self.kind = kind
            self.run_dir = run_dir
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.starting = False
        self.launched: Path | None = None
        # Written for another machine's LLaMA-Factory (step 1): what this one can smoke, asked in a worker
        # (core.smoke.smoke_here); None while it is not known.
        self.here: Any = None
        self.here_for: tuple[str, str] | None = None  # the run directory ``here`` is about, and its digest
        # Why it is not launched here (writers.run_dir_written_for: "" for this machine's), and for which
        # run directory and digest that was read.
        self.elsewhere = ""
        self.elsewhere_for: tuple[str, str] | None = None

    def on_mount(self) -> None:
        super().on_mount()
        self.call_after_refresh(self.check_here)

    def for_target(self) -> bool:
        """The run directory is written for another machine's LLaMA-Factory (the wizard's step 1)."""
        return bool(self.state.lf_target) and self.run_dir is not None

    def check_here(self) -> None:
        """Ask (again) when the run directory is written for a target and was (re)written since last asked."""
        if self.for_target() and self.here_for != self.written():
            self.here, self.here_for = None, self.written()
            self._check_here(self.run_dir)

    def written(self) -> tuple[str, str]:
        return self.state.run_dir, self.state.run_digest

    @work(thread=True, exclusive=True, exit_on_error=False, group="smoke-here")
    def _check_here(self, run_dir: Path) -> None:
        from minicpm_tui.core.smoke import SmokeHere, smoke_here

        try:
            here = smoke_here(run_dir)
        except Exception as exc:  # e.g. its generated.json is damaged: said where the smoke line is
            here = SmokeHere("", refused=one_line(exc))
        self.post_message(self.Checked(run_dir, here))

    def on_run_screen_checked(self, message: Checked) -> None:
        if message.run_dir == self.run_dir:
            self.here = message.here
            self.redraw()
            if self.is_current:  # the keys said beside Next too: "s" now offered or not
                self.update_nav()

    def launch_refused(self) -> str:
        """Why `l` is not offered ("" when it is): the run directory is written for another machine's
        LLaMA-Factory (its generated.json says so), which trains it; the plan's "written for" note says how."""
        if self.run_dir is None:
            return ""
        if self.elsewhere_for != self.written():
            from minicpm_tui.core.writers import run_dir_written_for

            try:
                self.elsewhere = run_dir_written_for(self.run_dir) or ""
            except Exception:  # no generated.json (yet): the launch itself says what is wrong
                self.elsewhere = ""
            self.elsewhere_for = self.written()
        return self.elsewhere

    def launch_label(self, text: Text) -> None:
        """The launch line; for a run directory written for another machine, why not here, and what to do."""
        refused = self.launch_refused()
        if not refused:
            text.append("l  ", style="bold reverse")
            text.append("  launch the real training, detached (keeps running when you leave)\n\n")
            return
        import textwrap

        text.append("l  ", style="dim reverse")
        text.append("  no launch here: it trains on the machine it is written for\n", style="dim")
        # Wrapped under the line above (one line each at 80 columns), not under the key.
        text.append(textwrap.fill(refused, 75, initial_indent="     ", subsequent_indent="     ",
                                  break_long_words=False, break_on_hyphens=False) + "\n\n",
                    style="dim")

    def smoke_refused(self) -> str:
        """Why the smoke run is not offered here ("" when it is): this machine's LLaMA-Factory cannot read the
        train.yaml written for the target, or it is still being asked."""
        if not self.for_target():
            return ""
        if self.here is None:
            return "checking what this machine's LLaMA-Factory can smoke…"
        return self.here.refused

    def smoke_label(self, text: Text) -> None:
        """The smoke line: for a run directory written for another machine, with which LLaMA-Factory it runs
        here and what that proves (the data and the scripts; the target's release only when it is the same)."""
        here = self.here
        # One line each at 80 columns (a wrapped one went on under the key); what follows is indented.
        if not self.for_target():
            text.append("s  ", style="bold reverse")
            text.append("  smoke run (do it first): proves the whole chain on the CPU in a minute\n\n")
        elif here is None:
            text.append("s  ", style="dim reverse")
            text.append("  smoke run: asking which LLaMA-Factory here would run it…\n\n", style="dim")
        elif here.refused:
            text.append("s  ", style="dim reverse")
            text.append("  no smoke run here: the LLaMA-Factory here cannot run this train.yaml\n", style="dim")
            text.append(f"     {here.refused}; smoke it on the machine that trains\n\n", style="dim")
        elif here.other_release:
            text.append("s  ", style="bold reverse")
            text.append(f"  smoke here, with LLaMA-Factory {here.here} here; the target has {here.wanted}\n")
            text.append("     proves the data and scripts on the CPU, not the target's release\n\n", style="dim")
        else:
            text.append("s  ", style="bold reverse")
            text.append(f"  smoke run, with LLaMA-Factory {here.here} here, the target's release\n\n")

    @property
    def run_dir(self) -> Path | None:
        return Path(self.state.run_dir) if self.state.run_dir else None

    def export_status(self) -> ExportStatus | None:
        """The session's export of this run directory (the app's state: it outlives this screen)."""
        export = self.state.export
        return export if export is not None and self.run_dir is not None and \
            Path(export.run_dir) == self.run_dir else None

    @property
    def exporting(self) -> bool:
        export = self.export_status()
        return export is not None and export.running

    def body(self) -> ComposeResult:
        with VerticalScroll(classes="body pane", id="run-main") as main:
            main.border_title = "Run"
            yield Static(self.intro(), id="run-text")

    def intro(self) -> Text:
        if self.run_dir is None:
            return Text("No run directory yet: go back (Esc) and write it (^w).", style="bold")
        text = Text(f"Run directory: {self.run_dir}\n\n", style="bold")
        self.smoke_label(text)
        self.launch_label(text)
        if self.check_action("monitor", ()):  # only once a run was started here
            text.append("m  ", style="bold reverse")
            text.append("  open the monitor of the latest run here\n\n")
        if self.exporting:
            text.append("Exporting: merging the adapter into the base model in merged/ (minutes; log in "
                        "logs/export.log)…\n\n", style="bold")
        elif self.can_export():  # the palette's entry, said where it can be seen (one line at 80 columns)
            text.append("^p ", style="bold reverse")
            text.append("  run: export merged model: the adapter merged into the base, in merged/\n\n")
        export = self.export_status()
        if export is not None and not export.running:  # how the last export ended, also if it ended elsewhere
            text.append("Export: " if export.ok else "Export failed: ", style="bold" if export.ok else "bold red")
            text.append(f"{export.text}\n\n")
        merged = self.run_dir / "merged"
        if not self.exporting and not (export and export.ok) and (merged / "config.json").is_file():
            text.append(f"Merged model: {merged}\n\n")
        text.append(f"Later: minicpm-tui monitor {self.run_dir}", style="dim")
        return text

    def on_screen_resume(self) -> None:
        # Back from the monitor (or a dialog): a run may have started (or an export ended) since it was drawn.
        self.check_here()
        self.redraw()

    def redraw(self) -> None:
        if not self.is_mounted:  # just pushed: it draws from the state when composed
            return
        if not self.starting:
            self.query_one("#run-text", Static).update(self.intro())
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "launch" and self.exporting:
            return False  # the training would write into the output_dir the export reads
        if action == "smoke" and self.smoke_refused():
            return False
        if action == "launch" and self.launch_refused():
            return False
        if action in ("smoke", "launch"):
            return self.run_dir is not None and not self.starting
        if action == "monitor":
            return self.run_dir is not None and (self.run_dir / "run_manifest.json").exists()
        if action == "next":
            return False  # the last step
        return super().check_action(action, parameters)

    def why_not(self, action: str) -> str:
        if action == "next":
            return "this is the last step"
        if self.run_dir is None and action in ("smoke", "launch", "monitor"):
            return "no run directory yet: write it on the Review step (^w)"
        if action == "launch" and self.exporting:
            return "an export is running: it reads the training's output_dir"
        if action == "smoke" and self.smoke_refused():
            return self.smoke_refused()
        if action == "launch" and self.launch_refused():
            return self.launch_refused()
        if action in ("smoke", "launch"):
            return "a run is starting"
        if action == "monitor":
            return "no run was started from this run directory yet"
        return super().why_not(action)

    def ready(self) -> bool:
        keys_ = [k for k, refused in (("s: smoke run", self.smoke_refused()), ("l: launch", self.launch_refused()))
                 if not refused]
        self.blocked_reason = "   ".join(keys_) or "copy it to the machine that trains"
        return False

    def action_smoke(self) -> None:
        if self.check_action("smoke", ()):
            self.begin("smoke")

    def action_launch(self) -> None:
        if not self.check_action("launch", ()):
            return
        from minicpm_tui.tui.screens.confirm import ConfirmScreen

        def answer(yes: bool | None) -> None:
            if yes:
                self.begin("launch")

        self.app.push_screen(ConfirmScreen(f"Launch the real training of {self.run_dir.name}? It runs detached "
                                           "until it ends or you stop it.", yes="Launch", no="Not yet"), answer)

    def action_monitor(self) -> None:
        if self.run_dir is not None:
            from minicpm_tui.tui.screens.monitor import MonitorScreen

            self.app.push_screen(MonitorScreen(self.run_dir))

    def begin(self, kind: str) -> None:
        self.starting = True
        self.query_one("#run-text", Static).update(
            "Preparing the smoke run (the tiny model is built once, ~5 s)…" if kind == "smoke" else "Launching…")
        self.refresh_bindings()
        self._start(kind, self.run_dir)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch")
    def _start(self, kind: str, run_dir: Path) -> None:
        try:
            if kind == "smoke":
                start_smoke(run_dir)
            else:
                from minicpm_tui.core.runner import launch

                launch(run_dir)
        except Exception as exc:
            self.post_message(self.Started(kind, run_dir, one_line(exc)))
            return
        self.post_message(self.Started(kind, run_dir, None))

    def on_run_screen_started(self, message: Started) -> None:
        self.starting = False
        self.query_one("#run-text", Static).update(self.intro())
        self.refresh_bindings()
        if message.error:
            self.notify(message.error, severity="error", timeout=12)
            return
        self.launched = message.run_dir
        self.action_monitor()

    def live_run_dir(self) -> Path | None:
        if self.launched is None:
            return None
        from minicpm_tui.core.runner import LIVE, run_status

        try:
            return self.launched if run_status(self.launched).status in LIVE else None
        except Exception:
            return None

    def can_export(self) -> bool:
        """A LoRA run of this run directory that ended (finished, or stopped: both save the model)."""
        running = self.state.export is not None and self.state.export.running  # one export at a time
        if self.run_dir is None or self.starting or running or self.state.method == "full":
            return False
        from minicpm_tui.core.runner import run_status

        try:
            info = run_status(self.run_dir)
        except Exception:
            return False
        if info.status not in ("finished", "stopped"):
            return False
        if not info.smoke:
            return True
        # The smoke run's tiny adapter (in smoke/output) is nothing to export; a training before it may have left
        # its own in output_dir, which the export finds.
        from minicpm_tui.core.export import plan_export

        try:
            plan_export(self.run_dir, force=True)
        except Exception:
            return False
        return True

    def action_export(self) -> None:
        if not self.can_export():
            return
        from minicpm_tui.core.export import DEFAULT_OUT

        out = self.run_dir / DEFAULT_OUT
        if not out.exists():
            self.begin_export(False)
            return
        from minicpm_tui.tui.screens.confirm import ConfirmScreen

        # The CLI refuses an existing out ("pass --force"): here the question is asked instead.
        def answer(yes: bool | None) -> None:
            if yes:
                self.begin_export(True)

        self.app.push_screen(ConfirmScreen(f"{out} exists (an earlier export). Replace it? The old one is removed "
                                           "only once the new export has succeeded.", yes="Replace it",
                                           no="Keep it", danger=True), answer)

    def begin_export(self, force: bool) -> None:
        if not self.can_export():
            return
        self.state.export = ExportStatus(str(self.run_dir))
        self.redraw()
        start_export(self.app, self.run_dir, force)

    def palette_commands(self):
        from textual.app import SystemCommand

        if self.can_export():
            yield SystemCommand("run: export merged model", "Merge the LoRA adapter into the base model "
                                "(minicpm-tui export)", self.action_export)
        if self.check_action("smoke", ()):
            yield SystemCommand("run: smoke run", "A tiny model on the CPU through the real scripts", self.action_smoke)
        if self.check_action("launch", ()):
            yield SystemCommand("run: launch", "The real training, detached", self.action_launch)
        if self.check_action("monitor", ()):
            yield SystemCommand("run: monitor", "The live monitor of this run", self.action_monitor)
