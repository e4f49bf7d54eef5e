"""`minicpm-tui run RUN_DIR`: launch a run directory detached (it survives SSH drops and closed terminals)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minicpm_tui.core.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `minicpm-tui generate`")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in output_dir (the manifest keeps every attempt)")
    parser.add_argument("--check", action="store_true",
                        help="only run the preflight checks (LLaMA-Factory's parser, datasets, DeepSpeed "
                        "config) and exit; nothing is launched")
    parser.add_argument("--follow", action="store_true",
                        help="after launching, follow it like `monitor --plain` (Ctrl-C or a dropped SSH "
                        "session leaves the run going)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for this attempt (repeatable), e.g. CUDA_VISIBLE_DEVICES=0,1")


def _env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "a").isalnum():
            raise UserError(f"--env {pair!r} is not KEY=VALUE", where="--env", fix="e.g. --env NCCL_DEBUG=INFO")
        out[key] = value
    return out


def _preflight(run_dir: Path) -> int:
    try:
        from minicpm_tui.core import preflight as pre
    except ImportError:
        raise UserError("preflight checks are not available in this build", where="--check",
                        fix="run `minicpm-tui smoke RUN_DIR` to prove the run directory instead") from None
    report = pre.preflight(run_dir)
    for note in getattr(report, "notes", []):
        print(f"note: {note}")
    problems = getattr(report, "problems", [])
    for problem in problems:
        print(f"problem: {problem.one_line()}")
    checked = ", ".join(getattr(report, "checked", [])) or "the run directory"
    if getattr(report, "ok", not problems):
        print(f"preflight ok ({checked}); launch with `minicpm-tui run {run_dir}`")
        return 0
    print(f"preflight found {len(problems)} problem(s); nothing was launched")
    return 1


def run(args: argparse.Namespace) -> int:
    from minicpm_tui.core import runner

    run_dir = runner.require_run_dir(args.run_dir)
    if args.check:
        return _preflight(run_dir)
    manifest = runner.launch(run_dir, resume=args.resume, env=_env(args.env))
    for warning in manifest.warnings:
        print(f"minicpm-tui: warning: {warning}", file=sys.stderr)
    cur = manifest.current
    if manifest.status == "failed" and cur.get("error"):
        raise UserError(cur["error"], where=str(run_dir), exit_code=1)
    verb = "resumed" if args.resume else "started"
    print(f"{verb} {run_dir} (attempt {cur.get('attempt')}): {manifest.status}, pid {manifest.pid}, "
          f"process group {manifest.pgid}")
    print(f"  logs:    {Path(cur.get('stdout', '')).parent}/attempt-{cur.get('attempt')}.{{stdout,stderr}}.log")
    print(f"  monitor: minicpm-tui monitor {run_dir}   (over SSH: --plain)")
    print(f"  stop:    minicpm-tui stop {run_dir}")
    sys.stdout.flush()
    if args.follow:
        from minicpm_tui.commands.monitor import plain_loop

        return plain_loop(run_dir, interval=2.0)
    return 0
