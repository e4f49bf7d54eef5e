"""`minicpm-tui smoke RUN_DIR`: a short real training of a tiny model through the run's own single_node.sh."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `minicpm-tui generate`")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps (default 3)")
    parser.add_argument("--nproc", type=int, default=None,
                        help="processes (default: 2 when the plan uses DeepSpeed or several GPUs, else 1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before the smoke run is stopped (default 900)")
    parser.add_argument("--json", action="store_true", help="machine-readable result on stdout")


def run(args: argparse.Namespace) -> int:
    from minicpm_tui.commands._numbers import check_number
    from minicpm_tui.core.errors import UserError
    from minicpm_tui.core.smoke import smoke

    if args.steps < 1:
        raise UserError("--steps must be at least 1", where="--steps")
    check_number(args.nproc, "--nproc", minimum=1, example="2")
    check_number(args.timeout, "--timeout", above=True, example="900")
    started = time.time()
    say = _Progress(sys.stderr)
    try:
        result = smoke(args.run_dir, steps=args.steps, nproc=args.nproc, timeout=args.timeout, progress=say)
    except KeyboardInterrupt:  # core.smoke has stopped every process of it by now
        say.end()  # before the words below, not after them (finally)
        _interrupted(args.run_dir, started)
        return 130
    finally:
        say.end()
    if args.json:
        print(json.dumps(result.to_json()))
        return 0 if result.passed else 1
    spec = result.spec
    for note in spec.notes if spec else []:
        print(f"note: {note}")
    for step, loss in result.losses:
        print(f"step {step}: loss {loss:.4f}")
    if result.passed:
        print(f"smoke PASSED in {result.duration_s:.0f} s ({spec.nproc if spec else 1} process(es), "
              f"log {result.log_path})")
        return 0
    print(f"smoke FAILED: {result.reason} (log {result.log_path})")
    if result.log_tail:
        print("--- log tail ---")
        print(result.log_tail)
    return 1


class _Progress:
    """The smoke run's phases on stderr, ``smoke: PHASE``. On a terminal the training step counts up in place;
    elsewhere (a file, a pipe, CI) each phase is one line, and training's is its first step."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.phase: str | None = None
        self.open = False  # a step line a terminal shows that no newline has ended yet

    def __call__(self, phase: str, step: int | None, total: int | None) -> None:
        if phase == "training" and not step:
            return  # its line comes with the first step, which tells how many there are
        text = f"training step {step}/{total}" if phase == "training" and total else (
            f"training step {step}" if phase == "training" else phase)
        if phase == self.phase and not (self.tty and phase == "training"):
            return
        if self.tty and phase == "training":
            self.stream.write(f"\r\033[Ksmoke: {text}")
            self.open = True
        else:
            self.end()
            self.stream.write(f"smoke: {text}\n")
        self.phase = phase
        self.stream.flush()

    def end(self) -> None:
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


def _interrupted(run_dir: str, started: float) -> None:
    """Ctrl-C: say what became of the smoke run (it ended with exit 130 and not a word)."""
    from minicpm_tui.core.paths import absolute_path
    from minicpm_tui.core.smoke import SMOKE_LOG

    folder = absolute_path(run_dir)
    log = folder / SMOKE_LOG
    seen = f"; its log so far: {log}" if log.is_file() and log.stat().st_mtime >= started - 1 else ""
    print(f"minicpm-tui: smoke run interrupted (Ctrl-C): it is stopped, nothing of it is left running{seen}; "
          f"run it again with `minicpm-tui smoke {folder}`", file=sys.stderr)
