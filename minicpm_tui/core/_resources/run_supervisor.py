"""Supervise one attempt of a run: start it, wait for it, record how it ended in the run manifest.

Started by ``minicpm_tui.core.runner.launch`` in a new session (setsid), so it has no controlling
terminal and no SSH hang-up can reach it. It outlives the launcher, then:
- starts the run's command in its own process group (the group ``stop`` signals), with stdout and
  stderr going to files, never to a pipe;
- holds an exclusive lock on ``logs/.run.lock`` while the attempt lives (how others tell "alive");
- records pid, process group, and finally exit code, end time and status in ``run_manifest.json``;
- after the command ends, clears what is left of its process group so no orphan keeps a GPU;
- if the run directory was moved meanwhile, moves its entry in the runs registry along, so that
  `minicpm-tui runs` lists it at its new path.

Stdlib only: it must not depend on minicpm-tui's own modules being importable later.
Usage: run_supervisor.py RUN_DIR ATTEMPT_NUMBER [REGISTRY_DIR]
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

MANIFEST = "run_manifest.json"


def _write_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def update_manifest(run_dir: str, attempt_no: int, changes: dict) -> dict:
    """Read-modify-write under the manifest lock (the launcher and ``stop`` write it too)."""
    lock_path = os.path.join(run_dir, "logs", ".manifest.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = os.path.join(run_dir, MANIFEST)
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        for attempt in data.get("attempts", []):
            if attempt.get("attempt") == attempt_no:
                attempt.update(changes)
                current = attempt
        data.update({k: current.get(k) for k in ("status", "exit_code", "pid", "pgid", "started_at",
                                                  "ended_at", "host", "command")})
        _write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return current


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _leftovers(pgid: int, tag: str | None) -> list[int]:
    """Live processes of the attempt: the launch group, plus any carrying the run tag in their environment
    (torchrun starts each worker in a session of its own, so workers are outside the launch group)."""
    needle = f"MINICPM_TUI_RUN={tag}".encode() if tag else None
    me, uid = os.getpid(), os.getuid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            if int(fields[2]) == pgid:
                found.append(int(entry))
                continue
            if needle is None or os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _kill_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _log(run_dir: str, text: str) -> None:
    # Never fatal: a run directory deleted under us (`mv` to another filesystem copies, then deletes) must
    # not end the supervision from a signal handler.
    with contextlib.suppress(OSError), open(os.path.join(run_dir, "logs", "supervisor.log"), "a",
                                            encoding="utf-8") as handle:
        handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{os.getpid()}] {text}\n")


def _registry_key(run_dir: str) -> str:
    """As ``minicpm_tui.core.runner._registry_key``: the entry of a run directory is KEY.json."""
    return hashlib.sha256(run_dir.encode("utf-8")).hexdigest()[:16]


def follow_move(registry: str, launched_in: str) -> None:
    """The run directory was moved while the attempt ran: register it at its new path, forget the old one.
    Only an entry still naming the old path is moved (`runs` may have moved it already)."""
    try:
        here = os.getcwd()
    except OSError:  # deleted
        return
    if here == launched_in:
        return
    old = os.path.join(registry, _registry_key(launched_in) + ".json")
    try:
        with open(old, encoding="utf-8") as handle:
            data = json.load(handle)
        if not isinstance(data, dict) or data.get("run_dir") != launched_in:
            return
        data.update({"run_dir": here, "moved_from": launched_in})
        _write_atomic(os.path.join(registry, _registry_key(here) + ".json"), json.dumps(data) + "\n")
        os.unlink(old)
    except (OSError, ValueError) as exc:
        if not isinstance(exc, FileNotFoundError):
            _log(os.curdir, f"could not move the runs registry entry along to {here}: {exc}")
        return
    _log(os.curdir, f"the run directory moved from {launched_in} to {here}; the runs registry follows")


def main() -> int:
    attempt_no = int(sys.argv[2])
    launched_in = sys.argv[1]
    registry = sys.argv[3] if len(sys.argv) > 3 else None
    # Every path from here on is relative to our working directory, which follows the run directory if it
    # is moved (renamed) while the attempt runs: the end is then still recorded in its manifest.
    os.chdir(sys.argv[1])
    run_dir = os.curdir
    # No terminal can reach us (new session), but be explicit: a hang-up is not a reason to stop.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with open(os.path.join(run_dir, MANIFEST), encoding="utf-8") as handle:
        manifest = json.load(handle)
    attempt = next(a for a in manifest["attempts"] if a["attempt"] == attempt_no)

    lock = open(os.path.join(run_dir, "logs", ".run.lock"), "a")  # noqa: SIM115 - held for our lifetime
    deadline = time.time() + 5
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.time() > deadline:
                update_manifest(run_dir, attempt_no, {"status": "failed", "exit_code": None,
                                                      "ended_at": time.time(),
                                                      "error": "another attempt of this run is alive"})
                _log(run_dir, "refused: another attempt holds the run lock")
                return 3
            time.sleep(0.1)

    stdout = open(attempt["stdout"], "ab")  # noqa: SIM115
    stderr = open(attempt["stderr"], "ab")  # noqa: SIM115
    try:
        child = subprocess.Popen(attempt["command"], cwd=run_dir, stdin=subprocess.DEVNULL, stdout=stdout,
                                 stderr=stderr, process_group=0, close_fds=True)
    except OSError as exc:
        update_manifest(run_dir, attempt_no, {"status": "failed", "exit_code": 127, "ended_at": time.time(),
                                              "error": f"cannot start {attempt['command'][0]}: {exc}"})
        _log(run_dir, f"cannot start: {exc}")
        return 127
    stdout.close()
    stderr.close()
    pgid = child.pid

    def forward(signum: int, _frame: object) -> None:
        # Someone signalled the supervisor itself: pass it on to the run, keep supervising.
        _log(run_dir, f"got signal {signum}; forwarding SIGTERM to process group {pgid}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    update_manifest(run_dir, attempt_no, {"status": "running", "pid": child.pid, "pgid": pgid,
                                          "pid_start_ticks": _start_ticks(child.pid),
                                          "supervisor_pid": os.getpid(), "host": socket.gethostname(),
                                          "started_at": attempt.get("started_at") or time.time()})
    _log(run_dir, f"attempt {attempt_no}: started pid {child.pid} (process group {pgid}): {attempt['command']}")
    rc = child.wait()
    exit_code = rc if rc >= 0 else 128 - rc  # killed by signal N -> 128+N, as a shell reports it
    # Whatever is left of the run (a worker whose torchrun died) must not keep a GPU.
    tag = attempt.get("run_tag")
    left = _leftovers(pgid, tag)
    if left:
        _log(run_dir, f"command ended ({exit_code}) but {len(left)} of its processes remain {left}; terminating")
        _kill_all(left, signal.SIGTERM)
        end = time.time() + 10
        while _leftovers(pgid, tag) and time.time() < end:
            time.sleep(0.2)
        _kill_all(_leftovers(pgid, tag), signal.SIGKILL)
    try:
        with open(os.path.join(run_dir, MANIFEST), encoding="utf-8") as handle:
            current = next(a for a in json.load(handle)["attempts"] if a["attempt"] == attempt_no)
        status = "stopped" if current.get("stop_requested_at") else "finished" if exit_code == 0 else "failed"
        update_manifest(run_dir, attempt_no, {"status": status, "exit_code": exit_code, "ended_at": time.time()})
    except (OSError, ValueError, LookupError, TypeError, AttributeError, NameError, StopIteration) as exc:
        # Damaged or removed meanwhile (`stop` still stops such a run): say so in our log, not as a traceback.
        _log(run_dir, f"attempt {attempt_no}: ended with exit code {exit_code}; cannot record it in {MANIFEST}: "
                      f"{type(exc).__name__}: {exc}")
        return 0
    _log(run_dir, f"attempt {attempt_no}: {status}, exit code {exit_code}")
    if registry:
        follow_move(registry, launched_in)
    return 0


if __name__ == "__main__":
    sys.exit(main())
