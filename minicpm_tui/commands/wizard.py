"""`minicpm-tui` with no subcommand: the wizard (Textual)."""

from __future__ import annotations

import argparse
import sys

from minicpm_tui.core.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fresh", action="store_true",
                        help="start a new recipe instead of offering the saved draft")
    parser.add_argument("--runs", action="store_true", help="open the list of runs on this machine")


def run(args: argparse.Namespace) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("the wizard needs an interactive terminal",
                        fix="run it in a terminal, or use the subcommands (`minicpm-tui --help`), "
                        "e.g. `minicpm-tui monitor RUN_DIR --plain` over a pipe")
    from minicpm_tui.tui import gc_paused_for_startup

    with gc_paused_for_startup():
        from minicpm_tui.tui.app import run_wizard

        return run_wizard(use_draft=not args.fresh, runs=args.runs)
