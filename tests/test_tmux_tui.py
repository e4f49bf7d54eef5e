"""A real terminal: tmux runs `minicpm-tui` at 80x24 and send-keys walks the wizard to a written run
directory; capture-pane checks each screen. tmux comes from Debian's packages (installed when missing)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _ensure_tmux() -> str:
    found = shutil.which("tmux")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "tmux"], check=False, capture_output=True, timeout=600)
    found = shutil.which("tmux")
    if not found:
        pytest.skip("tmux is not installed and could not be installed (apt-get install tmux)")
    return found


class Pane:
    def __init__(self, tmux: str, name: str) -> None:
        self.tmux = tmux
        self.name = name

    def keys(self, *keys: str) -> None:
        for key in keys:
            subprocess.run([self.tmux, "send-keys", "-t", self.name, key], check=True)
            time.sleep(0.15)

    def burst(self, *keys: str) -> None:
        """All of ``keys`` in one send-keys call: they reach the app at once, as a paste or a fast typist's."""
        subprocess.run([self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def capture(self) -> str:
        return subprocess.run([self.tmux, "capture-pane", "-p", "-t", self.name], check=True,
                              capture_output=True, text=True).stdout

    def wait_until(self, check, what: str, timeout: float = 120.0) -> str:
        deadline = time.time() + timeout
        screen = ""
        while time.time() < deadline:
            screen = self.capture()
            if check(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{what} never appeared; the screen was:\n{screen}")

    def wait_for(self, *texts: str, timeout: float = 120.0) -> str:
        """The screen once every one of ``texts`` is on it (a capture can land mid-frame)."""
        return self.wait_until(lambda screen: all(text in screen for text in texts), repr(texts), timeout)


@contextlib.contextmanager
def wizard_in_tmux(tmp_path: Path, env_prefix: str = ""):
    """`minicpm-tui --fresh` in a new 80x24 tmux session; ``env_prefix`` goes before the command."""
    tmux = _ensure_tmux()
    name = f"minicpm-tui-test-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    env.pop("MINICPM_TUI_HOME", None)
    home = os.environ["MINICPM_TUI_HOME"]  # the session's (cached LLaMA-Factory facts), without a draft
    (Path(home) / "config" / "wizard-draft.json").unlink(missing_ok=True)
    command = (f"cd {tmp_path} && {env_prefix} MINICPM_TUI_HOME={home} {sys.executable} -m minicpm_tui --fresh; "
               "echo EXITED-$?; sleep 300")
    subprocess.run([tmux, "-f", "/dev/null", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", command],
                   check=True, env=env)
    try:
        yield Pane(tmux, name)
    finally:
        subprocess.run([tmux, "kill-session", "-t", name], check=False, capture_output=True)


@pytest.fixture()
def pane(tmp_path):
    with wizard_in_tmux(tmp_path) as opened:
        yield opened


def test_no_color_means_no_hue(tmp_path):
    # Textual's answer to NO_COLOR is greyscale: every colour it sends is a shade of grey
    # (xterm-256 232-255), none a hue; without NO_COLOR the theme's hues are there.
    def colours(env_prefix: str) -> set[int]:
        with wizard_in_tmux(tmp_path, env_prefix) as pane:
            pane.wait_for("Plan for", "Next >", "f1 Help", timeout=30)
            time.sleep(0.5)
            styled = subprocess.run([pane.tmux, "capture-pane", "-e", "-p", "-t", pane.name], check=True,
                                    capture_output=True, text=True).stdout
        return {int(n) for n in re.findall(r"\x1b\[(?:[0-9;]*;)?[34]8;5;(\d+)", styled)}

    grey = set(range(232, 256)) | {0, 7, 8, 15, 16, 231}
    plain = colours("NO_COLOR=1")
    assert plain and plain <= grey, f"hues under NO_COLOR: {sorted(plain - grey)}"
    assert colours("") - grey, "the themed screen should have hues (else this test proves nothing)"


def test_walk_the_wizard_in_tmux_at_80x24(pane, tmp_path):
    pane.wait_for("Plan for", "1 Hardware", "Next >", "f1 Help", timeout=30)
    # This machine has no GPU: the probe says so and the wizard carries on (CPU smoke run).
    screen = pane.wait_for("No NVIDIA GPU here", timeout=30)
    assert all(len(line) <= 80 for line in screen.splitlines())
    pane.keys("C-n")
    pane.wait_for("template", timeout=60)
    pane.wait_for("cpm4", timeout=120)
    pane.keys("C-n")
    pane.wait_for("usable", timeout=120)
    pane.keys("C-n")
    pane.wait_for("why:", timeout=180)
    pane.keys("C-n")
    pane.wait_for("learning_rate", timeout=30)
    pane.keys("C-n")
    pane.wait_for("train.yaml", timeout=180)
    pane.keys("C-w")
    pane.wait_for("written", timeout=120)
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "single_node.sh").is_file()
    pane.keys("C-n")
    pane.wait_for("smoke run", "Run directory", "launch", timeout=30)
    # The "done when": s starts the CPU smoke run and the live monitor shows its loss.
    pane.keys("s")
    screen = pane.wait_for("monitor", "loss", timeout=120)
    screen = pane.wait_until(lambda text: re.search(r"loss \d+\.\d{4}", text), "a loss value", timeout=300)
    assert all(len(line) <= 80 for line in screen.splitlines())
    pane.wait_for("finished", timeout=300)
    pane.keys("d")  # detach: back on the run step, nothing left running
    pane.wait_for("smoke run", "Run directory", timeout=30)
    pane.keys("C-q")
    # A worker still in a subprocess (the preflight) finishes before the process exits.
    pane.wait_for("EXITED-0", timeout=240)


def test_keys_sent_at_once_reach_the_fields_in_order(pane, tmp_path):
    # Textual's Input ran its bound keys (Ctrl+U, Ctrl+K, Home, Enter) only once they had bubbled up
    # to the app, after the characters sent with them: a burst cleared what it had just typed.
    pane.wait_for("No NVIDIA GPU here", "f1 Help", timeout=30)
    pane.keys("C-n")
    pane.wait_for("cpm4", timeout=120)
    pane.keys("C-n")
    pane.wait_for("usable", "Preview through the template", timeout=120)  # settled: nothing moves the focus
    pane.keys("Tab")  # the demos list -> the file field
    pane.keys("x")
    pane.wait_for("│ x ")
    pane.burst("C-u", "bad.json", "Enter")
    # Typed, then submitted (the name follows the file): not cleared after the typing.
    screen = pane.wait_for("│ bad.json ", "│ bad ", timeout=30)
    assert "│ xbad.json" not in screen
    pane.keys("BTab", "Down", "Up")  # back to the demos list: demo_sft again
    pane.wait_for("12 usable", timeout=60)
    pane.keys("C-n")
    pane.wait_for("why:", timeout=180)
    pane.keys("C-n")
    pane.wait_for("learning_rate", timeout=30)
    # The first field (lora_rank, 8) has the focus. Home, Ctrl+K, a value and Ctrl+N at once: the
    # value is set, and step 6 is built from it.
    pane.burst("Home", "C-k", "5", "C-n")
    screen = pane.wait_for("train.yaml", "run directory", "^w Write", timeout=180)
    run_line = next(line for line in screen.splitlines() if "run directory" in line)
    assert "runs/" in run_line, screen  # the default, not a field cleared by a stray Ctrl+K
    pane.keys("BTab", "Z")  # the run directory's field
    pane.wait_for("Z ", timeout=30)
    pane.burst("C-u", "runs/wiz1", "Tab", "C-w")  # Tab: to the file tree, where Ctrl+W writes
    pane.wait_for("written", timeout=180)
    assert (tmp_path / "runs" / "wiz1" / "single_node.sh").is_file()
    assert not (tmp_path / "Z").exists() and not (tmp_path / "runs" / "wiz1Z").exists()
    train = (tmp_path / "runs" / "wiz1" / "train.yaml").read_text(encoding="utf-8")
    assert re.search(r"^lora_rank: 5$", train, re.M), train
    pane.keys("C-q")
    pane.wait_for("EXITED-0", timeout=240)
