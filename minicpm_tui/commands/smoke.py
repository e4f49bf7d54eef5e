"""`minicpm-tui smoke RUN_DIR`: a short real training of a tiny model through the run's own single_node.sh."""

from __future__ import annotations

import argparse
import json


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
    result = smoke(args.run_dir, steps=args.steps, nproc=args.nproc, timeout=args.timeout)
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
