"""`minicpm-tui runs`: the runs known on this machine, with status, progress and age."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.add_argument("--watch", metavar="RUN_DIR",
                        help="add a run directory you launch by hand (bash single_node.sh) to the list")
    parser.add_argument("--all", action="store_true", help="also list registered run directories that are gone")
    parser.add_argument("--forget", metavar="RUN_DIR", action="append", default=[],
                        help="drop a run directory from the list (a gone one, or one whose run ended); its files are "
                             "left as they are. May be given more than once")


def run(args: argparse.Namespace) -> int:

    from minicpm_tui.core import runner

    if args.watch and args.forget:
        from minicpm_tui.core.errors import UserError

        raise UserError("--watch and --forget are given together", where="--forget",
                        fix="register with --watch or drop with --forget, one at a time")
    for raw in args.forget:
        forgotten = runner.forget_run(raw)
        if not args.json:
            print(f"forgot {forgotten} (dropped from the list; no file was touched)")
    if args.watch:
        runner.watch_run(runner.require_run_dir(args.watch))
    known = runner.list_runs(include_missing=True)
    runs = known if args.all else [r for r in known if not r.gone]
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2))
        return 0
    gone = len(known) - len(runs)
    said = (f"{gone} registered run director{'y is' if gone == 1 else 'ies are'} gone (`minicpm-tui runs --all` "
            f"lists {'it' if gone == 1 else 'them'}; {runner.GONE_FIX})")
    if not runs and known:
        print(f"no runs to show: {said}")
        return 0
    if not runs:
        print("no runs yet: start one with `minicpm-tui run RUN_DIR` (or `minicpm-tui runs --watch RUN_DIR` for a "
              "run started by hand)")
        return 0
    print(f"{'STATUS':<9} {'EXIT':>4} {'PROGRESS':<16} {'AGE':>5}  RUN_DIR")
    for r in runs:
        exit_code = "-" if r.exit_code is None else str(r.exit_code)
        extra = f"  [{r.how}]" if r.how != "minicpm-tui" else ""
        if r.note:
            extra += f"  ({r.note})"
        print(f"{r.status:<9} {exit_code:>4} {r.progress:<16} {r.age:>5}  {r.run_dir}{extra}")
    if gone:
        print(f"({said})")
    return 0
