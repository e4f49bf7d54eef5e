"""`minicpm-tui register FILE|FOLDER --name NAME --dataset-dir DIR`: add a dataset to dataset_info.json.

A folder is registered as one dataset of all its files (its ``file_name`` is the folder), after validation.

Exit codes: 0 registered (or already the same), 1 the data is not usable or the name is taken
by a different entry (without --force), 2 usage error.
"""

from __future__ import annotations

import argparse
import json

from minicpm_tui.core.datasets.formats import STAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="dataset file to register, or a folder of data files (one dataset)")
    parser.add_argument("--name", required=True, help="the dataset name training configs will use")
    parser.add_argument("--dataset-dir", required=True, help="folder of (or for) the dataset_info.json")
    parser.add_argument("--stage", choices=STAGES, help="training stage (default: from the data's shape)")
    parser.add_argument("--force", action="store_true", help="replace a different entry of the same name")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from minicpm_tui.core.datasets.register import register_dataset

    res = register_dataset(args.file, args.name, args.dataset_dir, stage=args.stage, force=args.force)
    if args.json:
        print(json.dumps({"path": str(res.path), "name": res.name, "entry": res.entry, "changed": res.changed,
                          "backup": str(res.backup) if res.backup else None}, ensure_ascii=False, indent=2))
    elif res.changed:
        extra = f" (backup: {res.backup})" if res.backup else ""
        files = f" in {len(res.report.files)} files" if res.report.files else ""
        print(f"registered {res.name!r} in {res.path}{extra}: {res.report.format}, "
              f"{res.report.records:,} records{files}, stage {res.report.stage}")
    else:
        print(f"{res.name!r} is already registered in {res.path} with the same entry; nothing changed")
    return 0
