"""`minicpm-tui validate FILE|FOLDER`: check a dataset the way LLaMA-Factory will read it.

A folder is one dataset of all its files (sharded data), as LLaMA-Factory reads a folder ``file_name``.
`minicpm-tui validate --dataset-info DIR|dataset_info.json NAME` checks a registered dataset through its
entry (formatting, ranking, columns, tags): the file LLaMA-Factory will load, read the way it reads it.
An ``"formatting": "openai"`` entry is read by the installed release's OpenAI converter (none before 0.9.4:
exit 1 with one line saying so). Media columns (images, videos, audios) an entry maps are read as
``--template`` reads them (default: MiniCPM's text templates, which stop LLaMA-Factory on any media).
``--lf-target RELEASE|FILE`` reads the entry as another machine's LLaMA-Factory does (a shipped release
snapshot or a `doctor --save` report, as `generate --lf-target` writes for): its release and its templates'
media, instead of the installed one's.

Exit codes: 0 every record is usable, 1 some record (or the file) is not, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from minicpm_tui.core.datasets.formats import FORMATS, STAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE|NAME", help="dataset file (.json, .jsonl, .csv, .parquet), or a "
                        "folder of such files read as one dataset (sharded data); with --dataset-info, the name of "
                        "a registered dataset")
    parser.add_argument("--dataset-info", metavar="PATH", help="a dataset_info.json (or the folder holding it): "
                        "validate the dataset registered as NAME through its entry (columns, tags, ranking), "
                        "as LLaMA-Factory reads it")
    parser.add_argument("--stage", choices=STAGES, help="training stage (default: from the data's shape)")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, help="force the format (default: detect)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (a stable contract)")
    parser.add_argument("--cutoff-len", type=int,
                        help="report the share of records longer than this many tokens (needs --tokenizer)")
    parser.add_argument("--tokenizer", help="local model/tokenizer folder for token-length statistics")
    parser.add_argument("--template", help="LLaMA-Factory template for token counts and --preview, e.g. cpm4 (needs "
                        "--tokenizer); with --dataset-info it also decides which media columns (images, videos, "
                        "audios) are read (default: the presets' text templates, which read none)")
    parser.add_argument("--media-dir", help="with --dataset-info: LLaMA-Factory's media_dir, where media files are "
                        "looked up (default: the dataset_info.json folder)")
    parser.add_argument("--lf-target", metavar="RELEASE|FILE", help="with --dataset-info: read the entry as that "
                        "LLaMA-Factory does (openai formatting, which media --template reads), as `generate "
                        "--lf-target` writes for it: a release (0.9.2 to 0.9.5) or a `doctor --save` report "
                        "(default: installed, this machine's)")
    parser.add_argument("--preview", type=int, metavar="N", default=0,
                        help="render the first N usable records through --template, marking trained/masked text "
                        "(needs --tokenizer and --template)")
    parser.add_argument("--sample", type=int, default=2000, help="records sampled for token statistics (default 2000)")
    parser.add_argument("--max-errors", type=int, default=None, help="errors shown per kind (default 20)")


class _Bar:
    """A progress bar on stderr, shown only for reads that take over a second, only on a terminal."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.last = 0.0
        self.shown = False
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.tty or now - self.t0 < 1.0 or now - self.last < 0.1:
            return
        self.last = now
        self.shown = True
        frac = done / total if total else 1.0
        width = 30
        filled = int(frac * width)
        rate = done / (now - self.t0) / 1e6
        sys.stderr.write(f"\rvalidating [{'#' * filled}{'.' * (width - filled)}] {frac:6.1%} "
                         f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB {rate:,.0f} MB/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 79 + "\r")
            sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from minicpm_tui.core.datasets import validate as vmod
    from minicpm_tui.core.datasets.validate import validate_file
    from minicpm_tui.core.errors import UserError

    if args.max_errors is not None:
        if args.max_errors < 1:
            raise UserError("must be at least 1", where="--max-errors", fix="pass a positive number")
        vmod.MAX_ERRORS_PER_KIND = args.max_errors
    if args.cutoff_len is not None and args.cutoff_len < 1:
        raise UserError("must be a positive number of tokens", where="--cutoff-len", fix="e.g. --cutoff-len 2048")
    if (args.cutoff_len or (args.template and not args.dataset_info)) and not args.tokenizer:
        raise UserError("needs --tokenizer", where="--cutoff-len/--template",
                        fix="pass --tokenizer PATH (a local model or tokenizer folder)")
    if args.lf_target and not args.dataset_info:
        raise UserError("needs --dataset-info: a data file alone is not read through an entry, so no release "
                        "changes its verdict", where="--lf-target",
                        fix="validate the registered dataset: --dataset-info DIR NAME --lf-target RELEASE")
    if args.preview and not (args.tokenizer and args.template):
        raise UserError("needs --tokenizer and --template", where="--preview",
                        fix="e.g. --preview 2 --tokenizer ./model --template cpm4")
    from pathlib import Path

    options = {"keep_indices": bool(args.preview), "token_sample": args.sample if args.tokenizer else 0}
    if args.dataset_info:
        from minicpm_tui.core.datasets.entry import find_entry, load_dataset_info, validate_registered
        from minicpm_tui.core.lftarget import typed_target

        target = typed_target(args.lf_target)
        info_path, info = load_dataset_info(args.dataset_info)
        entry = find_entry(info, args.file, str(info_path))
        bar = _Bar()
        try:
            report = validate_registered(args.file, entry, info_path.parent, stage=args.stage,
                                         template=args.template, media_dir=args.media_dir, fmt=args.fmt,
                                         target=target, progress=bar, **options)
        finally:
            bar.close()
    else:
        if not Path(args.file).exists():
            from minicpm_tui.core.paths import missing

            raise missing(args.file)
        if not (Path(args.file).is_file() or Path(args.file).is_dir()):
            raise UserError("is neither a file nor a folder", where=args.file, fix="check the path")
        from minicpm_tui.core.datasets.entry import registry_at, registry_refusal

        info_path = registry_at(args.file)
        if info_path is not None:  # a dataset_dir: its datasets are validated by name, through their entries
            raise registry_refusal(args.file, info_path)
        bar = _Bar()
        try:
            report = validate_file(args.file, stage=args.stage, fmt=args.fmt, progress=bar, **options)
        finally:
            bar.close()
    if args.tokenizer and report.token_sample:
        from minicpm_tui.core.datasets.stats import token_stats

        report.stats["tokens"] = token_stats(report, args.tokenizer, args.cutoff_len, args.template)
        report.stats["suggested_cutoff_len"] = report.stats["tokens"]["suggested_cutoff_len"]
        report.stats["suggested_cutoff_len_basis"] = "token p99 of a sample"
    preview = None
    if args.preview and report.valid:
        from minicpm_tui.core.datasets.preview import preview_records

        preview = preview_records(report, args.tokenizer, args.template, args.preview, args.cutoff_len)
    if args.json:
        data = report.to_json()
        if preview is not None:
            data["preview"] = preview
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for line in report.lines():
            print(line)
        _print_stats(report.stats)
        if preview is not None:
            from minicpm_tui.core.datasets.preview import render_plain

            print(render_plain(preview, color=sys.stdout.isatty()))
    return 0 if report.ok else 1


def _print_stats(stats: dict) -> None:
    if not stats.get("records_measured"):
        return
    ch, tu = stats.get("chars", {}), stats.get("turns", {})
    print(f"turns per record: min {tu.get('min')}, p50 {tu.get('p50')}, max {tu.get('max')}; "
          f"characters: p50 {ch.get('p50'):,}, p90 {ch.get('p90'):,}, p99 {ch.get('p99'):,}, max {ch.get('max'):,}")
    tok = stats.get("tokens")
    if tok:
        t = tok["tokens"]
        line = f"tokens ({tok['sampled']:,} sampled, {tok['rendered_with']}): p50 {t.get('p50')}, " \
               f"p90 {t.get('p90')}, p99 {t.get('p99')}, max {t.get('max')}"
        if "over_cutoff_share" in tok:
            line += f"; {tok['over_cutoff_share']:.1%} longer than cutoff_len {tok['cutoff_len']} (truncated)"
        print(line)
    if "suggested_cutoff_len" in stats:
        from minicpm_tui.core.datasets.stats import CHARS_BASIS

        basis = stats.get("suggested_cutoff_len_basis")
        hint = "; pass --tokenizer for token counts" if basis == CHARS_BASIS else ""
        print(f"suggested cutoff_len: {stats['suggested_cutoff_len']} ({basis}{hint})")
