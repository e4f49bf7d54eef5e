"""`minicpm-tui stop RUN_DIR`: stop after the current step (and save), then the whole process group."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (see `minicpm-tui runs`)")
    parser.add_argument("--grace", type=float, default=60.0, metavar="S",
                        help="seconds to let the current step finish and LLaMA-Factory save (default 60; "
                        "0 skips straight to SIGTERM)")
    parser.add_argument("--timeout", type=float, default=15.0, metavar="S",
                        help="seconds between SIGTERM and SIGKILL to the process group (default 15)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from minicpm_tui.commands._numbers import check_number
    from minicpm_tui.core import runner

    gone = runner.registered_gone(args.run_dir)  # deleted while registered: the registry still knows its run
    run_dir = gone[0] if gone else runner.require_run_dir(
        args.run_dir, fix="see `minicpm-tui runs` for the runs on this machine")
    check_number(args.grace, "--grace", example="60")
    check_number(args.timeout, "--timeout", example="15")
    if gone is None:
        runner.require_marked_run_dir(run_dir)  # `stop /tmp` said "not running (never)", as if it were a run
    say = None if args.json else (lambda text: print(f"stop: {text}", flush=True))
    result = runner.stop(run_dir, grace=args.grace, term_timeout=args.timeout, say=say)
    if args.json:
        print(json.dumps({"run_dir": str(result.run_dir), "was": result.was, "status": result.status,
                          "actions": result.actions, "left": result.left}, indent=2))
    return 1 if result.left else 0
