"""`minicpm-tui doctor`: check the training environment."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--python", metavar="PATH",
                        help="the training environment's python (default: $MINICPM_TUI_TRAIN_PYTHON or this one)")


def run(args: argparse.Namespace) -> int:
    from minicpm_tui.core.doctor import format_table, run_doctor

    report = run_doctor(args.python)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_table(report))
    return 0 if report.ok else 1
