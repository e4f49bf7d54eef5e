"""Launch a run directory detached, keep its manifest, list runs, stop them.

Why detached, and how: LLaMA-Factory's web UI stalls when the browser goes, and ``nohup`` is not enough
over SSH because torchrun forwards SIGHUP to every worker. So ``launch`` starts a small supervisor
(``_resources/run_supervisor.py``) in a new session: it has no controlling terminal, so no hang-up can
reach it, and it starts ``single_node.sh`` in its own process group with stdout/stderr going to files in
``RUN_DIR/logs``. The supervisor records pid, process group and, at the end, the exit code in
``RUN_DIR/run_manifest.json``, however long the launcher has been gone.

``stop`` asks the training processes to finish the current step and save (LLaMA-Factory's own abort
signal, which it honours when LLAMABOARD_ENABLED is set, as ``launch`` does), then escalates to
SIGTERM and SIGKILL on the whole process group so that no orphan worker keeps a GPU.

The registry of runs is one small JSON file per run directory under ``paths.state_dir()/runs``. A run
directory moved while it runs is found again through its processes (their working directory moves
along, and so do the log files their stdout and stderr go to) and re-registered; the supervisor moves the
entry along too when the attempt ends. One moved to another filesystem (copied, then deleted) leaves nothing
that leads to the copy: ``runs`` says the old path is gone, and registering the copy forgets the old entry
when the copy's manifest holds its launch (the run tag). A run whose manifest is damaged is found through
its processes too: ``stop`` stops it, ``runs`` and the monitor show it running; nothing writes over the
damaged file.

A run started by hand (``bash single_node.sh``) has no manifest: it is known from its processes, and
``logs/by_hand.json`` keeps what was seen of the latest one, so that its end is not taken for "never"; the
first look after it ended records that end (``_note_hand_end``), so a later run that nobody saw is told apart.
One started in a folder whose recorded attempt has ended is found the same way (by its processes that no
launch tagged) and shown instead of that attempt while it is the later of the two. One that started and
ended while nothing looked is known from what it left in output_dir (newer than the folder's generate and
the attempt): how far it got and when, ``finished`` when LLaMA-Factory wrote its final results for all steps,
else ``ended`` (outcome unknown). Its progress is read from its own lines of trainer_log.jsonl only
(``newest_run_start``): LLaMA-Factory appends there after an earlier training's lines.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minicpm_tui.core.atomic import write_atomic
from minicpm_tui.core.errors import UserError, os_error
from minicpm_tui.core.paths import absolute_path, missing, resolved, state_dir, symlink_loop
from minicpm_tui.core.resources import resource_script
from minicpm_tui.core.rundir import read_train_yaml as _train_yaml

MANIFEST = "run_manifest.json"
LAUNCH_SCRIPT = "single_node.sh"
TRAINER_LOG = "trainer_log.jsonl"
LIVE = ("starting", "running")
# "ended": a run started by hand that nobody watched, gone without final results: only its files tell that it
# ran (how far, and when), not how it ended.
STATUSES = ("starting", "running", "finished", "failed", "stopped", "died", "ended", "unknown", "never")
ENDED = ("finished", "failed", "stopped", "died", "ended")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# A recorded start this far in the future still reads "0s" (another host's clock, a small step); further
# ahead, the wall clock has stepped back and the age is not known from it.
CLOCK_SLACK_S = 60.0


# --------------------------------------------------------------------------------------------------
# The manifest
# --------------------------------------------------------------------------------------------------
@dataclass
class RunManifest:
    """``RUN_DIR/run_manifest.json``: the run and the history of its attempts (one per launch)."""

    run_dir: Path
    output_dir: Path | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # from the latest launch; not persisted

    @property
    def current(self) -> dict[str, Any]:
        return self.attempts[-1] if self.attempts else {}

    def _get(self, key: str) -> Any:
        return self.current.get(key)

    status = property(lambda self: self._get("status") or "never")
    exit_code = property(lambda self: self._get("exit_code"))
    pid = property(lambda self: self._get("pid"))
    pgid = property(lambda self: self._get("pgid"))
    host = property(lambda self: self._get("host"))
    started_at = property(lambda self: self._get("started_at"))
    ended_at = property(lambda self: self._get("ended_at"))
    command = property(lambda self: self._get("command"))

    @property
    def stdout_log(self) -> Path | None:
        value = self._get("stdout")
        return Path(value) if value else None

    @property
    def stderr_log(self) -> Path | None:
        value = self._get("stderr")
        return Path(value) if value else None

    def to_dict(self) -> dict[str, Any]:
        cur = self.current
        data: dict[str, Any] = {"version": 1, "run_dir": str(self.run_dir),
                                "output_dir": str(self.output_dir) if self.output_dir else None,
                                "attempts": self.attempts}
        # The current attempt's essentials at the top, for people and scripts reading the file.
        data.update({k: cur.get(k) for k in ("status", "exit_code", "pid", "pgid", "started_at", "ended_at",
                                             "host", "command")})
        return data

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> RunManifest | None:
        run_dir = Path(run_dir).resolve()
        path = run_dir / MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the run manifest: {exc}", where=str(path), fix=_MANIFEST_FIX) from exc
        _check_manifest(data, path)
        attempts = list(data.get("attempts") or [])
        out = data.get("output_dir")
        recorded = data.get("run_dir")
        if isinstance(recorded, str) and recorded != str(run_dir):
            # The run directory was moved or copied: paths recorded inside it now live here.
            def here(value: Any) -> Any:
                if isinstance(value, str) and (value == recorded or value.startswith(recorded + os.sep)):
                    return str(run_dir) + value[len(recorded):]
                return value

            out = here(out)
            attempts = [{**a, "stdout": here(a.get("stdout")), "stderr": here(a.get("stderr"))} for a in attempts]
        return cls(run_dir=run_dir, output_dir=Path(out) if out else None, attempts=attempts)

    def save(self) -> None:
        write_atomic(self.run_dir / MANIFEST, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


_MANIFEST_FIX = "restore it from a backup or delete it (the run's history is lost)"
# The types each attempt's fields must have (None is always allowed): everything else trusts them.
_ATTEMPT_TYPES: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("attempt", "pid", "pgid", "supervisor_pid", "exit_code", "pid_start_ticks", "resume_step"),
                    (int,)),
    **dict.fromkeys(("started_at", "ended_at", "started_boottime", "stop_requested_at"), (int, float)),
    **dict.fromkeys(("status", "host", "cwd", "run_tag", "stdout", "stderr", "train_yaml", "boot_id", "user",
                     "error"), (str,)),
    **dict.fromkeys(("command", "env_keys", "warnings"), (list,)),
}


_KIND_NAMES = {(int,): "an integer", (int, float): "a number", (str,): "a string", (list,): "a list"}


def _check_manifest(data: Any, path: Path) -> None:
    """A UserError naming the first damaged part of a parsed manifest (hand-edited, or another tool's file)."""
    def damaged(where: str, value: Any, kind: str) -> UserError:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return UserError(f"the run manifest is damaged: {shown} is not {kind}",
                         where=f"{path}: {where}" if where else str(path), fix=_MANIFEST_FIX)

    if not isinstance(data, dict):
        raise damaged("", data, "a JSON object")
    for key in ("run_dir", "output_dir"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise damaged(key, data[key], "a path")
    attempts = data.get("attempts")
    if attempts is not None and not isinstance(attempts, list):
        raise damaged("attempts", attempts, "a list")
    for index, attempt in enumerate(attempts or []):
        if not isinstance(attempt, dict):
            raise damaged(f"attempts[{index}]", attempt, "an object")
        for key, types in _ATTEMPT_TYPES.items():
            value = attempt.get(key)
            if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
                raise damaged(f"attempts[{index}].{key}", value, _KIND_NAMES[types])


class _ManifestLock:
    """The lock the supervisor also takes for its read-modify-write of the manifest."""

    def __init__(self, run_dir: Path) -> None:
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "logs" / ".manifest.lock"

    def __enter__(self) -> _ManifestLock:
        self.handle = open(self.path, "a")  # noqa: SIM115
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _update_current(run_dir: Path, changes: dict[str, Any]) -> RunManifest | None:
    with _ManifestLock(run_dir):
        manifest = RunManifest.load(run_dir)
        if manifest is None or not manifest.attempts:
            return manifest
        manifest.attempts[-1].update(changes)
        manifest.save()
        return manifest


# --------------------------------------------------------------------------------------------------
# Processes (Linux /proc)
# --------------------------------------------------------------------------------------------------
@dataclass
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    start_ticks: int
    name: str
    cmdline: list[str]


def proc_info(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            raw = handle.read()
        name = raw[raw.index("(") + 1: raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return None  # a zombie holds no resources and does no work
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmd = [part.decode("utf-8", "replace") for part in handle.read().split(b"\0") if part]
        return ProcInfo(pid, int(fields[1]), int(fields[2]), int(fields[19]), name, cmd)
    except (OSError, ValueError, IndexError):
        return None


def all_procs() -> list[ProcInfo]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = proc_info(int(entry))
            if info is not None:
                out.append(info)
    return out


def group_pids(pgid: int | None) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    if not pgid:
        return []
    return [p.pid for p in all_procs() if p.pgid == pgid]


RUN_TAG_ENV = "MINICPM_TUI_RUN"  # set for every process of a launched attempt; inherited by all of them


def _descendants(procs: list[ProcInfo], roots: set[int]) -> set[int]:
    members = set(roots)
    changed = True
    while changed:
        changed = False
        for p in procs:
            if p.ppid in members and p.pid not in members:
                members.add(p.pid)
                changed = True
    return members


def processes_of(pgid: int | None, tag: str | None = None, *, exclude: Iterable[int] = ()) -> list[ProcInfo]:
    """Every live process of a run: its launch process group, their descendants, and whatever carries the
    run's tag in its environment.

    The tag matters because torchrun starts each worker in a session of its own (torch's elastic
    SubprocessHandler uses start_new_session), so workers are outside the launch group, and a worker
    whose torchrun died is re-parented away from the tree: only the inherited environment still says
    whose it is.
    """
    procs = all_procs()
    skip = set(exclude) | {os.getpid()}
    roots = {p.pid for p in procs if pgid and p.pgid == pgid}
    members = _descendants(procs, roots)
    if tag:
        for p in procs:
            if p.pid not in members and p.pid not in skip and _run_tag_of(p.pid) == tag:
                members.add(p.pid)
        members = _descendants(procs, members)
    return [p for p in procs if p.pid in members and p.pid not in skip]


def _attempt_procs(cur: dict[str, Any]) -> list[ProcInfo]:
    sup = cur.get("supervisor_pid")
    return processes_of(cur.get("pgid"), cur.get("run_tag"), exclude=[sup] if sup else [])


def run_pids(run_dir: str | os.PathLike[str]) -> list[int]:
    """Pids of a live run's processes (launch group, torchrun workers, their children): for the GPU sampler."""
    info = run_status(run_dir)
    if info.status not in LIVE:
        return []
    if _manifest_damage(info.run_dir) is not None:
        found = _unrecorded_procs(info.run_dir)
        return sorted(p.pid for p in found[0]()) if found else []
    manifest = RunManifest.load(info.run_dir) if info.how != "by hand" else None
    if manifest is not None and manifest.attempts:
        return sorted(p.pid for p in _attempt_procs(manifest.current))
    return sorted(p.pid for p in processes_of(info.pgid))


def _alive(pid: int | None, start_ticks: int | None = None) -> bool:
    if not pid:
        return False
    info = proc_info(pid)
    if info is None:
        return False
    return start_ticks is None or info.start_ticks == start_ticks


def _lock_held(run_dir: Path) -> bool:
    """True while a supervisor of this run directory lives (it holds logs/.run.lock)."""
    path = run_dir / "logs" / ".run.lock"
    if not path.exists():
        return False
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


_LAUNCHER_MARKERS = ("torchrun", "torch.distributed.run", "torch.distributed.launch", "deepspeed.launcher",
                     "bin/deepspeed")


def _environ_value(pid: int, key: str) -> str | None:
    """``key``'s value in a process's environment; None when it is not set or cannot be read."""
    prefix = key.encode() + b"="
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            for item in handle.read().split(b"\0"):
                if item.startswith(prefix):
                    return item[len(prefix):].decode("utf-8", "replace")
    except OSError:
        pass
    return None


def _run_tag_of(pid: int) -> str | None:
    """The run tag of one of this user's processes (None for others' and untagged ones)."""
    try:
        if os.stat(f"/proc/{pid}").st_uid != os.getuid():
            return None
    except OSError:
        return None
    return _environ_value(pid, RUN_TAG_ENV)


def graceful_targets(procs: list[ProcInfo]) -> list[int]:
    """The training processes of a run that can take LLaMA-Factory's abort signal (SIGABRT).

    Only Python processes that are not launchers (torchrun and friends die on SIGABRT, and their
    workers would then be torn down before saving), topmost among themselves (a dataloader or
    tokenizer worker forked from a trainer is left to its parent), and started with
    LLAMABOARD_ENABLED, without which LLaMA-Factory installs no handler and SIGABRT would just abort.
    """
    by_pid = {p.pid: p for p in procs}
    children: dict[int, list[int]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p.pid)

    def is_python(p: ProcInfo) -> bool:
        exe = os.path.basename(p.cmdline[0]) if p.cmdline else p.name
        return exe.startswith("python") or p.name.startswith("python") or "llamafactory-cli" in " ".join(
            p.cmdline[:2])

    def is_launcher(p: ProcInfo) -> bool:
        text = " ".join(p.cmdline[:4])
        if any(marker in text for marker in _LAUNCHER_MARKERS):
            return True
        # `llamafactory-cli train` re-launches itself through torchrun when it has python children.
        return "llamafactory-cli" in text and any(
            is_python(by_pid[c]) for c in children.get(p.pid, []) if c in by_pid)

    candidates = {p.pid for p in procs if is_python(p) and not is_launcher(p)}
    roots = [pid for pid in candidates if by_pid[pid].ppid not in candidates]
    return sorted(pid for pid in roots if _environ_value(pid, "LLAMABOARD_ENABLED") is not None)


# --------------------------------------------------------------------------------------------------
# Run directory facts
# --------------------------------------------------------------------------------------------------
def output_dir_of(run_dir: str | os.PathLike[str], train_yaml: str = "train.yaml") -> Path | None:
    """Where LLaMA-Factory writes: the manifest's record, else train.yaml's output_dir (relative paths are
    from the run directory, where the launch scripts cd)."""
    run_dir = Path(run_dir).resolve()
    manifest_out = None
    try:
        manifest = RunManifest.load(run_dir)
        manifest_out = manifest.output_dir if manifest else None
    except UserError:
        pass
    if manifest_out:
        return manifest_out
    return _yaml_output_dir(run_dir, train_yaml)


def _yaml_output_dir(run_dir: Path, train_yaml: str = "train.yaml") -> Path | None:
    """train.yaml's output_dir: where `bash single_node.sh` writes."""
    value = _train_yaml(run_dir, train_yaml).get("output_dir")
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else (run_dir / path).resolve()


# The weight files LLaMA-Factory's parser looks for (extras.constants.CHECKPOINT_NAMES, 0.9.2-0.9.5): with one
# of them in output_dir and no checkpoint-N beside it, it refuses to start a new training there ("Output
# directory already exists and is not empty"). A stopped run leaves exactly that: its saved model.
SAVED_MODEL_NAMES = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors",
                     "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def saved_model_files(output_dir: Path | None) -> list[str]:
    """The weight files of a saved model at the top of ``output_dir`` (not those inside checkpoint-N)."""
    if output_dir is None or not output_dir.is_dir():
        return []
    return [name for name in SAVED_MODEL_NAMES if (output_dir / name).is_file()]


def checkpoints(output_dir: Path | None) -> list[Path]:
    if output_dir is None or not output_dir.is_dir():
        return []
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


_MARK_HEAD = 4096  # bytes of trainer_log.jsonl hashed to tell the file found at launch from a new one


def _head_digest(path: Path, size: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha1(handle.read(min(size, _MARK_HEAD))).hexdigest()


def trainer_log_mark(output_dir: Path | None) -> dict[str, Any] | None:
    """trainer_log.jsonl as a launch finds it (inode, size, digest of its head), or None.

    Without overwrite_output_dir LLaMA-Factory appends to the file, so the lines of an earlier training
    that saved no checkpoint stay at its top, and a resumed attempt's follow those of the attempt it resumes;
    the mark tells readers where this attempt's lines begin."""
    if output_dir is None:
        return None
    path = output_dir / TRAINER_LOG
    try:
        st = os.stat(path)
        return {"inode": st.st_ino, "size": st.st_size, "head": _head_digest(path, st.st_size)}
    except OSError:
        return None


def trainer_log_start(path: Path, mark: dict[str, Any] | None) -> int:
    """Byte offset where the current attempt's lines of ``path`` begin: past the earlier training's lines
    while the file is still the one the launch found (same inode, not shorter, same head), else 0 (it was
    replaced or truncated since, e.g. by overwrite_output_dir: all of it is this attempt's)."""
    if not isinstance(mark, dict) or type(mark.get("size")) is not int:
        return 0
    try:
        st = os.stat(path)
        same = st.st_ino == mark.get("inode") and st.st_size >= mark["size"] \
            and _head_digest(path, mark["size"]) == mark.get("head")
    except OSError:
        return 0
    return mark["size"] if same else 0


def last_trainer_log(output_dir: Path | None, mark: dict[str, Any] | None = None,
                     start: int = 0) -> dict[str, Any] | None:
    """The last complete progress line of trainer_log.jsonl (integer current_steps and total_steps), read
    from the file's tail only and never before ``mark`` (see trainer_log_start) or byte ``start``; garbage
    and torn lines are skipped."""
    if output_dir is None:
        return None
    path = output_dir / TRAINER_LOG
    start = max(start, trainer_log_start(path, mark))
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(start, size - 8192))
            lines = handle.read().split(b"\n")
    except OSError:
        return None
    for line in reversed(lines):
        data = _progress_line(line)
        if data is not None:
            return data
    return None


def _progress_line(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if isinstance(data, dict) and all(type(data.get(key)) is int for key in ("current_steps", "total_steps")):
        return data
    return None


def parse_hms(text: Any) -> float | None:
    """"1 day, 2:03:04" / "0:00:12" / "03:12" -> seconds (LogCallback writes str(timedelta))."""
    if not isinstance(text, str) or not text:
        return None
    days = 0
    m = re.match(r"(\d+) days?, (.*)", text)
    if m:
        days, text = int(m.group(1)), m.group(2)
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        return None
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return days * 86400 + seconds


@dataclass
class _RunScan:
    """How far newest_run_start has read one trainer_log.jsonl, and what it needs to read on."""

    inode: int
    head: str  # digest of the file's first ``head_len`` bytes: a file replaced under the same inode is rescanned
    head_len: int
    scanned: int = 0  # bytes read (up to the last complete line)
    start: int = 0  # where the newest run's lines begin
    prev: tuple[int, int, float | None] | None = None  # the last progress line: steps, total, elapsed
    loss_step: int | None = None  # the newest run's last step with a training loss


_SCANS: dict[str, _RunScan] = {}
_SCANS_LOCK = threading.Lock()


def _new_run(prev: tuple[int, int, float | None], row: dict[str, Any], loss_step: int | None) -> bool:
    """Whether ``row`` starts another training than the line before it. LLaMA-Factory's LogCallback appends
    one line per logging step (and per eval, and a last one at the end), all at the trainer's global step and
    with elapsed_time since on_train_begin: a new run restarts both, a resumed one restarts the clock (its
    steps go on from the checkpoint's), another config changes total_steps, and a step logs its loss once."""
    steps, total, elapsed = prev
    now = parse_hms(row.get("elapsed_time"))
    return (row["current_steps"] < steps or row["total_steps"] != total
            or (now is not None and elapsed is not None and now < elapsed)
            or ("loss" in row and loss_step is not None and row["current_steps"] <= loss_step))


def _complete_lines(handle: Any, start: int, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for each complete line of an open binary file from byte ``start``, up to byte ``end``;
    a torn last line waits for its end."""
    handle.seek(start)
    offset, carry = start, b""
    while end is None or offset + len(carry) < end:
        chunk = handle.read(1 << 20 if end is None else min(1 << 20, end - offset - len(carry)))
        if not chunk:
            break
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        for raw in lines:
            yield offset, raw
            offset += len(raw) + 1


def trainer_log_rows(path: Path, start: int = 0, end: int | None = None) -> list[dict[str, Any]]:
    """The JSON objects of trainer_log.jsonl's complete lines between bytes ``start`` and ``end`` (garbage
    and torn lines skipped)."""
    rows = []
    try:
        with open(path, "rb") as handle:
            for _offset, raw in _complete_lines(handle, start, end):
                with contextlib.suppress(ValueError):
                    data = json.loads(raw)
                    if isinstance(data, dict):
                        rows.append(data)
    except OSError:
        return []
    return rows


def newest_run_start(path: Path) -> int:
    """Byte offset of trainer_log.jsonl where the newest training's lines begin (0: all of it is one run).

    Without overwrite_output_dir LLaMA-Factory appends to the file (it only deletes it in on_init_end when
    overwrite_output_dir is set), so a run started by hand after another one in the same output_dir adds its
    lines under the earlier run's; a launch knows where its lines begin (trainer_log_mark), a run by hand has
    only the lines themselves. Incremental: each call reads only what was appended since the last one."""
    try:
        st = os.stat(path)
    except OSError:
        return 0
    with _SCANS_LOCK:
        scan = _SCANS.get(str(path))
    try:
        if scan is None or scan.inode != st.st_ino or st.st_size < scan.scanned or (
                _head_digest(path, scan.head_len) != scan.head):
            head_len = min(st.st_size, 256)
            scan = _RunScan(inode=st.st_ino, head=_head_digest(path, head_len), head_len=head_len)
        else:
            scan = _RunScan(**scan.__dict__)  # a copy: another thread may read the cached one
        with open(path, "rb") as handle:
            for offset, raw in _complete_lines(handle, scan.scanned):
                row = _progress_line(raw)
                if row is not None:
                    if scan.prev is not None and _new_run(scan.prev, row, scan.loss_step):
                        scan.start, scan.loss_step = offset, None
                    scan.prev = (row["current_steps"], row["total_steps"], parse_hms(row.get("elapsed_time")))
                    if "loss" in row:
                        scan.loss_step = row["current_steps"]
                scan.scanned = offset + len(raw) + 1
        if scan.head_len < 256 and scan.scanned > scan.head_len:
            scan.head_len = min(scan.scanned, 256)
            scan.head = _head_digest(path, scan.head_len)
    except OSError:
        return 0
    with _SCANS_LOCK:
        _SCANS[str(path)] = scan
    return scan.start


# What LLaMA-Factory writes to output_dir once the training loop has ended (trainer.save_metrics("train")),
# a stop by its abort signal included; a crash, Ctrl+C or kill -9 writes none.
RESULT_FILES = ("train_results.json", "all_results.json")


@dataclass
class OutputTraces:
    """What a training left in output_dir after some moment (files written later than it): the newest run's
    last trainer_log.jsonl line, whether its final results were written, and when the last of them was."""

    last: dict[str, Any] | None = None
    results: bool = False
    checkpoint: str | None = None
    at: float | None = None  # mtime of the newest of them

    @property
    def finished(self) -> bool:
        """LLaMA-Factory wrote its final results for all the steps it was set to train."""
        return self.results and self.last is not None and self.last["current_steps"] >= self.last["total_steps"]


def output_traces(out_dir: Path | None, after: float) -> OutputTraces:
    """The traces in ``out_dir`` newer than ``after`` (a wall-clock time): trainer_log.jsonl (its newest
    run's lines only), the final results, the saved model, checkpoint-N folders. Files older than the newest
    run's training began (its last line's time less its elapsed_time, the trainer's clock since
    on_train_begin) are an earlier run's: a crash after a finished run is not taken for a stop with results."""
    traces = OutputTraces()
    if out_dir is None or not out_dir.is_dir():
        return traces
    times = []
    log = out_dir / TRAINER_LOG
    if _mtime(log) > after:
        traces.last = last_trainer_log(out_dir, start=newest_run_start(log))
        times.append(_mtime(log))
        elapsed = parse_hms((traces.last or {}).get("elapsed_time"))
        if elapsed is not None:
            after = max(after, _mtime(log) - elapsed - 2)  # 2 s: elapsed_time is whole seconds, written late
    for name in (*RESULT_FILES, *SAVED_MODEL_NAMES, "trainer_state.json"):
        when = _mtime(out_dir / name)
        if when > after:
            times.append(when)
            traces.results = traces.results or name in RESULT_FILES
    for folder in checkpoints(out_dir):
        # Its trainer_state.json (the save writes it), not the folder: deleting a file from it is no training.
        when = _mtime(folder / "trainer_state.json")
        if when > after:
            times.append(when)
            traces.checkpoint = folder.name
    traces.at = max(times) if times else None
    return traces


# --------------------------------------------------------------------------------------------------
# Status of one run
# --------------------------------------------------------------------------------------------------
@dataclass
class RunInfo:
    """What ``runs`` shows for one run directory."""

    run_dir: Path
    status: str
    exit_code: int | None = None
    attempt: int = 0
    pid: int | None = None
    pgid: int | None = None
    host: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    output_dir: Path | None = None
    step: int | None = None
    total_steps: int | None = None
    how: str = "minicpm-tui"  # or "by hand" (bash single_node.sh seen in the process table)
    note: str = ""
    note_tui: str = ""  # the note in the TUI's words where it names a CLI command ("" when the note is the same)
    gone: bool = False  # registered, but the run directory is no longer there (listed with include_missing)
    smoke: bool = False  # the attempt shown is the smoke run (the wizard's `s`: a tiny model, smoke/train.yaml)
    # The start on the boot clock (seconds since boot, suspend included) of boot ``boot_id``: an age
    # from it is immune to wall-clock steps.
    started_boottime: float | None = None
    boot_id: str | None = None
    # Where its output goes when the manifest does not say (a run started by hand, a damaged manifest).
    logs: list[Path] = field(default_factory=list)

    @property
    def progress(self) -> str:
        if self.step is None or not self.total_steps:
            return "-"
        return f"{self.step}/{self.total_steps} ({100 * self.step / self.total_steps:.0f}%)"

    @property
    def age_s(self) -> float | None:
        """Seconds since the start, never negative; None when not started or not known."""
        return age_since(self.started_at, self.started_boottime, self.boot_id)

    @property
    def age(self) -> str:
        """The age for listings: "-" before any start, "?" when the clocks cannot tell."""
        if not self.started_at and self.started_boottime is None:
            return "-"
        age = self.age_s
        return "?" if age is None else age_text(age)

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "status": self.status, "exit_code": self.exit_code,
                "attempt": self.attempt, "pid": self.pid, "pgid": self.pgid, "host": self.host,
                "started_at": self.started_at, "ended_at": self.ended_at,
                "output_dir": str(self.output_dir) if self.output_dir else None, "step": self.step,
                "total_steps": self.total_steps, "progress": self.progress, "age_s": self.age_s, "smoke": self.smoke,
                "age": self.age, "how": self.how, "note": self.note, "gone": self.gone}


def _belongs(place: str | os.PathLike[str], run_dir: Path) -> bool:
    """A path is this run directory's: the folder itself or inside it, with no run directory nested in
    between (a nested run directory's files are its own; a copy or a sibling is never inside)."""
    path = Path(place)
    if path != run_dir and run_dir not in path.parents:
        return False
    for folder in (path, *path.parents):
        if folder == run_dir:
            return True
        if is_run_dir(folder):
            return False
    return False


# What runs a training by hand: a shell running the script, Python (torchrun's own shebang), a launcher.
_HAND_PROGRAMS = ("bash", "sh", "dash", "zsh", "torchrun", "llamafactory-cli", "deepspeed", "accelerate")


def _hand_processes(run_dir: Path, untagged: bool = False) -> list[ProcInfo]:
    """Processes of a run started by hand (`bash single_node.sh`, torchrun ... train.yaml) for run_dir: they
    work in it, or name one of its files, and no run directory nested in it is nearer. ``untagged``: only
    processes that no launched attempt (of any run directory) started."""
    me = os.getpid()
    markers = (LAUNCH_SCRIPT, "train.yaml", "torchrun", "llamafactory", "launcher.py", "multi_node.sh")
    found = []
    text_dir = str(run_dir) + os.sep
    for p in all_procs():
        if p.pid == me or not p.cmdline:
            continue
        joined = " ".join(p.cmdline)
        program = os.path.basename(p.cmdline[0])
        if not any(m in joined for m in markers) or not (program in _HAND_PROGRAMS or program.startswith("python")):
            continue  # `vim train.yaml` or `less single_node.sh` in the folder is no training
        try:
            cwd = os.readlink(f"/proc/{p.pid}/cwd")
        except OSError:
            cwd = ""
        named = [arg[arg.index(text_dir):] for arg in p.cmdline if text_dir in arg]
        if not (cwd and _belongs(cwd, run_dir)) and not any(_belongs(path, run_dir) for path in named):
            continue
        if untagged and _run_tag_of(p.pid):
            continue
        found.append(p)
    return found


def _manifest_damage(run_dir: Path) -> UserError | None:
    """The error that run_dir's manifest cannot be read (truncated, not JSON, the wrong shape), or None."""
    try:
        RunManifest.load(run_dir)
    except UserError as exc:
        if exc.where is not None and exc.where.startswith(str(run_dir / MANIFEST)):
            return exc
        raise
    return None


def run_status(run_dir: str | os.PathLike[str]) -> RunInfo:
    """The live status of a run directory: from its manifest, its lock, its processes, its logs."""
    run_dir = Path(run_dir).expanduser().resolve()
    damage = _manifest_damage(run_dir)
    if damage is not None:
        return _damaged_status(run_dir, damage)
    manifest = RunManifest.load(run_dir)
    out_dir = output_dir_of(run_dir)
    if manifest is None or not manifest.attempts:
        # No manifest: maybe started by hand.
        return _hand_status(run_dir, out_dir)
    cur = manifest.current
    last = last_trainer_log(out_dir, cur.get("trainer_log_from"))
    info = RunInfo(run_dir=run_dir, status="never", output_dir=out_dir)
    if last:
        info.step, info.total_steps = last.get("current_steps"), last.get("total_steps")
    info.attempt = int(cur.get("attempt", len(manifest.attempts)))
    info.exit_code, info.pid, info.pgid = cur.get("exit_code"), cur.get("pid"), cur.get("pgid")
    info.host, info.started_at, info.ended_at = cur.get("host"), cur.get("started_at"), cur.get("ended_at")
    info.started_boottime, info.boot_id = cur.get("started_boottime"), cur.get("boot_id")
    info.status = cur.get("status") or "unknown"
    if info.status in LIVE:
        info.status, info.note = _live_status(run_dir, cur)
        if info.status not in LIVE and _ended_since(run_dir, cur):
            # The supervisor recorded the end and let go of its lock between our two reads: read it again.
            return run_status(run_dir)
    if info.status in LIVE:
        return _smoke_note(info, cur)
    # The recorded attempt has ended: the folder may have been run by hand since (`bash single_node.sh`), which
    # writes where train.yaml says (the attempt may have been a smoke run, writing to smoke/output).
    return _hand_status(run_dir, _yaml_output_dir(run_dir), after=info,
                        after_end=_attempt_end(run_dir, cur)) or _smoke_note(info, cur)


def _ended_since(run_dir: Path, cur: dict[str, Any]) -> bool:
    """True when the manifest, read again, records an end for the attempt ``cur`` showed as live."""
    try:
        again = RunManifest.load(run_dir)
    except UserError:  # a damaged manifest is for run_status to report, on its next read
        return False
    if again is None or not again.attempts:
        return False
    now = again.current
    return now.get("attempt") == cur.get("attempt") and (now.get("status") or "unknown") not in LIVE


def _smoke_note(info: RunInfo, cur: dict[str, Any]) -> RunInfo:
    """Mark an attempt that was the smoke run (the wizard launches it through the runner, so its monitor can
    follow it): its "finished" and its steps are the tiny model's on the CPU, not the training's."""
    yaml_rel = Path(str(cur.get("train_yaml") or "train.yaml")).as_posix()
    if yaml_rel == "train.yaml":  # the usual case: no import of the smoke core for it
        return info
    from minicpm_tui.core.smoke import SMOKE_YAML

    if yaml_rel != SMOKE_YAML:
        return info
    info.smoke = True
    if not info.note:
        info.note = ("the smoke run, a tiny model on the CPU, not the training: launch that with "
                     f"`minicpm-tui run {info.run_dir}`")
        info.note_tui = ("the smoke run, a tiny model on the CPU, not the training: launch that with l on the "
                         "wizard's Run step")
    return info


def _attempt_end(run_dir: Path, cur: dict[str, Any]) -> float:
    """When a launched attempt that has ended last did something: its recorded end, its logs' last write (an
    attempt that died has no end recorded), the manifest's (the supervisor writes the end there), whichever
    is latest; files in its output_dir up to then may be its own. File times count too, for a file server
    whose clock is ahead of this machine's."""
    times = [cur.get("ended_at") or 0.0, cur.get("started_at") or 0.0, _mtime(run_dir / MANIFEST)]
    times += [_mtime(Path(cur[key])) for key in ("stdout", "stderr") if isinstance(cur.get(key), str)]
    return max(times)


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _hand_status(run_dir: Path, out_dir: Path | None, after: RunInfo | None = None,
                 after_end: float = 0.0) -> RunInfo | None:
    """A run started by hand in run_dir: alive (its processes), seen alive and ended since (its record), or
    ended unseen (only its files in output_dir tell: trainer_log.jsonl, final results, checkpoints).

    ``after``: the manifest's attempt, which has ended (last active at ``after_end``); then only a run by hand
    that no launch started and that is later than that attempt counts, and None means there is none (the
    attempt is the story)."""
    info = RunInfo(run_dir=run_dir, status="never", output_dir=out_dir)
    log = out_dir / TRAINER_LOG if out_dir is not None else None
    earlier = "" if after is None else f"; attempt {after.attempt} of `minicpm-tui run` had ended ({after.status})"
    procs = _hand_processes(run_dir, untagged=after is not None)
    if procs:
        leader = min(procs, key=lambda p: p.start_ticks)
        info.status, info.how = "running", "by hand"
        info.pid, info.pgid, info.host = leader.pid, leader.pgid, socket.gethostname()
        info.started_at = _start_time(leader.start_ticks)
        info.started_boottime, info.boot_id = leader.start_ticks / _CLK_TCK, boot_id()
        if log is not None and _mtime(log) >= (info.started_at or 0) - 1:
            # Its lines only: an earlier training's may sit above them in the same file.
            _set_progress(info, OutputTraces(last=last_trainer_log(out_dir, start=newest_run_start(log))))
        if after is not None:
            info.note = f"started by hand (pid {leader.pid}){earlier}"
        _note_hand_run(run_dir, leader, info)
        info.logs = hand_run_logs(run_dir)
        return info
    # Files older than this are not a run by hand's: generate wrote the folder then, the attempt ran until then.
    floor = max(_mtime(run_dir / "generated.json"), after_end + 1 if after is not None else 0.0)
    record = hand_run_record(run_dir)
    if record is not None and after is not None and (record.get("started_at") or 0) <= (after.started_at or 0):
        record = None  # seen before the launched attempt, which is the later story
    if record is not None and record.get("ended_at") is None and not _recorded_alive(record):
        record = _note_hand_end(run_dir, record, out_dir)  # first look since it ended by itself
    traces = output_traces(out_dir, (record.get("started_at") or 0) - 1) if record is not None else OutputTraces()
    if record is not None and _hand_run_superseded(record, traces):
        # A later run by hand that nobody saw: only its files tell, and those up to the seen one's end are not its.
        floor = max(floor, record.get("files_at") or record.get("alive_at") or 0.0)
        record = None
    if record is None:
        traces = output_traces(out_dir, floor)
        if traces.at is None:
            return None if after is not None else info
        return _unseen_hand_status(info, traces, earlier)
    # Seen running by hand (by `runs`, `monitor` or `stop`) and gone since: what is known of it.
    info.how = "by hand"
    info.pid, info.pgid, info.host = record.get("pid"), record.get("pgid"), record.get("host")
    info.started_at, info.ended_at = record.get("started_at"), record.get("ended_at")
    info.started_boottime, info.boot_id = record.get("started_boottime"), record.get("boot_id")
    info.logs = hand_run_logs(run_dir)
    _set_progress(info, traces)
    if traces.finished:
        info.status, info.note = "finished", earlier.lstrip("; ")
        return info
    when = "before its first logging step" if traces.last is None else "before its last step"
    logs = [str(path) for path in info.logs]
    output = f"; its output: {', '.join(logs)}" if logs else ""
    if record.get("stop_requested_at"):
        info.status = "stopped"
        info.note = f"started by hand, stopped by `minicpm-tui stop` {when}; exit code not known{output}"
    elif traces.results:
        info.status = "stopped"
        info.note = (f"started by hand (pid {info.pid}); it saved its final results {when} (its abort signal or "
                     f"early stopping ended it); exit code not known{output}")
    else:
        info.status = "died"
        info.note = (f"started by hand (pid {info.pid}); it ended {when} and its exit code is not known here"
                     f"{output}")
    info.note += earlier
    return info


def _set_progress(info: RunInfo, traces: OutputTraces) -> None:
    """Steps from the newest run's last trainer_log line, else from its newest checkpoint-N."""
    if traces.last is not None:
        info.step, info.total_steps = traces.last["current_steps"], traces.last["total_steps"]
    elif traces.checkpoint is not None:
        info.step = int(traces.checkpoint.split("-")[-1])


def _unseen_hand_status(info: RunInfo, traces: OutputTraces, earlier: str) -> RunInfo:
    """A run by hand that started and ended while nothing of ours looked: its output_dir's files are all
    there is of it (how far it got and when), not its exit code."""
    info.how, info.ended_at = "by hand", traces.at
    _set_progress(info, traces)
    elapsed = parse_hms((traces.last or {}).get("elapsed_time"))
    if elapsed is not None and traces.at is not None:
        info.started_at = traces.at - elapsed  # the trainer's clock: from on_train_begin, loading not counted
    when = _when(traces.at or 0.0)
    reached = f"step {info.step}/{info.total_steps or '?'}" if info.step is not None else "no logged step"
    unseen = "started by hand and not watched"
    if traces.finished:
        info.status, info.note = "finished", f"{unseen}; LLaMA-Factory wrote its final results at {when}"
    elif traces.results:
        info.status = "stopped"
        info.note = (f"{unseen}; it saved its final results at {reached} ({when}), before its last step: its "
                     "abort signal or early stopping ended it")
    else:
        info.status = "ended"
        info.note = (f"{unseen}; its last trace in {info.output_dir} is from {when} ({reached}); no process is left "
                     "and it wrote no final results, so how it ended (an error, Ctrl+C, a kill) is not known")
    info.note += earlier
    return info


def _damaged_status(run_dir: Path, damage: UserError) -> RunInfo:
    """A run whose manifest cannot be read: running when processes of it are alive (found as `stop` finds
    them), else the damage itself (a UserError). The manifest is never written here."""
    found = _unrecorded_procs(run_dir)
    if found is None:
        raise damage
    procs, how = found
    alive = procs()
    if not alive:
        raise damage
    out_dir = output_dir_of(run_dir)
    info = RunInfo(run_dir=run_dir, status="running", output_dir=out_dir)
    last = last_trainer_log(out_dir)
    if last:
        info.step, info.total_steps = last.get("current_steps"), last.get("total_steps")
    leader = min(alive, key=lambda p: p.start_ticks)
    info.pid, info.pgid, info.host = leader.pid, leader.pgid, socket.gethostname()
    info.started_at = _start_time(leader.start_ticks)
    info.started_boottime, info.boot_id = leader.start_ticks / _CLK_TCK, boot_id()
    tag = _run_tag_of(leader.pid) or ""
    number = tag.split("-")[1] if tag.count("-") >= 2 else ""
    if number.isdigit():
        info.attempt = int(number)
    else:
        info.how = "by hand"
    pids = ", ".join(str(p.pid) for p in alive)
    said = f"{damage.where}: {damage.message}; {len(alive)} process(es) of the run are alive"
    info.note = (f"{said}, found {how} (pid {pids}): `minicpm-tui stop {run_dir}` still stops it; the manifest is "
                 f"left as it is: {damage.fix}")
    # The TUI shows the run directory beside the note: the manifest is named within it.
    said = said.replace(f"{run_dir}{os.sep}", "", 1)
    info.note_tui = (f"{said} (pid {pids}): x (Stop run) in the monitor still stops it; the manifest is left as it "
                     f"is: {damage.fix}")
    for p in alive:
        for fd in (2, 1):
            with contextlib.suppress(OSError):
                target = Path(os.readlink(f"/proc/{p.pid}/fd/{fd}"))
                if target not in info.logs and target.is_file() and _belongs(target, run_dir):
                    info.logs.append(target)
    return info


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


HAND_RECORD = "logs/by_hand.json"  # what `runs`, `monitor` and `stop` saw of a run started by hand
_HAND_TYPES: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("pid", "pgid", "start_ticks", "log_from", "log_inode", "later_run"), (int,)),
    **dict.fromkeys(("started_at", "started_boottime", "seen_at", "alive_at", "stop_requested_at", "ended_at",
                     "files_at"), (int, float)),
    **dict.fromkeys(("host", "boot_id", "stdout", "stderr"), (str,)),
}


def hand_run_record(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last run started by hand that was seen in ``run_dir`` (its well-typed fields), or None."""
    try:
        data = json.loads((Path(run_dir) / HAND_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or type(data.get("pid")) is not int:
        return None
    return {key: value for key, value in data.items()
            if key in _HAND_TYPES and isinstance(value, _HAND_TYPES[key]) and not isinstance(value, bool)}


def hand_run_logs(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The files a run started by hand wrote its stdout and stderr to (when they were redirected to files)."""
    record = hand_run_record(run_dir) or {}
    out: list[Path] = []
    for key in ("stderr", "stdout"):
        value = record.get(key)
        if value and Path(value) not in out and Path(value).is_file():
            out.append(Path(value))
    return out


ALIVE_EVERY_S = 30.0  # how often a watched run by hand's "last seen alive" is written down


def _note_hand_run(run_dir: Path, leader: ProcInfo, info: RunInfo, **changes: Any) -> None:
    """Record a run started by hand that is seen alive, so that its end is not taken for "never": its
    processes are all there is of it. Once per run, then its last time seen alive every ALIVE_EVERY_S (the
    earliest its end can have been). A folder that cannot be written is left as it is."""
    record = hand_run_record(run_dir)
    now = time.time()
    if record is not None and (record.get("pid"), record.get("start_ticks"), record.get("boot_id")) == (
            leader.pid, leader.start_ticks, info.boot_id):
        if not changes and now - (record.get("alive_at") or 0.0) < ALIVE_EVERY_S:
            return
        record["alive_at"] = now
    else:
        log_from, log_inode = _log_from(info.output_dir, info.started_at)
        record = {"pid": leader.pid, "pgid": leader.pgid, "start_ticks": leader.start_ticks,
                  "started_at": info.started_at, "started_boottime": info.started_boottime,
                  "boot_id": info.boot_id, "host": info.host, "seen_at": now, "alive_at": now,
                  "log_from": log_from, "log_inode": log_inode}
        for fd, key in ((1, "stdout"), (2, "stderr")):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{leader.pid}/fd/{fd}")
                if target.startswith("/") and os.path.isfile(target):
                    record[key] = target
    record.update(changes)
    with contextlib.suppress(OSError):
        (run_dir / "logs").mkdir(exist_ok=True)
        write_atomic(run_dir / HAND_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")


def _recorded_alive(record: dict[str, Any]) -> bool:
    """The recorded run by hand may still live: seen on another host (its processes are not visible here), or
    its leader is alive here (same process, same boot) though no longer found working in its folder. Its end is
    not recorded then."""
    if record.get("host") not in (None, socket.gethostname()):
        return True
    return record.get("boot_id") == boot_id() and _alive(record.get("pid"), record.get("start_ticks"))


def _log_from(out_dir: Path | None, started_at: float | None) -> tuple[int, int | None]:
    """Where a live run by hand's lines of trainer_log.jsonl begin (and the file's inode): at the newest run's
    lines when the file was written since it started, else past what is there (an earlier training's)."""
    log = out_dir / TRAINER_LOG if out_dir is not None else None
    try:
        st = os.stat(log) if log is not None else None
    except OSError:
        st = None
    if log is None or st is None:
        return 0, None
    return (newest_run_start(log) if st.st_mtime >= (started_at or 0) - 1 else st.st_size), st.st_ino


def _later_lines(out_dir: Path | None, record: dict[str, Any]) -> bool:
    """trainer_log.jsonl holds a training later than the run by hand ``record`` tells of: one begins after
    where its own lines began, or the file was replaced (overwrite_output_dir) or cut since it was seen. A
    later run that logged while the seen one logged nothing cannot be told from it."""
    start, inode = record.get("log_from"), record.get("log_inode")
    if out_dir is None or start is None:
        return False
    log = out_dir / TRAINER_LOG
    try:
        st = os.stat(log)
    except OSError:
        return False
    if inode is not None and (st.st_ino != inode or st.st_size < start):
        return True
    return newest_run_start(log) > start


def _note_hand_end(run_dir: Path, record: dict[str, Any], out_dir: Path | None,
                   ended_at: float | None = None) -> dict[str, Any]:
    """Record that a run by hand seen alive is gone (at ``ended_at`` when `stop` saw it go), with what can be
    known of when: after it was last seen alive, at its last file in output_dir unless a later training has
    written there since (then no file is surely its own). ``files_at``: the newest file it may have written;
    one newer is a later run's. Returns the record; a folder that cannot be written keeps it in memory only."""
    alive_at = record.get("alive_at") or record.get("seen_at") or record.get("started_at") or 0.0
    if _later_lines(out_dir, record):
        changes: dict[str, Any] = {"ended_at": ended_at or alive_at, "later_run": 1}
    else:
        files_at = output_traces(out_dir, (record.get("started_at") or 0) - 1).at
        changes = {"ended_at": ended_at or max(alive_at, files_at or 0.0),
                   "files_at": files_at if files_at is not None else alive_at}
    record = {**record, **changes}
    with contextlib.suppress(OSError):
        write_atomic(run_dir / HAND_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _hand_run_superseded(record: dict[str, Any], traces: OutputTraces) -> bool:
    """A later run by hand that nobody saw wrote in output_dir after the recorded (seen) one ended."""
    if record.get("later_run"):
        return True
    if traces.at is None:
        return False
    if record.get("files_at") is not None:
        return traces.at > record["files_at"]
    # A record from before files_at: its end on this host's clock, with slack for a file server's.
    return bool(record.get("ended_at")) and traces.at > record["ended_at"] + 5


def age_since(started_at: float | None, started_boottime: float | None = None,
              boot: str | None = None) -> float | None:
    """Seconds since a start, never negative; None when there is none or the clocks cannot tell.

    The boot clock first (immune to wall-clock steps) when the start was recorded in this boot; else
    the wall clock, where a start up to CLOCK_SLACK_S in the future reads 0 and one further ahead (the
    clock stepped back) is not known.
    """
    now_boot = boottime()
    if started_boottime is not None and now_boot is not None and boot and boot == boot_id():
        return max(0.0, now_boot - started_boottime)
    if not started_at:
        return None
    age = time.time() - started_at
    return None if age < -CLOCK_SLACK_S else max(0.0, age)


def boottime() -> float | None:
    """Seconds since this machine booted, suspend included (the clock /proc/PID/stat's start times use)."""
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return None


@functools.lru_cache(maxsize=1)
def boot_id() -> str | None:
    """This boot's id: a boot-clock time recorded in another boot (or on another host) means nothing here."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _start_time(start_ticks: int) -> float | None:
    try:
        with open("/proc/uptime", encoding="utf-8") as handle:
            uptime = float(handle.read().split()[0])
    except OSError:
        return None
    return time.time() - uptime + start_ticks / _CLK_TCK


def _places(pid: int) -> list[str] | None:
    """Where a process works: its working directory, then the files its stdout and stderr go to. A rename of
    their folder takes all of them along, a copy none (a launched attempt writes to ``logs/attempt-N.*.log``,
    so a training script that ``cd``s elsewhere is still tied to its run directory). None when the working
    directory cannot be read."""
    try:
        places = [os.readlink(f"/proc/{pid}/cwd")]
    except OSError:
        return None
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("/") and not target.endswith(" (deleted)") and target not in places:
                places.append(target)
    return places


def _run_dirs_of(pid: int) -> list[Path]:
    """The run directories a process works for: for each of its places, the nearest folder (itself or above)
    that is a run directory. A run directory nested in another is its own processes' only."""
    out: list[Path] = []
    for place in _places(pid) or []:
        if place.endswith(" (deleted)"):
            continue
        path = Path(place)
        for folder in (path, *path.parents):
            if is_run_dir(folder):
                if folder not in out:
                    out.append(folder)
                break
    return out


def _works_elsewhere(procs: list[ProcInfo], run_dir: Path) -> str | None:
    """The folder a run's processes work in when none of them works for ``run_dir`` (else None): neither its
    working directory nor its stdout/stderr files are there."""
    other = None
    for p in procs:
        places = _places(p.pid)
        if places is None:
            return None  # cannot tell: take them as this run's
        if any(place == str(run_dir) or place.startswith(str(run_dir) + os.sep) for place in places):
            return None
        other = other or places[0]
    return other


_DELETED = " (deleted)"  # what /proc/PID/cwd reads for a working directory that was removed


def _deleted_origin(place: str, cur: dict[str, Any]) -> str | None:
    """The folder an attempt was launched in (``cur["cwd"]``), when ``place`` (where its processes work) is in
    it and it was deleted, and no run directory with this attempt is at that path again; else None."""
    ran_in = cur.get("cwd")
    if not isinstance(ran_in, str) or not place.endswith(_DELETED):
        return None
    place = place[: -len(_DELETED)]
    if place != ran_in and not place.startswith(ran_in.rstrip(os.sep) + os.sep):
        return None
    tag = cur.get("run_tag")
    if os.path.isdir(ran_in) and isinstance(tag, str) and _has_attempt(Path(ran_in), tag):
        return None
    return ran_in


def _live_status(run_dir: Path, cur: dict[str, Any]) -> tuple[str, str]:
    """A manifest says starting/running: check that it really is."""
    host = cur.get("host")
    if host and host != socket.gethostname():
        return cur.get("status", "running"), f"recorded on host {host}; cannot check from here"
    if _lock_held(run_dir):
        return cur.get("status", "running"), ""
    age = age_since(cur.get("started_at"), cur.get("started_boottime"), cur.get("boot_id"))
    if cur.get("status") == "starting" and (_alive(cur.get("supervisor_pid")) or (age is not None and age < 10)):
        return "starting", ""  # the launcher has not recorded its supervisor yet
    # The supervisor is gone without recording an end. Is the training itself still there?
    procs = _attempt_procs(cur) if cur.get("pgid") else []
    if procs:
        elsewhere = _works_elsewhere(procs, run_dir)
        left = _deleted_origin(elsewhere, cur) if elsewhere else None
        if left:
            # Moved to another filesystem while it ran: `mv` copied the folder here and deleted the original,
            # where the processes work on (they carry this attempt's tag, and no other copy of it is there).
            return "running", (f"moved here from another filesystem while it ran: its processes work on in the "
                               f"deleted {left}, so nothing they write from now on (trainer_log.jsonl, checkpoints, "
                               f"the exit code) reaches this copy; stop it here and resume it with "
                               f"`minicpm-tui run --resume`")
        if elsewhere:
            # A copy of a run directory made while it ran: the processes are the original's (`stop` here
            # would stop that run). A moved run directory takes its processes' working directory along.
            return "unknown", f"copied from {elsewhere} while it ran; its processes work there, not here"
        return "running", "its supervisor is gone; the exit code will not be recorded"
    ran_in = cur.get("cwd")
    if ran_in and ran_in != str(run_dir) and os.path.isdir(ran_in) and not os.path.samefile(ran_in, run_dir):
        return "unknown", f"copied from {ran_in} while it ran there; that run directory has its outcome"
    return "died", "process vanished with no exit code recorded (host reboot, OOM killer, kill -9?)"


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------
def _registry_dir() -> Path:
    return state_dir() / "runs"


def _registry_key(run_dir: Path) -> str:
    return hashlib.sha256(str(run_dir).encode("utf-8")).hexdigest()[:16]


def _registry_entry(run_dir: Path) -> Path:
    return _registry_dir() / f"{_registry_key(run_dir)}.json"


def _read_entry(entry: Path) -> dict[str, Any] | None:
    """A registry entry (None when it cannot be read or is not one)."""
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("run_dir"), str) else None


REGISTRY_FIX = ("make it writable, or point XDG_STATE_HOME (MINICPM_TUI_HOME overrides it) at a folder you may "
                "write to")


def register_run(run_dir: str | os.PathLike[str], how: str = "launched", run_tag: str | None = None) -> Path:
    """Remember a run directory on this machine (``runs`` lists it). Idempotent.

    ``run_tag`` is the latest attempt's: with it ``runs`` finds the run again when its folder is moved
    while it runs (its processes carry the tag, and a rename takes their working directory along).
    """
    run_dir = Path(run_dir).expanduser().resolve()
    entry = _registry_entry(run_dir)
    data = _read_entry(entry)
    if data is not None and (run_tag is None or data.get("run_tag") == run_tag):
        return entry
    data = {"registered_at": time.time(), "how": how, **(data or {}), "run_dir": str(run_dir)}
    if run_tag:
        data["run_tag"] = run_tag
    try:
        write_atomic(entry, json.dumps(data) + "\n")
    except OSError as exc:
        reason = os_error(exc)
        raise UserError(f"cannot write the runs registry: {reason.message}", where=reason.where,
                        fix=REGISTRY_FIX) from exc
    _forget_moved_away(run_dir, entry)
    return entry


def _tagged_processes() -> dict[str, list[int]]:
    """This user's processes of launched attempts, by run tag."""
    out: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            tag = _run_tag_of(int(entry))
            if tag:
                out.setdefault(tag, []).append(int(entry))
    return out


def _has_attempt(run_dir: Path, tag: str) -> bool:
    try:
        manifest = RunManifest.load(run_dir)
    except UserError:
        return False
    return manifest is not None and any(a.get("run_tag") == tag for a in manifest.attempts)


def _moved_to(data: dict[str, Any], key: str, tagged: dict[str, list[int]]) -> tuple[Path, str] | None:
    """Where a registered run directory that left its path lives now (and its attempt's run tag), if a
    process of that attempt is still alive: ``mv`` takes the processes' working directory and their open
    log files along (the supervisor's working directory is the run directory itself; the training's stdout
    and stderr are its logs/attempt-N files even where its script works elsewhere, and they are all that
    is left once the supervisor was killed), and the manifest there must hold that attempt (so a copy is
    never taken for it)."""
    tag = data.get("run_tag")
    # Entries written before run tags were recorded: every tag starts with the key of the launch's path.
    tags = [tag] if isinstance(tag, str) and tag in tagged else [t for t in tagged if t.startswith(key + "-")]
    for tag in tags:
        for pid in tagged[tag]:
            for folder in _run_dirs_of(pid):
                if _has_attempt(folder, tag):
                    return folder, tag
    return None


def _follow_move(entry: Path, data: dict[str, Any], new: Path, tag: str) -> Path:
    """Register a moved run directory at its new path and forget the old one. When the registry cannot
    be written, the run is still listed at its new path this time."""
    with contextlib.suppress(OSError):
        target = _registry_entry(new)
        if target != entry:
            moved = {**data, "run_dir": str(new), "run_tag": tag, "moved_from": data["run_dir"]}
            write_atomic(target, json.dumps(moved) + "\n")
            entry.unlink()
    return new


# What makes a folder a run directory: ours (generate / launch) or a LLaMA-Factory config run by hand.
RUN_DIR_MARKERS = ("run_manifest.json", "generated.json", "train.yaml")


NEW_RUN_FIX = "create one with `minicpm-tui generate RECIPE --out RUN_DIR`"


def require_run_dir(raw: str | os.PathLike[str], fix: str = NEW_RUN_FIX) -> Path:
    """``raw`` resolved, or a UserError naming it: no such run directory, or a file where one is needed."""
    run_dir = resolved(raw, "run directory")
    if run_dir.is_dir():
        return run_dir
    if run_dir.exists():
        raise UserError("is a file, not a run directory", where=str(raw),
                        fix="pass the folder that `minicpm-tui generate` wrote (it holds train.yaml)")
    raise missing(raw, "run directory", fix=fix)


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    folder = Path(path)
    return any((folder / name).is_file() for name in RUN_DIR_MARKERS)


def require_marked_run_dir(run_dir: str | os.PathLike[str]) -> None:
    """A UserError unless the folder holds one of RUN_DIR_MARKERS (generated, launched, or a train.yaml)."""
    if not is_run_dir(run_dir):
        raise UserError(f"not a run directory (none of {', '.join(RUN_DIR_MARKERS)} in it)", where=str(run_dir),
                        fix="pass the folder that `minicpm-tui generate` or the wizard wrote, or the one holding "
                            "the train.yaml you launch by hand; `minicpm-tui runs` lists the known runs")


def forget_run(raw: str | os.PathLike[str]) -> Path:
    """Drop a run directory from the runs registry (``runs --forget``): its files are never touched, and a run
    still alive is refused (``stop`` it first), so nothing that works on is lost from the list. Returns the path
    forgotten; a UserError naming the path when the registry does not hold it."""
    gone = registered_gone(raw)
    run_dir, data = gone if gone is not None else (Path(raw).expanduser().resolve(), None)
    entry = _registry_entry(run_dir)
    data = data if data is not None else _read_entry(entry)
    if data is None or data.get("run_dir") != str(run_dir):
        raise UserError("is not in the runs registry", where=str(raw),
                        fix="`minicpm-tui runs --all` lists the registered run directories, gone ones included")
    if gone is not None:
        tag = data.get("run_tag")
        alive = _tagged_processes().get(tag, []) if isinstance(tag, str) else []
        if alive:
            raise UserError(f"processes of its run still work (pid {', '.join(map(str, alive))})", where=str(raw),
                            fix=f"stop them first: `minicpm-tui stop {shlex.quote(str(raw))}`")
    elif is_run_dir(run_dir):
        try:
            status = run_status(run_dir).status
        except UserError:
            status = "unknown"
        if status in LIVE:
            raise UserError(f"its run is {status}", where=str(raw),
                            fix=f"stop it first (`minicpm-tui stop {shlex.quote(str(raw))}`), or leave it listed")
    try:
        entry.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        reason = os_error(exc)
        raise UserError(f"cannot change the runs registry: {reason.message}", where=reason.where,
                        fix=REGISTRY_FIX) from exc
    return run_dir


def watch_run(run_dir: str | os.PathLike[str]) -> Path:
    """Register a run directory someone launches by hand, so ``runs`` and ``monitor`` see it. One that was
    moved where its processes could not take ``runs`` along (to another filesystem: a copy, then the
    original deleted) is registered here instead of at its old path: its manifest holds the launch the old
    entry recorded (its run tag), and nothing is left at the old path."""
    require_marked_run_dir(run_dir)
    return register_run(run_dir, how="watched")


def _forget_moved_away(run_dir: Path, entry: Path) -> None:
    """Drop the registry entries of ``run_dir``'s launches that name a path where no run directory is left: it
    was moved here (to another filesystem, where no process could take the entry along), and this one is it."""
    try:
        manifest = RunManifest.load(run_dir)
    except UserError:
        return
    tags = {a["run_tag"] for a in manifest.attempts if isinstance(a.get("run_tag"), str)} if manifest else set()
    for other in sorted(_registry_dir().glob("*.json")) if tags else []:
        data = _read_entry(other)
        if other == entry or data is None or data.get("run_tag") not in tags or is_run_dir(data["run_dir"]):
            continue
        with contextlib.suppress(OSError):
            # This entry's own fields (a newer launch's run tag) win over the old one's.
            write_atomic(entry, json.dumps({**data, **(_read_entry(entry) or {}), "run_dir": str(run_dir),
                                            "moved_from": data["run_dir"]}) + "\n")
            other.unlink()


GONE_FIX = ("if it was moved, `minicpm-tui runs --watch NEW_PATH` registers it there; `minicpm-tui runs --forget "
            "OLD_PATH` drops it from the list")


def _gone_note(data: dict[str, Any], tagged: dict[str, list[int]]) -> str:
    """What ``runs --all`` says of a registered run directory that is no longer at its path."""
    tag = data.get("run_tag")
    for pid in tagged.get(tag, []) if isinstance(tag, str) else []:
        places = _places(pid) or []
        if places and places[0].endswith(_DELETED):
            return (f"run directory is gone, but processes of its run (pid {', '.join(map(str, tagged[tag]))}) work "
                    f"on in the deleted folder: moved to another filesystem while it ran (a copy, then the original "
                    f"deleted)? `minicpm-tui runs --watch NEW_PATH` registers the copy; `minicpm-tui stop "
                    "OLD_PATH` (or NEW_PATH, once registered) stops them")
    return f"run directory is gone; {GONE_FIX}"


def age_text(seconds: float | None) -> str:
    """A short age for listings: 45s, 12m, 3h, 2d; "?" for a negative one (a start in the future: the wall
    clock stepped back), never a negative age."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def list_runs(include_missing: bool = False) -> list[RunInfo]:
    """Every registered run, newest first. Run directories that were deleted are skipped; one that was
    moved while it runs is found at its new path (and registered there)."""
    folder = _registry_dir()
    out: list[RunInfo] = []
    if not folder.is_dir():
        return out
    seen: set[Path] = set()
    tagged: dict[str, list[int]] | None = None  # scanned once, when a run directory has left its path
    for entry in sorted(folder.glob("*.json")):
        data = _read_entry(entry)
        if data is None:
            continue
        run_dir = Path(data["run_dir"])
        if not is_run_dir(run_dir):
            tagged = _tagged_processes() if tagged is None else tagged
            moved = _moved_to(data, entry.stem, tagged)
            if moved is not None:
                run_dir = _follow_move(entry, data, *moved)
        if run_dir in seen:  # found again at a path registered too (`runs --watch NEW_PATH`)
            continue
        seen.add(run_dir)
        if not run_dir.is_dir() or not is_run_dir(run_dir):
            if include_missing:
                tagged = _tagged_processes() if tagged is None else tagged
                note = _gone_note(data, tagged) if not run_dir.is_dir() else "no longer a run directory"
                out.append(RunInfo(run_dir=run_dir, status="unknown", note=note, gone=True))
            continue
        try:
            out.append(run_status(run_dir))
        except UserError as exc:
            out.append(RunInfo(run_dir=run_dir, status="unknown", note=exc.one_line()))
    out.sort(key=lambda r: r.started_at or 0, reverse=True)
    return out


# --------------------------------------------------------------------------------------------------
# Launch
# --------------------------------------------------------------------------------------------------
def busy_gpus(indices: Iterable[int] | None = None, nvml: Any = None) -> list[str]:
    """One line per GPU that already runs compute processes (someone else's training?)."""
    from minicpm_tui.core.nvml import NA, Nvml

    lib = nvml if nvml is not None else Nvml()
    if not lib.available:
        return []
    count = lib.device_count()
    wanted = list(indices) if indices is not None else list(range(count))
    lines = []
    for index in wanted:
        if not 0 <= index < count:
            continue
        handle = lib.handle(index)
        if handle is NA:
            continue
        procs = lib.call("nvmlDeviceGetComputeRunningProcesses", handle, default=[]) or []
        if procs:
            used = sum((getattr(p, "usedGpuMemory", 0) or 0) for p in procs) / 2**30
            pids = ", ".join(str(getattr(p, "pid", "?")) for p in procs[:4])
            lines.append(f"GPU {index} is busy: {len(procs)} process(es) (pid {pids}) hold {used:.1f} GiB")
    return lines


def _visible_devices(env: dict[str, str]) -> list[int] | None:
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    out = []
    for part in value.split(","):
        part = part.strip()
        if part.isdigit():
            out.append(int(part))
    return out


def _refuse_if_live(run_dir: Path) -> None:
    current = run_status(run_dir)
    if current.status in LIVE:
        pid = current.pid or "not yet known"
        raise UserError(f"this run is already {current.status} (pid {pid}, {current.how})",
                        where=str(run_dir), fix=f"watch it with `minicpm-tui monitor {run_dir}` or stop it "
                        f"with `minicpm-tui stop {run_dir}`", exit_code=1)


def launch(run_dir: str | os.PathLike[str], resume: bool = False, *, env: dict[str, str] | None = None,
           command: list[str] | None = None, output_dir: str | os.PathLike[str] | None = None,
           wait_started: float = 15.0, nvml: Any = None) -> RunManifest:
    """Start the run directory's ``single_node.sh`` detached; return its manifest (status running).

    ``env`` adds environment variables for this attempt (the smoke run's overrides, CUDA_VISIBLE_DEVICES
    ...); ``command`` replaces ``bash single_node.sh`` (tests); ``output_dir`` overrides train.yaml's.
    Raises UserError when the run is already live, when there is nothing to resume, or when resuming
    would silently start over.
    """
    run_dir = require_run_dir(run_dir)
    if command is None:
        if not (run_dir / LAUNCH_SCRIPT).is_file():
            raise UserError(f"{LAUNCH_SCRIPT} is missing", where=str(run_dir),
                            fix="regenerate the run directory with `minicpm-tui generate`")
        command = ["bash", LAUNCH_SCRIPT]
    _refuse_if_live(run_dir)
    # single_node.sh reads TRAIN_YAML (the smoke run points it at smoke/train.yaml).
    yaml_rel = (env or {}).get("TRAIN_YAML") or "train.yaml"
    cfg = _train_yaml(run_dir, yaml_rel)
    if output_dir:
        out_dir: Path | None = Path(output_dir).expanduser().resolve()
    elif cfg.get("output_dir"):
        value = Path(str(cfg["output_dir"])).expanduser()
        out_dir = value if value.is_absolute() else (run_dir / value).resolve()
    else:
        out_dir = None
    overwrite = bool(cfg.get("overwrite_output_dir", False))
    found = checkpoints(out_dir)
    saved = [] if found or overwrite or cfg.get("resume_from_checkpoint") else saved_model_files(out_dir)
    start_over = ("move the output directory away (or delete it) to start over; a stop saves the model, "
                  "only a checkpoint-N (every save_steps) can be resumed")
    if resume:
        if not found:
            raise UserError("nothing to resume from: no checkpoint-N folder in the output directory"
                            + (f", only a saved model ({saved[0]})" if saved else ""),
                            where=str(out_dir),
                            fix=start_over if saved else "run without --resume to start from the beginning",
                            exit_code=1)
        if overwrite:
            raise UserError("train.yaml sets overwrite_output_dir: true, so LLaMA-Factory would start over "
                            "instead of resuming", where=str(run_dir / "train.yaml"),
                            fix="set overwrite_output_dir: false there, then run with --resume again")
    elif found and not overwrite:
        raise UserError(f"the output directory already holds {found[-1].name}; LLaMA-Factory would resume "
                        "from it", where=str(out_dir),
                        fix="pass --resume to continue it, or move the output directory away to start over",
                        exit_code=1)
    elif saved:
        raise UserError(f"the output directory holds a saved model ({saved[0]}) but no checkpoint-N, so "
                        "LLaMA-Factory would refuse to start ('Output directory already exists and is not "
                        "empty')", where=str(out_dir), fix=start_over, exit_code=1)

    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update({
        "RECORD_VRAM": "1",  # LLaMA-Factory logs its measured VRAM peaks into trainer_log.jsonl
        # With these LLaMA-Factory installs its SIGABRT handler: `stop` can end after the current step
        # and let it save, as its web UI does. The handler writes running_log.txt into the workdir.
        "LLAMABOARD_ENABLED": "1",
        "LLAMABOARD_WORKDIR": str(logs / "llamaboard"),
        "PYTHONUNBUFFERED": "1",  # logs reach the files as they happen
    })
    full_env.update(env or {})
    visible = _visible_devices(full_env)
    if visible is None and command == ["bash", LAUNCH_SCRIPT]:
        # The generated script's own default (`CUDA_VISIBLE_DEVICES=0,1` when unset).
        text = (run_dir / LAUNCH_SCRIPT).read_text(encoding="utf-8", errors="replace")
        found = re.search(r"\bCUDA_VISIBLE_DEVICES=\"?([\d,]+)", text)
        visible = _visible_devices({"CUDA_VISIBLE_DEVICES": found.group(1)}) if found else None
    warnings = busy_gpus(visible, nvml=nvml)

    with _ManifestLock(run_dir):
        # Again under the lock: two launches at once both passed the check above, and the second attempt
        # (refused by the supervisor's run lock) then hid the first, which kept training as "failed".
        _refuse_if_live(run_dir)
        manifest = RunManifest.load(run_dir) or RunManifest(run_dir=run_dir)
        manifest.output_dir = out_dir
        number = len(manifest.attempts) + 1
        tag = f"{_registry_key(run_dir)}-{number}-{int(time.time())}"
        full_env[RUN_TAG_ENV] = tag
        attempt = {
            "attempt": number, "status": "starting", "resume": resume, "command": command,
            "cwd": str(run_dir), "train_yaml": yaml_rel, "run_tag": tag, "host": socket.gethostname(), "user": _user(), "started_at": time.time(),
            "started_boottime": boottime(), "boot_id": boot_id(),
            "stdout": str(logs / f"attempt-{number}.stdout.log"),
            "stderr": str(logs / f"attempt-{number}.stderr.log"),
            # Names only: values may hold secrets (HF_TOKEN) and never go into a file.
            "env_keys": sorted((env or {}).keys()), "pid": None, "pgid": None, "exit_code": None,
            "ended_at": None, "warnings": warnings,
            # Where this attempt's lines of trainer_log.jsonl begin: LLaMA-Factory appends to the file, after an
            # earlier training's lines (a fresh start) or the attempt it resumes (whose steps it logs again).
            "trainer_log_from": trainer_log_mark(out_dir),
            "resume_step": resume_step(run_dir, cfg, out_dir) if resume else None,
        }
        manifest.attempts.append(attempt)
        manifest.save()
    with open(logs / "supervisor.out", "ab") as sup_out:
        proc = subprocess.Popen([sys.executable, str(resource_script("run_supervisor.py")), str(run_dir),
                                 str(number), str(_registry_dir())], cwd=run_dir, env=full_env, stdin=subprocess.DEVNULL,
                                stdout=sup_out, stderr=sup_out, start_new_session=True, close_fds=True)
    # Reap it if this process lives longer than the run (the TUI), so it does not linger as a zombie.
    threading.Thread(target=proc.wait, name="supervisor-reaper", daemon=True).start()
    _update_current(run_dir, {"supervisor_pid": proc.pid})
    try:
        register_run(run_dir, run_tag=tag)
    except UserError as exc:  # the run is started: say so, do not fail
        warnings.append(f"`minicpm-tui runs` will not list this run: {exc.one_line()}")
    deadline = time.time() + wait_started
    while time.time() < deadline:
        manifest = RunManifest.load(run_dir)
        if manifest is not None and manifest.status != "starting":
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    manifest = RunManifest.load(run_dir) or manifest
    manifest.warnings = warnings
    return manifest


def resume_step(run_dir: Path, cfg: dict[str, Any], out_dir: Path | None, before: int | None = None) -> int | None:
    """The global step a resumed training goes on from: that of the checkpoint LLaMA-Factory picks (train.yaml's
    resume_from_checkpoint, else the highest checkpoint-N, as transformers' get_last_checkpoint does), from its
    trainer_state.json, else its name; None when not known. ``before``: the first step the resumed training
    logged, for a look after it began (it may have saved newer checkpoints since): the highest one below it."""
    named = cfg.get("resume_from_checkpoint")
    if isinstance(named, str) and named:
        folder: Path | None = Path(named).expanduser()
        folder = folder if folder.is_absolute() else run_dir / folder
    else:
        found = [p for p in checkpoints(out_dir) if before is None or int(p.name.split("-")[-1]) < before]
        folder = found[-1] if found else None
    if folder is None:
        return None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        step = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8")).get("global_step")
        if type(step) is int:
            return step
    digits = folder.name.rsplit("-", 1)[-1]
    return int(digits) if digits.isdigit() else None


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except Exception:
        return str(os.getuid())


# --------------------------------------------------------------------------------------------------
# Stop
# --------------------------------------------------------------------------------------------------
@dataclass
class StopResult:
    run_dir: Path
    was: str
    status: str
    actions: list[str] = field(default_factory=list)
    left: list[int] = field(default_factory=list)  # pids still alive at the end (should be empty)


def _wait_gone(procs: Callable[[], list[ProcInfo]], timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not procs():
            return True
        time.sleep(0.2)
    return not procs()


def _signal(pid: int, sig: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _term_targets(procs: list[ProcInfo], pgid: int | None) -> tuple[list[int], list[int]]:
    """Process groups and single processes to send SIGTERM: the launch group (torchrun passes it on to each
    worker's group), and each top process of the run outside it whose parent is gone (a worker whose
    torchrun died, the launch group itself when it is not known): its group if it leads one, else itself."""
    pids = {p.pid for p in procs}
    groups, singles = ([pgid] if pgid else []), []
    for p in procs:
        if p.pgid == pgid or p.ppid in pids or p.pgid in groups:
            continue
        if p.pgid == p.pid:
            groups.append(p.pid)
        else:
            singles.append(p.pid)
    return groups, singles


def _terminate(procs: Callable[[], list[ProcInfo]], pgid: int | None, grace: float, term_timeout: float,
               act: Callable[[str], None], by_group: bool = True) -> bool:
    """Finish-the-step-and-save, then SIGTERM, then SIGKILL; True when none of ``procs()`` is left. Without
    ``by_group`` only the processes of ``procs()`` are signalled, one by one (never a whole process group)."""
    targets = graceful_targets(procs()) if grace > 0 else []
    gone = False
    if targets:
        act(f"asked {len(targets)} training process(es) (pid {', '.join(map(str, targets))}) to stop after "
            f"the current step and save (SIGABRT, LLaMA-Factory's abort); waiting up to {grace:.0f} s")
        for pid in targets:
            _signal(pid, signal.SIGABRT)
        gone = _wait_gone(procs, grace)
        if gone:
            act("the run ended after its current step")
    elif grace > 0:
        act("no training process takes the graceful abort yet (still starting, or launched by hand "
            "without LLAMABOARD_ENABLED); terminating")
    if not gone:
        # torchrun turns SIGTERM into a SIGTERM to each worker's own process group.
        groups, singles = _term_targets(procs(), pgid) if by_group else ([], [p.pid for p in procs()])
        said = f"process group {groups[0]}" if groups == [pgid] else f"process group(s) {groups}"
        said = f"{said}{f' and pid {singles}' if singles else ''}" if groups else f"pid {singles}"
        act(f"sent SIGTERM to {said}; waiting up to {term_timeout:.0f} s")
        for group_id in groups:
            _signal(group_id, signal.SIGTERM, group=True)
        for pid in singles:
            _signal(pid, signal.SIGTERM)
        gone = _wait_gone(procs, term_timeout)
    if not gone:
        left = procs()
        groups = sorted({p.pgid for p in left if p.pgid == p.pid or (pgid and p.pgid == pgid)}) if by_group else []
        act(f"sent SIGKILL to {len(left)} remaining process(es) of the run"
            f"{f' (groups {groups})' if by_group else ''}")
        for group_id in groups:
            _signal(group_id, signal.SIGKILL, group=True)
        for p in left:
            _signal(p.pid, signal.SIGKILL)
        gone = _wait_gone(procs, 10)
    return gone


def _wait_supervisor(run_dir: Path, timeout: float = 15.0) -> None:
    """Let the supervisor record the end (it holds logs/.run.lock while it lives)."""
    deadline = time.time() + timeout
    while time.time() < deadline and _lock_held(run_dir):
        time.sleep(0.1)


def stop(run_dir: str | os.PathLike[str], *, grace: float = 60.0, term_timeout: float = 15.0,
         say: Callable[[str], None] | None = None) -> StopResult:
    """Stop a run: finish-the-step-and-save first, then SIGTERM, then SIGKILL to its process group."""
    say = say or (lambda _text: None)
    gone = registered_gone(run_dir)
    if gone is not None:
        return _stop_gone(*gone, grace=grace, term_timeout=term_timeout, say=say)
    run_dir = Path(run_dir).expanduser().resolve()
    damage = _manifest_damage(run_dir)
    if damage is not None:
        return _stop_without_manifest(run_dir, damage, grace, term_timeout, say)
    info = run_status(run_dir)
    result = StopResult(run_dir=run_dir, was=info.status, status=info.status)
    if info.status not in LIVE:
        result.actions.append(f"not running ({info.status}); nothing to stop")
        say(result.actions[-1])
        return result
    if info.host and info.host != socket.gethostname():
        raise UserError(f"this run lives on host {info.host}", where=str(run_dir),
                        fix=f"run `minicpm-tui stop` there (ssh {info.host})")
    if info.status == "starting":  # give the supervisor a moment to record the group
        deadline = time.time() + 10
        while time.time() < deadline and (info.pgid is None):
            time.sleep(0.1)
            info = run_status(run_dir)
    pgid = info.pgid
    if not pgid:
        raise UserError("the run's process group is not known yet", where=str(run_dir), fix="retry in a moment")
    manifest = RunManifest.load(run_dir) if info.how != "by hand" else None
    cur = manifest.current if manifest is not None else {}
    if manifest is not None:
        _update_current(run_dir, {"stop_requested_at": time.time()})
    hand = proc_info(info.pid) if info.how == "by hand" and info.pid else None
    if hand is not None:
        _note_hand_run(run_dir, hand, info, stop_requested_at=time.time())

    def procs() -> list[ProcInfo]:
        return _attempt_procs(cur) if cur else processes_of(pgid)

    def act(text: str) -> None:
        result.actions.append(text)
        say(text)

    if info.how == "by hand":
        _register_seen(run_dir, act)  # as `runs` and `monitor` do: its end is listed

    gone = _terminate(procs, pgid, grace, term_timeout, act)
    result.left = [p.pid for p in procs()]
    if result.left:
        act(f"processes of the run still alive: {result.left} (uninterruptible I/O? check `ps -o stat`)")
    # Let the supervisor record the end; if it is gone, record it ourselves.
    _wait_supervisor(run_dir)
    manifest = RunManifest.load(run_dir) if info.how != "by hand" else None  # a hand run is no attempt of it
    if manifest is not None and manifest.status in LIVE:
        _update_current(run_dir, {"status": "stopped", "ended_at": time.time()})
    if hand is not None and gone:
        record = hand_run_record(run_dir)
        if record is not None and record.get("pid") == hand.pid:
            _note_hand_end(run_dir, record, info.output_dir, ended_at=time.time())
    result.status = run_status(run_dir).status if info.how != "by hand" else ("stopped" if gone else "running")
    act(f"run is {result.status}")
    return result


def _register_seen(run_dir: Path, act: Callable[[str], None]) -> None:
    """List a run that `stop` found by its processes (started by hand, or with a damaged manifest) in
    `runs`, as `monitor` does; a registry that cannot be written is said, not an error."""
    if not is_run_dir(run_dir):
        return
    try:
        register_run(run_dir, how="watched")
    except UserError as exc:
        act(f"`minicpm-tui runs` will not list this run: {exc.one_line()}")


def _unrecorded_procs(run_dir: Path) -> tuple[Callable[[], list[ProcInfo]], str] | None:
    """The live processes of a run directory found without its manifest, and how they were found; None when
    there are none.

    Provably this run's: the attempts (run tags) of which some process works for this very folder (its
    working directory or its stdout/stderr files are here, and no run directory nested in it is nearer;
    the supervisor's working directory is the run directory, and a copy's processes work at the original),
    with every process carrying those tags and their descendants; the supervisor is left to end by itself.
    Else the processes started by hand from here."""
    tags: set[str] = set()
    supervisors: set[int] = set()
    for tag, pids in _tagged_processes().items():
        if any(run_dir in _run_dirs_of(pid) for pid in pids):
            tags.add(tag)
            for pid in pids:
                info = proc_info(pid)
                if info is not None and any(part.endswith("run_supervisor.py") for part in info.cmdline):
                    supervisors.add(pid)
    if tags:
        def tagged() -> list[ProcInfo]:
            seen: dict[int, ProcInfo] = {}
            for tag in sorted(tags):
                seen.update({p.pid: p for p in processes_of(None, tag, exclude=supervisors)})
            return sorted(seen.values(), key=lambda p: p.pid)

        if tagged():
            return tagged, f"by their run tag ({', '.join(sorted(tags))}) and working directory"
    hand = _hand_processes(run_dir)
    if hand:
        pgid = min(hand, key=lambda p: p.start_ticks).pgid
        return (lambda: processes_of(pgid)), "started by hand from this folder"
    return None


def _stop_without_manifest(run_dir: Path, damage: UserError, grace: float, term_timeout: float,
                           say: Callable[[str], None]) -> StopResult:
    """``stop`` for a run whose manifest cannot be read: a runaway training must still be stoppable."""
    found = _unrecorded_procs(run_dir)
    if found is None:
        raise UserError(f"{damage.message}, and no process of this run is alive (none carries a run tag of this "
                        "folder, none was started by hand here): nothing to stop", where=damage.where,
                        fix=damage.fix)
    procs, how = found
    result = StopResult(run_dir=run_dir, was="running", status="running")

    def act(text: str) -> None:
        result.actions.append(text)
        say(text)

    pids = [p.pid for p in procs()]
    act(f"{damage.where}: {damage.message}; stopping the run without it: {len(pids)} process(es) found "
        f"{how} (pid {', '.join(map(str, pids))})")
    _register_seen(run_dir, act)
    gone = _terminate(procs, None, grace, term_timeout, act)
    result.left = [p.pid for p in procs()]
    if result.left:
        act(f"processes of the run still alive: {result.left} (uninterruptible I/O? check `ps -o stat`)")
    _wait_supervisor(run_dir)
    result.status = "stopped" if gone else "running"
    act(f"run is {result.status}; its manifest is left as it was: {damage.fix}")
    return result


def registered_gone(raw: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """A run directory that the runs registry knows and that is no longer there (deleted, or moved where its
    processes could not take the registry along): its path and its registry entry; else None."""
    if symlink_loop(raw) is not None or os.path.exists(os.path.expanduser(os.fspath(raw))):
        return None
    for run_dir in dict.fromkeys((Path(raw).expanduser().resolve(), absolute_path(raw))):
        data = _read_entry(_registry_entry(run_dir))
        if data is not None and data["run_dir"] == str(run_dir):
            return run_dir, data
    return None


def _is_supervisor(pid: int) -> bool:
    info = proc_info(pid)
    return info is not None and any(part.endswith("run_supervisor.py") for part in info.cmdline)


def _stop_gone(run_dir: Path, data: dict[str, Any], *, grace: float, term_timeout: float,
               say: Callable[[str], None]) -> StopResult:
    """``stop`` for a registered run whose folder is gone. One moved on the same filesystem is stopped where
    it is now; else only the processes that carry its run tag (the registry's record of its latest launch) are
    signalled, one by one, and its supervisor is left to end by itself once they are gone."""
    tagged = _tagged_processes()
    key = _registry_key(run_dir)
    moved = _moved_to(data, key, tagged)
    if moved is not None:
        new = _follow_move(_registry_entry(run_dir), data, *moved)
        text = f"{run_dir} is gone: the run directory was moved to {new} while it ran; stopping it there"
        say(text)
        result = stop(new, grace=grace, term_timeout=term_timeout, say=say)
        result.actions.insert(0, text)
        return result
    tag = data.get("run_tag")
    # Entries written before run tags were recorded: every tag starts with the key of the launch's path.
    tags = {tag} if isinstance(tag, str) else {t for t in tagged if t.startswith(key + "-")}
    supervisors = {pid for t in tags for pid in tagged.get(t, []) if _is_supervisor(pid)}
    result = StopResult(run_dir=run_dir, was="unknown", status="unknown")

    def act(text: str) -> None:
        result.actions.append(text)
        say(text)

    def procs() -> list[ProcInfo]:
        return [p for p in all_procs() if p.pid not in supervisors and p.pid != os.getpid()
                and _run_tag_of(p.pid) in tags]

    when = data.get("registered_at")
    launch = re.search(r"-(\d+)-(\d+)$", tag) if isinstance(tag, str) else None
    if launch:  # a launch's tag: KEY-ATTEMPT-TIME
        known = f"attempt {launch.group(1)} launched {age_text(time.time() - int(launch.group(2)))} ago"
    else:
        known = f"{data.get('how') or 'registered'} {age_text(time.time() - when)} ago" if isinstance(
            when, (int, float)) else str(data.get("how") or "registered")
    known += f", run tag {', '.join(sorted(tags))}" if tags else ", no run tag (started by hand)"
    pids = [p.pid for p in procs()]
    if not pids:
        why = ("no process carrying its run tag is alive" if tags else
               "processes started by hand carry no run tag, so none can be told to be its own (`ps -ef` lists "
               "them; stop them with `kill PID`)")
        act(f"the run directory is gone (deleted, or moved); the runs registry knows it ({known}), and {why}: "
            f"nothing to stop; {GONE_FIX}")
        return result
    result.was = "running"
    act(f"the run directory is gone (deleted, or moved to another filesystem), but {len(pids)} process(es) carry "
        f"its run tag (pid {', '.join(map(str, pids))}; the runs registry knows it: {known}): stopping them")
    stopped = _terminate(procs, None, grace, term_timeout, act, by_group=False)
    result.left = [p.pid for p in procs()]
    if result.left:
        act(f"processes of the run still alive: {result.left} (uninterruptible I/O? check `ps -o stat`)")
    result.status = "stopped" if stopped else "running"
    act(f"run is {result.status}; nothing of it is recorded (its manifest went with the folder)")
    return result
