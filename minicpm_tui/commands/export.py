"""`minicpm-tui export RUN_DIR`: merge the run's LoRA adapter into its base model, ready to serve.

Writes RUN_DIR/export.yaml and runs LLaMA-Factory's export in the run's training Python, into a folder
beside --out that is renamed into place only when it succeeded. A full or freeze fine-tune has nothing
to merge: it says which folder to serve and exits 0. SIGTERM (the wizard quitting meanwhile) or Ctrl+C stops
it as cleanly: LLaMA-Factory's process is ended, the temporary folder removed, and it exits 130.
"""

from __future__ import annotations

import argparse
import signal
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minicpm_tui.core.export import DEFAULT_EXPORT_SIZE_GB, DEFAULT_OUT, DEVICES

    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory whose training has ended")
    parser.add_argument("--out", "-o", metavar="DIR",
                        help=f"where the merged model goes (default RUN_DIR/{DEFAULT_OUT}; refused if it exists)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --out, once the new export has succeeded")
    parser.add_argument("--checkpoint", metavar="N|PATH",
                        help="export output_dir/checkpoint-N, or a checkpoint folder (default: the final adapter "
                        "when training finished, else the newest checkpoint)")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where LLaMA-Factory merges: cpu (default; needs the model's size in RAM) or auto "
                        "(the GPUs)")
    parser.add_argument("--export-size", type=int, default=DEFAULT_EXPORT_SIZE_GB, metavar="GB",
                        help=f"largest weight shard in GB (default {DEFAULT_EXPORT_SIZE_GB})")
    parser.add_argument("--dry-run", action="store_true", help="print export.yaml instead of writing and merging")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="stream LLaMA-Factory's whole output (default: a few progress lines, and the log's "
                        "tail on a failure; the whole log is in RUN_DIR/logs/export.log either way)")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # run_export then ends LLaMA-Factory's process group and removes its temp folder


def run(args: argparse.Namespace) -> int:
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from minicpm_tui.core import export

    plan = export.plan_export(args.run_dir, out=args.out, checkpoint=args.checkpoint, force=args.force,
                              device=args.device, export_size=args.export_size)
    if plan.nothing_to_merge:
        print(export.nothing_to_merge_text(plan))
        return 0
    if args.dry_run:
        from minicpm_tui.core.lfinfo import lf_info, require_lf

        text = export.render_export_yaml(plan, require_lf(lf_info(plan.python)).all_keys or None)
        for note in plan.notes:
            print(f"minicpm-tui: note: {note}", file=sys.stderr)
        sys.stdout.write(text)
        return 0
    for note in plan.notes:
        print(f"note: {note}", flush=True)
    print(f"export: merging {plan.source} into {plan.base_model} -> {plan.out} (log {plan.log_path})", flush=True)
    try:
        out = export.run_export(plan, say=lambda line: print(f"  {line}", flush=True),
                                 verbose=args.verbose)
    except KeyboardInterrupt:
        print(f"minicpm-tui: export stopped before it finished: nothing was written to {plan.out}", file=sys.stderr)
        return 130
    print(f"merged model written to {out}; load it with transformers' from_pretrained"
          + (" (trust_remote_code=True)" if plan.carried.get("trust_remote_code") else ""))
    return 0
