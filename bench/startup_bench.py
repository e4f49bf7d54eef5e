"""Cold-start figures: the CLI, the wizard's first screen in tmux, a bare Textual app, and LLaMA-Factory's web UI
(a benchmark, not a test: this machine is shared).

    .venv/bin/python bench/startup_bench.py [--repeat 7]

Prints the median and best wall time of each command in a fresh interpreter, and the target.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TARGET_S = 0.5
CASES = {
    "minicpm-tui --version": [sys.executable, "-m", "minicpm_tui", "--version"],
    "minicpm-tui --help": [sys.executable, "-m", "minicpm_tui", "--help"],
    "minicpm-tui runs --help": [sys.executable, "-m", "minicpm_tui", "runs", "--help"],
    "import minicpm_tui.core.planner": [sys.executable, "-c", "import minicpm_tui.core.planner"],
    "import minicpm_tui.tui.app": [sys.executable, "-c", "import minicpm_tui.tui.app"],
    "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
}


BARE_APP = Path(__file__).resolve().parent / "_support" / "bare_textual_app.py"


FIRST_FRAME = ("Hardware", "Next", "Quit")
# Down on the first screen highlights the first hardware preset; the details pane answers at once.
KEY_ANSWERED = ("Loading 1x-a10-24gb", "NVIDIA A10")


def tui_first_paint(bare: bool = False, timeout: float = 20.0, answer_key: bool = False
                    ) -> tuple[float, float | None] | None:
    """Seconds from starting `minicpm-tui` (or a bare Textual app) in an 80x24 tmux pane until the
    first screen is drawn, and (``answer_key``) until a Down key sent at that moment has visibly
    taken effect: the screen is not only drawn but interactive."""
    if not shutil.which("tmux"):
        return None
    session = f"mt-bench-{uuid.uuid4().hex[:8]}"
    home = tempfile.mkdtemp(prefix="mt-bench-home-")
    target = str(BARE_APP) if bare else "-m minicpm_tui --fresh"
    cmd = f"MINICPM_TUI_HOME={home} {sys.executable} {target}"

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                              text=True).stdout

    for _ in range(3):
        # Killing the last session ends the tmux server; a new session started while it exits can
        # fail ("server exited unexpectedly"): try again rather than lose the run.
        start = time.perf_counter()
        started = subprocess.run(["tmux", "-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "80", "-y",
                                  "24", cmd], env={**os.environ, "TERM": "xterm-256color"}, capture_output=True)
        if started.returncode == 0:
            break
        time.sleep(0.2)
    else:
        shutil.rmtree(home, ignore_errors=True)
        return None
    try:
        painted = None
        while time.perf_counter() - start < timeout:
            # The whole first frame, down to the footer (a capture can land mid-frame).
            if all(text in screen() for text in FIRST_FRAME):
                painted = time.perf_counter() - start
                break
            time.sleep(0.01)
        if painted is None or not answer_key:
            return None if painted is None else (painted, None)
        subprocess.run(["tmux", "send-keys", "-t", session, "Down"], check=True)
        while time.perf_counter() - start < timeout:
            if any(text in screen() for text in KEY_ANSWERED):
                return painted, time.perf_counter() - start
            time.sleep(0.01)
        return painted, None
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def webui_serving(timeout: float = 300.0) -> float | None:
    """Seconds until `llamafactory-cli webui` (bound to 127.0.0.1, nothing shared, no browser, no
    analytics) prints that it is serving; None when it does not within ``timeout``."""
    cli = Path(sys.executable).with_name("llamafactory-cli")
    if not cli.exists():
        return None
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(free_port()),
           "GRADIO_SHARE": "0", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "DISABLE_VERSION_CHECK": "1", "BROWSER": "true", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    # The web UI writes llamaboard_cache/ into its working directory: keep that out of the checkout.
    workdir = tempfile.mkdtemp(prefix="mt-bench-webui-")
    proc = subprocess.Popen([str(cli), "webui"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True, cwd=workdir)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Running on local URL" in line:
                return time.perf_counter() - start
            if time.perf_counter() - start > timeout:
                break
        return None
    finally:
        import signal

        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group we started, nothing else
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-webui", action="store_true", help="skip LLaMA-Factory's web UI comparison")
    args = parser.parse_args()
    # An installed copy has bytecode (pip compiles at install); an editable checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would compile every module at each start. Measure what users get.
    import compileall

    import minicpm_tui

    compileall.compile_dir(Path(minicpm_tui.__file__).parent, quiet=1)
    print(f"{'case':<38} {'median s':>9} {'best s':>8}  target")
    for name, cmd in CASES.items():
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True)
            times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                print(f"{name:<38} failed: {proc.stderr.decode()[-200:]}")
                break
        else:
            med = statistics.median(times)
            verdict = "ok" if med < TARGET_S else "OVER"
            print(f"{name:<38} {med:>9.3f} {min(times):>8.3f}  <{TARGET_S} s {verdict}")
    medians = {}
    answered = []
    for bare, name in ((True, "bare Textual app first screen (floor)"), (False, "wizard first screen in tmux 80x24")):
        runs = [r for r in (tui_first_paint(bare, answer_key=not bare) for _ in range(args.repeat)) if r]
        if not runs:
            print(f"{name}: not measured (no tmux, or no screen within 20 s)")
            continue
        paints = [painted for painted, _ in runs]
        answered += [key for _, key in runs if key is not None]
        medians[bare] = statistics.median(paints)
        verdict = "ok" if medians[bare] < TARGET_S else "OVER"
        print(f"{name:<38} {medians[bare]:>9.3f} {min(paints):>8.3f}  <{TARGET_S} s {verdict}")
    if answered:
        med = statistics.median(answered)
        verdict = "ok" if med < TARGET_S else "OVER"
        print(f"{'wizard answers a key sent at paint':<38} {med:>9.3f} {min(answered):>8.3f}  <{TARGET_S} s {verdict}")
    if len(medians) == 2:
        print(f"ratio: the wizard's first screen takes {medians[False] / medians[True]:.2f}x a bare Textual app's")
    if not args.no_webui:
        serving = webui_serving()
        if serving is None:
            print("llamafactory-cli webui: not measured (not installed, or not serving within 300 s)")
        else:
            print(f"{'llamafactory-cli webui serving':<38} {serving:>9.3f}")
            if False in medians:
                print(f"ratio: minicpm-tui's first screen is {serving / medians[False]:.1f}x faster than "
                      f"LLaMA-Factory's web UI starting to serve (target >= 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
