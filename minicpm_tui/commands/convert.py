"""`minicpm-tui convert IN OUT`: OpenAI messages -> sharegpt, KTO string labels -> booleans, CSV -> JSON Lines."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="dataset file to convert (.json, .jsonl, .csv, .parquet)")
    parser.add_argument("output", help="file to write (.jsonl or .json)")
    parser.add_argument("--openai-to-sharegpt", action="store_true",
                        help="rewrite OpenAI-style messages (role/content) as sharegpt conversations (from/value)")
    parser.add_argument("--kto-labels", action="store_true",
                        help="turn KTO labels written as the strings \"true\"/\"false\" into JSON booleans")
    parser.add_argument("--force", action="store_true", help="overwrite the output if it exists")


def run(args: argparse.Namespace) -> int:
    from minicpm_tui.core.datasets.convert import convert_file

    res = convert_file(args.input, args.output, openai=args.openai_to_sharegpt, kto=args.kto_labels,
                       force=args.force)
    done = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in res.changed.items() if v) or "no record changed"
    print(f"wrote {res.records:,} records to {res.output} ({done})")
    print(f"next: minicpm-tui validate {res.output}")
    return 0
