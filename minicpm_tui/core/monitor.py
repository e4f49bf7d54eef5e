"""The monitor's data layer: follow a run's trainer_log.jsonl and logs incrementally, as typed snapshots.

Cheap enough to leave open for days: each poll reads only the bytes appended since the last one (by
offset, restarting on truncation or a replaced file, holding back a half-written last line), keeps
bounded histories, and never re-reads a whole log. The UI (plain or Textual) only formats snapshots.

Phases are recognised from the lines LLaMA-Factory, transformers and tqdm really print (see
tests/fixtures/logs/sft_lora.*, captured from a real run): starting -> tokenizing -> loading model ->
training (step x/y, ETA) <-> evaluating / saving -> done (or failed / stopped).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from minicpm_tui.core import runner
from minicpm_tui.core.diagnose import Diagnosis, diagnose, read_tail
from minicpm_tui.core.errors import UserError

PHASES = ("starting", "tokenizing", "loading model", "training", "evaluating", "saving", "done", "failed",
          "stopped", "ended")
_FINAL_PHASES = ("done", "failed", "stopped", "ended")
HISTORY = 2000  # points kept per metric series (sparklines); older ones are dropped
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MAX_LINE = 64 * 1024  # a runaway line without newline is cut, not buffered forever


class TextFollower:
    """Reads what was appended to a file since the last call; survives truncation and replacement.

    ``split`` bytes end a record (``b"\\n"`` for JSONL; ``\\r`` too for logs, since tqdm redraws with it).
    An unterminated last record is held back until its end arrives.
    """

    def __init__(self, path: str | os.PathLike[str], *, carriage_returns: bool = False,
                 chunk: int = 1 << 20) -> None:
        self.path = Path(path)
        self.offset = 0
        self.inode: int | None = None
        self._partial = b""
        self._cr = carriage_returns
        self._chunk = chunk
        self.resets = 0

    def start_at(self, offset: int) -> None:
        """Read on from ``offset`` of the file as it is now (earlier bytes are not wanted)."""
        try:
            self.inode = os.stat(self.path).st_ino
        except OSError:
            self.inode = None
        self.offset, self._partial = offset, b""

    def read_lines(self) -> list[str]:
        try:
            st = os.stat(self.path)
        except OSError:
            return []
        if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
            # Replaced (new inode) or truncated: start over from the top.
            self.offset, self._partial = 0, b""
            self.resets += 1
        self.inode = st.st_ino
        if st.st_size == self.offset:
            return []
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(min(self._chunk, st.st_size - self.offset))
        except OSError:
            return []
        self.offset += len(data)
        data = self._partial + data
        if self._cr:
            data = data.replace(b"\r", b"\n")
        parts = data.split(b"\n")
        self._partial = parts.pop()
        if len(self._partial) > _MAX_LINE:
            parts.append(self._partial)
            self._partial = b""
        return [p.decode("utf-8", "replace") for p in parts]


@dataclass
class RunSnapshot:
    """Everything the monitor shows about a run at one instant."""

    run_dir: str
    status: str = "never"  # runner.STATUSES
    phase: str = "starting"
    phases_seen: list[str] = field(default_factory=list)  # first occurrence order
    step: int | None = None
    total_steps: int | None = None
    percent: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    accuracy: float | None = None  # DPO rewards/accuracies
    reward: float | None = None
    lr: float | None = None
    epoch: float | None = None
    throughput: float | None = None  # tokens/s
    total_tokens: int | None = None
    elapsed_s: float | None = None
    remaining_s: float | None = None
    vram_allocated_gib: float | None = None
    vram_reserved_gib: float | None = None
    last_checkpoint: str | None = None
    exit_code: int | None = None
    pid: int | None = None
    pgid: int | None = None
    host: str | None = None
    attempt: int = 0
    how: str = ""
    # The checkpoint's step this attempt goes on from: `run --resume`, or a run by hand that LLaMA-Factory
    # resumed by itself (overwrite_output_dir false and a checkpoint-N in output_dir); None for a fresh start.
    resumed_from: int | None = None
    output_dir: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    lrs: list[tuple[int, float]] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)
    diagnosis: Diagnosis | None = None
    note: str = ""
    note_tui: str = ""  # the note in the TUI's words (runner.RunInfo.note_tui), "" when it is the same
    time: float = 0.0

    @property
    def ended(self) -> bool:
        return self.status in runner.ENDED

    @property
    def wall_s(self) -> float | None:
        """How long this attempt has run, or ran: start to end (or to this poll while it runs), from the
        runner's record. ``elapsed_s`` is the trainer's own clock, which starts at the first step and
        reads 0:00:00 for a smoke run of a few steps; None when the start (or the end) is not known."""
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended else (self.time or None)
        return max(0.0, end - self.started_at) if end is not None else None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "diagnosis"}
        data["losses"] = [list(p) for p in self.losses]
        data["eval_losses"] = [list(p) for p in self.eval_losses]
        data["lrs"] = [list(p) for p in self.lrs]
        data["diagnosis"] = self.diagnosis.to_dict() if self.diagnosis else None
        data["ended"] = self.ended
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# What trainer_log.jsonl feeds: RunSnapshot's fields from ``step`` to ``vram_reserved_gib``, in its order.
_SNAPSHOT_FIELDS = [f.name for f in fields(RunSnapshot)]
_METRIC_FIELDS = tuple(_SNAPSHOT_FIELDS[_SNAPSHOT_FIELDS.index("step"):_SNAPSHOT_FIELDS.index("vram_reserved_gib") + 1])


parse_hms = runner.parse_hms  # "1 day, 2:03:04" / "0:00:12" -> seconds


# Phase markers: (phase, pattern). Checked per log line; the first match wins.
_PHASE_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("tokenizing", re.compile(r"llamafactory\.data\.loader.*Loading dataset|Running tokenizer on dataset|"
                              r"Converting format of dataset|Generating train split")),
    ("loading model", re.compile(r"loading weights file|Loading checkpoint shards|^Loading weights:|"
                                 r"llamafactory\.model\.loader.*trainable params")),
    ("training", re.compile(r"\*\*\*\*\* Running training \*\*\*\*\*")),
    ("evaluating", re.compile(r"\*\*\*\*\* Running Evaluation \*\*\*\*\*")),
    ("saving", re.compile(r"Saving model checkpoint to|saved in \S*checkpoint-\d+|Training completed")),
]
_TOTAL = re.compile(r"Total optimization steps = ([\d,]+)")
_CKPT = re.compile(r"(checkpoint-\d+)")
# tqdm's training bar has no description: "100%|████| 6/6 [00:02<00:00,  2.91it/s]"
_BAR = re.compile(r"^\s*\d+%\|[^|]*\|\s*(\d+)/(\d+) \[([\d:]+)<([\d:?]+)")
_RESUME = re.compile(r"Resuming training from")


class LogPhases:
    """Phases, total steps and the per-step progress bar, from the log lines LLaMA-Factory, transformers and tqdm
    print, into a :class:`RunSnapshot`. The monitor's follower is one; the smoke run feeds its log to another."""

    def __init__(self, snapshot: RunSnapshot, *, tail_lines: int = 40) -> None:
        self.snapshot = snapshot
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._phase_step = 0
        self._completed = False

    def feed(self, line: str) -> None:
        """One log line (tqdm's redraws split at ``\\r``, as :class:`TextFollower` reads them)."""
        self._on_log_line(line)

    def _set_phase(self, phase: str) -> None:
        snap = self.snapshot
        if snap.phase in _FINAL_PHASES and phase not in _FINAL_PHASES:
            return
        if phase != snap.phase:
            self._phase_step = snap.step or 0
        snap.phase = phase
        if phase not in snap.phases_seen:
            snap.phases_seen.append(phase)

    def _on_log_line(self, raw: str) -> None:
        line = _ANSI.sub("", raw).rstrip()
        if not line.strip():
            return
        snap = self.snapshot
        bar = _BAR.match(line)
        if bar:
            cur, total = int(bar.group(1)), int(bar.group(2))
            # The training bar counts optimizer steps; the evaluation bar counts eval batches.
            training_bar = bool(snap.total_steps) and total == snap.total_steps and snap.phase in (
                "training", "saving", "evaluating")
            if training_bar and (snap.step is None or cur >= snap.step):
                if snap.phase != "training" and not self._completed and (snap.step is None or cur > snap.step):
                    self._set_phase("training")
                snap.step = cur
                snap.percent = round(100.0 * cur / total, 2)
                snap.elapsed_s = parse_hms(bar.group(3))
                snap.remaining_s = parse_hms(bar.group(4)) if "?" not in bar.group(4) else None
            return  # progress bars do not go into the tail
        self._tail.append(line[:500])
        total = _TOTAL.search(line)
        if total:
            snap.total_steps = int(total.group(1).replace(",", ""))
        if _RESUME.search(line):
            snap.note, snap.note_tui = line.split(">>")[-1].strip(), ""
        if "Training completed" in line:
            self._completed = True
        for phase, pattern in _PHASE_RULES:
            if pattern.search(line):
                if phase == "saving":
                    ck = _CKPT.search(line)
                    if ck:
                        snap.last_checkpoint = ck.group(1)
                if phase == "loading model" and snap.phase in ("training", "evaluating", "saving"):
                    break  # saving re-reads config files; not a new model load
                self._set_phase(phase)
                break


class RunFollower(LogPhases):
    """Incremental view of one run directory: ``poll()`` returns a fresh :class:`RunSnapshot`.

    Status and exit code come from the runner (manifest, lock, processes); metrics from
    ``trainer_log.jsonl``; phases, total steps and the per-step progress bar from the logs of the
    current attempt (or, for a run started by hand, from whatever the monitor can see).
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, tail_lines: int = 40,
                 status_every: float = 1.0) -> None:
        self.run_dir = Path(run_dir).expanduser().resolve()
        super().__init__(RunSnapshot(run_dir=str(self.run_dir)), tail_lines=tail_lines)
        self._losses: deque[tuple[int, float]] = deque(maxlen=HISTORY)
        self._eval: deque[tuple[int, float]] = deque(maxlen=HISTORY)
        self._lrs: deque[tuple[int, float]] = deque(maxlen=HISTORY)
        self._jsonl: TextFollower | None = None
        self._logs: list[TextFollower] = []
        self._attempt: int | None = None
        self._status_every = status_every
        self._status_at = 0.0
        self._info: runner.RunInfo | None = None
        self._bar_seen_at = 0.0
        self._diagnosed = False
        self._resume_step: int | None = None  # the checkpoint's step, for a resumed attempt
        self._hand_start: int | None = None  # a run by hand's first trainer_log.jsonl byte, until its first row

    # -- wiring ----------------------------------------------------------
    def _attach(self) -> None:
        info = self._info
        try:
            manifest = runner.RunManifest.load(self.run_dir)
        except UserError:
            manifest = None  # damaged: the runner found the run's processes without it (info.logs)
        hand = info is not None and info.how == "by hand"
        if hand:
            # Started by hand (maybe after a launched attempt): none of the manifest's attempts is this run.
            attempt: Any = ("by hand", info.pid)
        else:
            attempt = manifest.current.get("attempt") if manifest and manifest.attempts else 0
        # A run by hand writes where train.yaml says, which the runner tells (a smoke attempt wrote elsewhere).
        out_dir = info.output_dir if hand else runner.output_dir_of(self.run_dir)
        if out_dir is not None and (self._jsonl is None or self._jsonl.path != out_dir / runner.TRAINER_LOG):
            self._jsonl = TextFollower(out_dir / runner.TRAINER_LOG)
            self.snapshot.output_dir = str(out_dir)
        if attempt != self._attempt:
            # A new attempt: its own log files; phases start over, metrics are its own (curves: see below).
            self._attempt = attempt
            self._logs = []
            current = manifest.current if manifest is not None and not hand else {}
            self._resume_step = None
            self._hand_start = None
            if self._jsonl is not None and current:
                # Progress is this attempt's lines only: on a fresh start an earlier training's lines precede them
                # in trainer_log.jsonl; on a resume, the attempt it resumes, whose steps past the checkpoint it logs
                # again (LogCallback appends, at the trainer's global step, with its clock restarted).
                path = self._jsonl.path
                start = runner.trainer_log_start(path, current.get("trainer_log_from"))
                self._reset_metrics()
                if current.get("resume"):
                    # The curves go on from the training it resumes, up to its checkpoint.
                    self._resume_step = current.get("resume_step")
                    for row in runner.trainer_log_rows(path, _resumed_from(path, manifest.attempts), start):
                        self._on_metrics_row(row, series_only=True)
                    if self._resume_step is not None:
                        self._cut_series(self._resume_step)
                self.snapshot.resumed_from = self._resume_step
                self._jsonl.start_at(start)
            elif self._jsonl is not None and hand and info is not None:
                # A run by hand has no mark: its lines are the newest run's in trainer_log.jsonl (LLaMA-Factory
                # appends after an earlier training's), and none at all while the file predates its start.
                path = self._jsonl.path
                try:
                    st = os.stat(path)
                    older = info.started_at is not None and st.st_mtime < info.started_at - 1
                except OSError:
                    st, older = None, False
                self._hand_start = st.st_size if st is not None and older else runner.newest_run_start(path)
                self._jsonl.start_at(self._hand_start)
                self._reset_metrics()
                self.snapshot.resumed_from = None  # told by its first line (see _hand_resumed)
            if current:
                for path in (manifest.stderr_log, manifest.stdout_log):
                    if path is not None:
                        self._logs.append(TextFollower(path, carriage_returns=True))
            self._completed = False
            if self.snapshot.phases_seen:
                self.snapshot.phase = "starting"
                self.snapshot.phases_seen = ["starting"]
            self._diagnosed = False
            self.snapshot.diagnosis = None
        if (hand or manifest is None) and not self._logs and info is not None:
            # Started by hand with its output redirected to files, or found without its manifest: those are
            # its logs.
            self._logs = [TextFollower(path, carriage_returns=True) for path in info.logs]

    def _reset_metrics(self) -> None:
        for name in _METRIC_FIELDS:
            setattr(self.snapshot, name, None)
        for history in (self._losses, self._eval, self._lrs):
            history.clear()

    def _cut_series(self, step: int) -> None:
        """Drop the points past ``step`` (a resume's checkpoint: the steps after it are trained again)."""
        for history in (self._losses, self._eval, self._lrs):
            while history and history[-1][0] > step:
                history.pop()

    # -- polling ---------------------------------------------------------
    def poll(self) -> RunSnapshot:
        now = time.time()
        snap = self.snapshot
        if self._info is None or now - self._status_at >= self._status_every:
            self._info = runner.run_status(self.run_dir)
            self._status_at = now
            self._attach()
        info = self._info
        snap.status, snap.exit_code, snap.pid, snap.pgid = info.status, info.exit_code, info.pid, info.pgid
        snap.host, snap.attempt, snap.how, snap.note = info.host, info.attempt, info.how, info.note
        snap.note_tui = info.note_tui
        snap.started_at, snap.ended_at = info.started_at, info.ended_at
        if not snap.phases_seen:
            snap.phases_seen.append("starting")
        for follower in self._logs:
            for line in follower.read_lines():
                self._on_log_line(line)
        if self._jsonl is not None:
            for line in self._jsonl.read_lines():
                self._on_metrics_line(line)
        if snap.status == "finished":
            self._set_phase("done")
        elif snap.status in ("failed", "died"):
            self._set_phase("failed")
            if not self._diagnosed:
                self._diagnosed = True
                text = "\n".join(read_tail(f.path) for f in self._logs)
                snap.diagnosis = diagnose(text, snap.exit_code, run_dir=self.run_dir)
        elif snap.status in ("stopped", "ended"):
            # "ended": a run by hand that nobody watched, gone without results; how it ended is not known.
            self._set_phase(snap.status)
        snap.losses = list(self._losses)
        snap.eval_losses = list(self._eval)
        snap.lrs = list(self._lrs)
        snap.log_tail = list(self._tail)
        snap.time = now
        return snap

    def follow(self, interval: float = 2.0, *, until_end: bool = True) -> Iterator[RunSnapshot]:
        """Yield a snapshot every ``interval`` seconds; stop after the run has ended."""
        while True:
            snap = self.poll()
            yield snap
            if until_end and snap.ended:
                return
            time.sleep(interval)

    # -- parsing ---------------------------------------------------------
    def _on_metrics_line(self, line: str) -> None:
        try:
            data = json.loads(line)
        except ValueError:
            return  # a torn or foreign line: skip it, the next one will do
        if isinstance(data, dict):
            self._on_metrics_row(data)

    def _add_points(self, step: int, data: dict[str, Any]) -> None:
        """One line's points, each step once with its newest value: a line at step N is newer than every point
        past N (a resumed or restarted training logs those steps again), and than its own series' point at N."""
        values = [(history, data.get(key)) for history, key in
                  ((self._losses, "loss"), (self._eval, "eval_loss"), (self._lrs, "lr"))]
        values = [(history, float(v) if isinstance(v, (int, float)) else None) for history, v in values]
        if all(value is None for _, value in values):
            return  # the end-of-training or a prediction line: no points, nothing it replaces
        for history, value in values:
            while history and (history[-1][0] > step or (value is not None and history[-1][0] == step)):
                history.pop()
            if value is not None:
                history.append((step, value))

    def _on_metrics_row(self, data: dict[str, Any], series_only: bool = False) -> None:
        step = data.get("current_steps")
        if series_only:
            if isinstance(step, int):
                self._add_points(step, data)
            return
        snap = self.snapshot
        if isinstance(step, int):
            if self._hand_start is not None:
                self._hand_resumed(self._hand_start, step)
                self._hand_start = None
            snap.step = step
        if isinstance(data.get("total_steps"), int) and data["total_steps"] > 0:
            snap.total_steps = data["total_steps"]
        if isinstance(data.get("percentage"), (int, float)):
            snap.percent = float(data["percentage"])
        for key, attr in (("loss", "loss"), ("eval_loss", "eval_loss"), ("accuracy", "accuracy"),
                          ("reward", "reward"), ("lr", "lr"), ("epoch", "epoch"),
                          ("throughput", "throughput"), ("total_tokens", "total_tokens"),
                          ("vram_allocated", "vram_allocated_gib"), ("vram_reserved", "vram_reserved_gib")):
            value = data.get(key)
            if isinstance(value, (int, float)):
                if attr.startswith("vram"):
                    # Peaks so far; + 0.0 turns the -0.0 LLaMA-Factory logs without a GPU into 0.0.
                    value = max(value, getattr(snap, attr) or 0.0) + 0.0
                setattr(snap, attr, value)
        if isinstance(step, int):
            self._add_points(step, data)
        # trainer_log.jsonl is written by a background thread and lags the log: only a step beyond the one
        # where evaluation/saving began means training resumed.
        if isinstance(step, int) and isinstance(data.get("loss"), (int, float)) and (
                snap.phase in ("loading model", "tokenizing", "starting") or (
                    snap.phase in ("evaluating", "saving") and step > self._phase_step and not self._completed)):
            self._set_phase("training")
        for key, attr in (("elapsed_time", "elapsed_s"), ("remaining_time", "remaining_s")):
            seconds = parse_hms(data.get(key))
            if seconds is not None:
                setattr(snap, attr, seconds)
        done = None if self._resume_step is None or not isinstance(step, int) else step - self._resume_step
        if done and done > 0 and snap.elapsed_s is not None and snap.total_steps and "remaining_time" in data:
            # LogCallback's estimate divides the time since this attempt began by all the steps, those before
            # the checkpoint included: from this attempt's own steps instead.
            snap.remaining_s = max(0, snap.total_steps - step) * snap.elapsed_s / done

    def _hand_resumed(self, start: int, step: int) -> None:
        """A run by hand whose first trainer_log.jsonl line is at ``step``: resumed by LLaMA-Factory itself when
        train.yaml keeps overwrite_output_dir false and a checkpoint below that step is there (it continues from
        the last checkpoint by itself; a fresh start logs from step 1). Then, as for `run --resume`: the curves go
        on from the lines above it, up to the checkpoint, and the ETA counts this run's own steps."""
        from minicpm_tui.core.rundir import read_train_yaml

        out_dir = Path(self.snapshot.output_dir) if self.snapshot.output_dir else None
        cfg = read_train_yaml(self.run_dir)
        if out_dir is None or self._jsonl is None or cfg.get("overwrite_output_dir") or step <= 1:
            return
        resumed = runner.resume_step(self.run_dir, cfg, out_dir, before=step)
        if resumed is None or resumed >= step:
            return
        self._resume_step = self.snapshot.resumed_from = resumed
        for row in runner.trainer_log_rows(self._jsonl.path, 0, start):
            self._on_metrics_row(row, series_only=True)
        self._cut_series(resumed)


def _resumed_from(path: Path, attempts: list[dict[str, Any]]) -> int:
    """Where the training a resumed attempt goes on from begins in trainer_log.jsonl: the mark of the fresh
    launch (with the same train.yaml) its chain of resumes goes back to; else the file's top, where a new
    training's first step drops whatever came before it (see _add_points)."""
    yaml = attempts[-1].get("train_yaml")
    for attempt in reversed(attempts[:-1]):
        if attempt.get("train_yaml") != yaml:
            break
        if not attempt.get("resume"):
            return runner.trainer_log_start(path, attempt.get("trainer_log_from"))
    return 0


def snapshot(run_dir: str | os.PathLike[str]) -> RunSnapshot:
    """One complete snapshot (reads the logs from the start once)."""
    return RunFollower(run_dir).poll()


# -- formatting shared by the plain monitor and others ------------------------------------------------
def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def status_line(snap: RunSnapshot) -> str:
    """A compact one-line status for terminals, logs and `watch`."""
    parts = [f"{snap.status:<8}", f"{snap.phase:<13}"]
    if snap.total_steps:
        step = snap.step or 0
        parts.append(f"step {step}/{snap.total_steps} ({100 * step / snap.total_steps:.0f}%)")
    if snap.loss is not None:
        parts.append(f"loss {snap.loss:.4f}")
    if snap.eval_loss is not None:
        parts.append(f"eval {snap.eval_loss:.4f}")
    if snap.accuracy is not None:
        parts.append(f"acc {snap.accuracy:.2f}")
    if snap.lr is not None:
        parts.append(f"lr {snap.lr:.2e}")
    if snap.epoch is not None:
        parts.append(f"ep {snap.epoch:.2f}")
    if snap.throughput is not None:
        parts.append(f"{snap.throughput:.0f} tok/s")
    if snap.status in runner.LIVE and snap.remaining_s is not None:
        parts.append(f"eta {fmt_seconds(snap.remaining_s)}")
    if snap.vram_allocated_gib:
        parts.append(f"vram {snap.vram_allocated_gib:.1f}/{snap.vram_reserved_gib or 0:.1f}G")
    if snap.exit_code is not None and snap.ended:
        parts.append(f"exit {snap.exit_code}")
    return "  ".join(parts)
