"""`minicpm-tui doctor`: check the training environment; `--save FILE` keeps its report for generating elsewhere."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from minicpm_tui.core.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--python", metavar="PATH",
                        help="the training environment's python (default: $MINICPM_TUI_TRAIN_PYTHON or this one)")
    parser.add_argument("--save", metavar="FILE",
                        help="save the environment's LLaMA-Factory report; write run directories for it from "
                             "another machine with `generate --lf-target FILE`")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --save file")


def run(args: argparse.Namespace) -> int:
    from minicpm_tui.core.doctor import format_table, run_doctor

    target = Path(args.save).expanduser() if args.save else None
    if target is not None and target.exists() and not args.force:  # before the slow introspection
        raise UserError(f"{target} exists", where="--save", fix="pass --force to overwrite it or pick another name")
    report = run_doctor(args.python)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_table(report))
    if target is not None:
        _save(report.raw, target, args.save, quiet_stdout=args.json)
    return 0 if report.ok else 1


def _save(raw: dict, target: Path, name: str, quiet_stdout: bool) -> None:
    from minicpm_tui.core.atomic import write_atomic
    from minicpm_tui.core.lftarget import report_problem

    problem = report_problem(raw) if raw else "the training Python could not be inspected"
    if problem:  # generate --lf-target would refuse it: say so here, where it can be fixed
        raise UserError(f"not saved: {problem}", where="--save",
                        fix="install LLaMA-Factory in that environment (see the lines above), then save again",
                        exit_code=1)
    write_atomic(target, json.dumps(raw, indent=1, sort_keys=True) + "\n")
    version = raw["llamafactory"]["version"]
    print(f"saved LLaMA-Factory {version}'s report to {name}: on the planning machine, "
          f"`minicpm-tui generate RECIPE --lf-target {name} --out RUN_DIR`",
          file=sys.stderr if quiet_stdout else sys.stdout)
