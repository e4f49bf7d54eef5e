"""The live monitor: phase, progress and ETA, loss and learning-rate curves, throughput, GPUs, log tail,
and on failure the diagnosis with its fix. Data comes from core.monitor.RunFollower and
core.telemetry.GpuSampler, polled in a worker; this screen only formats snapshots."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Label, Log, ProgressBar, Sparkline, Static

from minicpm_tui.tui import keys
from minicpm_tui.tui.widgets.footer import KeysFooter
from minicpm_tui.tui.widgets.render import one_line

POLL_S = 1.0


def stop_run_worker(app: App, run_dir: Path, *, then_exit: bool = False) -> None:
    """Stop a run in a thread (graceful first, then its process group); report, optionally quit."""

    def work_() -> None:
        from minicpm_tui.core.runner import stop

        try:
            result = stop(run_dir)
            text = "; ".join(result.actions[-2:]) or f"run {result.status}"
            app.call_from_thread(app.notify, f"stop: {text}")
        except Exception as exc:
            app.call_from_thread(app.notify, f"stop failed: {one_line(exc)}", severity="error", timeout=10)
        if then_exit:
            app.call_from_thread(app.exit, 0)

    app.notify("stopping the run (graceful first; it may take a minute)…")
    app.run_worker(work_, thread=True, exclusive=True, group="stop", exit_on_error=False)


class MonitorScreen(Screen):
    HELP_TITLE = "Monitor"
    HELP = """
Follows a run directory live: the phase (loading, tokenizing, training, evaluating, saving, done),
step x/y with elapsed time and ETA, the loss and learning-rate curves, throughput, each GPU's
utilisation and memory with a short history, and the log tail. When a run fails, the diagnosis and
its fix appear above the log. **d** detaches (training keeps running), **x** stops it after asking.
Reattach any time with `minicpm-tui monitor RUN_DIR`, or from the runs list (palette: "runs: list").
"""
    BINDINGS = keys.MONITOR

    class Polled(Message):
        def __init__(self, snap: Any, gpu: Any, error: str | None) -> None:
            super().__init__()
            self.snap = snap
            self.gpu = gpu
            self.error = error

    def __init__(self, run_dir: str | Path, *, standalone: bool = False) -> None:
        super().__init__()
        self.run_dir = Path(run_dir).expanduser().absolute()
        self.standalone = standalone
        self.snap: Any = None
        self.follower: Any = None
        self.sampler: Any = None
        self._lock = threading.Lock()
        self._log_seen: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(Text(f" monitor  {self.run_dir.name}", style="bold"), id="stepbar")
        with Horizontal(id="mon-top"):
            yield Static("reading the run…", id="mon-phase")
        # The run's note (a damaged manifest, a run started by hand) wrapped: the status line cuts it at 80 columns.
        yield Static("", id="mon-note", classes="-none")
        yield ProgressBar(total=100, show_eta=False, id="mon-progress")
        yield Static("", id="mon-metrics")
        with Horizontal(classes="spark-row"):
            yield Label("loss", id="mon-loss-label")
            yield Sparkline([], id="mon-loss")
        with Horizontal(classes="spark-row"):
            yield Label("lr", id="mon-lr-label")
            yield Sparkline([], id="mon-lr")
        yield Static("", id="mon-gpus")
        yield Static("", id="mon-diag", classes="-none")
        yield Log(id="mon-log", max_lines=400, auto_scroll=True)
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#mon-log", Log).border_title = "log"
        self.poll()
        self.set_interval(POLL_S, self.poll)

    # -- polling -------------------------------------------------------------------
    def poll(self) -> None:
        self._poll()

    @work(thread=True, exclusive=False, exit_on_error=False, group="monitor-poll")
    def _poll(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # the previous poll is still reading; never queue up behind a slow disk
        try:
            from minicpm_tui.core.monitor import RunFollower
            from minicpm_tui.core.telemetry import GpuSampler

            if self.follower is None:
                self.follower = RunFollower(self.run_dir)
                self.sampler = GpuSampler(interval=2.0, history=120)
            snap = self.follower.poll()
            gpu = self.sampler.sample()
            self.post_message(self.Polled(snap, gpu, None))
        except Exception as exc:
            self.post_message(self.Polled(None, None, one_line(exc)))
        finally:
            self._lock.release()

    def on_monitor_screen_polled(self, message: Polled) -> None:
        if message.error:
            # The error on the wrapped line (the status line cuts it at 80 columns), in place of a stale note.
            self.query_one("#mon-phase", Static).update(Text("cannot read the run:", style="bold"))
            note = self.query_one("#mon-note", Static)
            note.update(Text(message.error))
            note.remove_class("-none")
            return
        self.snap = snap = message.snap
        self.show_snapshot(snap)
        self.show_gpus(message.gpu)
        self.refresh_bindings()

    def show_snapshot(self, snap: Any) -> None:
        from minicpm_tui.core.monitor import fmt_seconds

        status = Text(f"{snap.status}", style="bold reverse")
        status.append(f"  {snap.phase}", style="bold")
        if snap.resumed_from is not None:
            status.append(f"  resumed from step {snap.resumed_from}")
        if snap.exit_code is not None:
            status.append(f"  exit {snap.exit_code}")
        self.query_one("#mon-phase", Static).update(status)
        note = self.query_one("#mon-note", Static)
        note.update(Text(snap.note_tui or snap.note, style="italic"))
        note.set_class(not snap.note, "-none")
        bar = self.query_one("#mon-progress", ProgressBar)
        if snap.total_steps:
            bar.update(total=snap.total_steps, progress=snap.step or 0)
        metrics = Text()
        if snap.total_steps:
            metrics.append(f"step {snap.step or 0}/{snap.total_steps}  ", style="bold")
        # The run's own duration (start to end), not the trainer's clock: that one starts at the first
        # step, and a smoke run's few steps read 0:00:00. An ended run has no ETA.
        elapsed = snap.wall_s if snap.wall_s is not None else snap.elapsed_s
        metrics.append(f"elapsed {fmt_seconds(elapsed)}")
        if not snap.ended:
            metrics.append(f"  eta {fmt_seconds(snap.remaining_s)}")
        if snap.throughput is not None:
            metrics.append(f"  {snap.throughput:,.0f} tok/s")
        if snap.epoch is not None:
            metrics.append(f"  epoch {snap.epoch:.2f}")
        if snap.vram_allocated_gib:
            metrics.append(f"  vram {snap.vram_allocated_gib:.1f}G")
        self.query_one("#mon-metrics", Static).update(metrics)
        losses = [v for _, v in snap.losses]
        self.query_one("#mon-loss", Sparkline).data = losses[-200:]
        label = f"loss {snap.loss:.4f}" if snap.loss is not None else "loss -"
        if snap.eval_loss is not None:
            label += f" ev {snap.eval_loss:.3f}"
        self.query_one("#mon-loss-label", Label).update(label)
        self.query_one("#mon-lr", Sparkline).data = [v for _, v in snap.lrs][-200:]
        self.query_one("#mon-lr-label", Label).update(f"lr {snap.lr:.2e}" if snap.lr is not None else "lr -")
        diag = self.query_one("#mon-diag", Static)
        if snap.diagnosis is not None:
            diag.update(Text(f"{snap.diagnosis.summary}\nfix: {snap.diagnosis.fix}", style="bold"))
            diag.remove_class("-none")
        else:
            diag.add_class("-none")
        self.show_log(list(snap.log_tail))

    def show_log(self, tail: list[str]) -> None:
        """Append what is new since the last poll (the tail is a sliding window)."""
        log = self.query_one("#mon-log", Log)
        seen = self._log_seen
        overlap = 0
        for k in range(min(len(seen), len(tail)), 0, -1):
            if seen[-k:] == tail[:k]:
                overlap = k
                break
        new = tail[overlap:]
        if new:
            log.write_lines(new)
        self._log_seen = tail

    def show_gpus(self, sample: Any) -> None:
        target = self.query_one("#mon-gpus", Static)
        if sample is None or not sample.ok:
            # "no GPU data (no_library: no NVIDIA driver library (...) here; on a GPU box ...)": the
            # reason, in one line ("GPUs: no NVIDIA driver library (libnvidia-ml.so) here").
            message = getattr(sample, "message", "") or "no GPU data"
            reason = message.split(" (", 1)[1] if " (" in message else message
            reason = reason.split("; ")[0].split(": ", 1)[-1]
            if reason.count(")") > reason.count("("):
                reason = reason[:-1]  # the closing parenthesis of "no GPU data (...)"
            target.update(Text(f"GPUs: {reason}"[:78], style="dim"))
            return
        text = Text()
        for g in sample.gpus[:8]:
            if g.error:
                text.append(f"gpu{g.index} {g.error}\n", style="bold")
                continue
            hist = self.sampler.series(g.index, "utilization_pct") if self.sampler else []
            spark = _mini_spark(hist[-20:])
            util = "?" if g.utilization_pct is None else f"{g.utilization_pct:3.0f}%"
            mem = ("?" if g.memory_used_mib is None or not g.memory_total_mib
                   else f"{g.memory_used_mib / 1024:5.1f}/{g.memory_total_mib / 1024:.0f}G")
            text.append(f"gpu{g.index} {util} {spark:<20} {mem}")
            if g.temperature_c is not None:
                text.append(f" {g.temperature_c:.0f}C")
            if g.power_w is not None:
                text.append(f" {g.power_w:.0f}W")
            text.append("\n")
        target.update(text)

    # -- actions ------------------------------------------------------------------
    def live(self) -> bool:
        from minicpm_tui.core.runner import LIVE

        return self.snap is not None and self.snap.status in LIVE

    def live_run_dir(self) -> Path | None:
        return self.run_dir if self.live() else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.live()
        if action == "back":
            return not self.standalone  # `minicpm-tui monitor DIR`: Esc does not quit, d does
        return True

    def why_not(self, action: str) -> str:
        if action == "stop":
            return "the run is not running"
        if action == "back":
            return "the monitor was opened on its own: d leaves"
        return ""

    def action_refresh(self) -> None:
        self.poll()

    def action_detach(self) -> None:
        if self.standalone:
            self.app.exit(0)
        else:
            self.app.pop_screen()

    def action_back(self) -> None:
        if not self.standalone:
            self.app.pop_screen()

    def action_stop(self) -> None:
        if not self.live():
            return
        from minicpm_tui.tui.screens.confirm import ConfirmScreen

        def answer(yes: bool | None) -> None:
            if yes:
                stop_run_worker(self.app, self.run_dir)

        self.app.push_screen(ConfirmScreen(f"Stop the run in {self.run_dir.name}? It finishes the current step "
                                           "and saves where it can, then its processes are ended.",
                                           yes="Stop run", no="Keep running", danger=True), answer)

    def palette_commands(self):
        from textual.app import SystemCommand

        yield SystemCommand("monitor: detach", "Leave; training keeps running", self.action_detach)
        if self.live():
            yield SystemCommand("run: stop", "Stop this run (asks first)", self.action_stop)


def _mini_spark(values: list[float]) -> str:
    """A one-line history for a 0-100 series (Textual's Sparkline needs its own row)."""
    blocks = " ▁▂▃▄▅▆▇█"
    return "".join(blocks[min(8, max(0, round((v or 0) / 100 * 8)))] for v in values)
