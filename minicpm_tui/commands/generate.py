"""`minicpm-tui generate RECIPE --out RUN_DIR`: write a run directory and preflight it.

RECIPE is a recipe.yaml or a shipped preset name (`--list` shows them); `--from-yaml OLD.yaml` imports an
old LLaMA-Factory training YAML instead (stale keys mapped, unknown ones reported). Every recipe field
also has a flag (rendered from the one options registry in core.recipe); typed flags win.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import TYPE_CHECKING

from minicpm_tui.core.errors import UserError

if TYPE_CHECKING:
    from minicpm_tui.core.recipe import Recipe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minicpm_tui.core.recipe import add_recipe_arguments

    parser.add_argument("recipe", nargs="?", help="recipe.yaml, or a preset name from --list")
    parser.add_argument("--out", "-o", help="run directory to create")
    parser.add_argument("--force", action="store_true", help="rewrite the generated files of an existing run directory "
                        "(and replace an existing --save-recipe file, keeping a backup)")
    parser.add_argument("--from-yaml", metavar="OLD.yaml", help="import an old LLaMA-Factory training YAML")
    parser.add_argument("--no-preflight", action="store_true", help="skip LLaMA-Factory's and DeepSpeed's checks")
    parser.add_argument("--save-recipe", metavar="PATH", help="also save the final recipe there (no run directory "
                        "needed with --dry-run)")
    parser.add_argument("--dry-run", action="store_true", help="print train.yaml instead of writing files")
    parser.add_argument("--list", action="store_true", help="list the shipped recipe presets")
    parser.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    add_recipe_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from minicpm_tui.core import recipe as recipe_mod
    from minicpm_tui.core.lftarget import INSTALLED

    if args.list:
        for name in recipe_mod.list_presets():
            print(name)
        return 0
    notes: list[str] = []
    overrides = recipe_mod.recipe_overrides(args)
    _absolute_target(overrides)
    if args.from_yaml:
        from minicpm_tui.core.lftarget import target_info

        # The keys it is checked against are the target's (--lf-target), not necessarily this machine's.
        base = recipe_mod.Recipe(lf_target=str(overrides.get("lf_target") or INSTALLED),
                                 lf_source=str(overrides.get("lf_source") or ""))
        info = target_info(base)
        report = recipe_mod.import_lf_yaml(args.from_yaml, info.all_keys or None)
        recipe = report.recipe
        notes += [f"mapped {old} -> {new}" for old, new in report.mapped]
        notes += [f"dropped {key} (minicpm-tui derives it from the plan)" for key in report.dropped]
        if report.unknown:
            raise UserError(f"keys unknown to {info.describe()}: {', '.join(report.unknown)}",
                            where=args.from_yaml, fix="remove or rename them, then import again", exit_code=1)
    elif args.recipe:
        recipe = recipe_mod.load_recipe(args.recipe)
    else:
        raise UserError("no recipe given", where="generate",
                        fix="pass a recipe.yaml or preset name (see --list), or --from-yaml OLD.yaml")
    if overrides:
        recipe = recipe_mod.apply_overrides(recipe, overrides)
    lr_note = recipe_mod.learning_rate_note(recipe)
    if lr_note:
        notes.append(lr_note)
    if args.save_recipe:
        _save_recipe(recipe, args.save_recipe, args.force)
    if args.dry_run:
        if lr_note:
            print(f"minicpm-tui: note: {lr_note}", file=sys.stderr)
        from minicpm_tui.core.writers import render

        files, _ = render(recipe)
        sys.stdout.write(files["train.yaml"])
        return 0
    if not args.out:
        raise UserError("--out RUN_DIR is required", where="generate", fix="name the run directory to create")
    from minicpm_tui.core.paths import absolute_path
    from minicpm_tui.core.writers import generate

    reports: list = []
    backups: list = []
    run_dir = absolute_path(args.out)
    was_run_dir = (run_dir / "generated.json").is_file()
    written = generate(recipe, args.out, force=args.force, preflight=not args.no_preflight, reports=reports,
                       notes=notes, backups=backups)
    for original, copy in backups:  # the user's files (edited since generated, or of a folder that was no run)
        why = "was edited since it was generated" if was_run_dir else "was yours (no generated.json there)"
        print(f"minicpm-tui: note: {original} {why}; backed it up to {copy.name}", file=sys.stderr)
    if reports:
        notes += [n for n in reports[0].notes if n not in notes]
    if args.json:
        print(json.dumps({"run_dir": str(written[0].parent), "files": [p.name for p in written], "notes": notes,
                          "preflight": reports[0].to_json() if reports else None}))
        return 0
    print(f"wrote {written[0].parent}: {', '.join(p.name for p in written)}")
    report = reports[0] if reports else None
    for note in notes:
        if report is None or not report.target or note != report.target_note():
            print(f"  note: {note}")
    if report is not None:
        print(f"  preflight passed{' here' if report.target else ''} ({', '.join(report.checked)})")
    run_dir = written[0].parent
    if recipe.lf_target != INSTALLED:
        # One line for the target: what its check left there (the plan's note said it when none ran), then the commands.
        if report is not None and report.target:
            print(f"  {report.target_summary()}")
        saved = f"={shlex.quote(report.target_python)}" if report is not None and report.target_python else \
            " set to that environment's python"
        print(f"next, on the machine that trains (TRAIN_PYTHON{saved}): minicpm-tui run --check {run_dir}   then   "
              f"minicpm-tui run {run_dir}")
        return 0
    after = "" if recipe.method == "full" else f"   then   minicpm-tui export {run_dir}"
    print(f"next: minicpm-tui smoke {run_dir}   then   minicpm-tui run {run_dir}{after}")
    return 0


def _absolute_target(overrides: dict) -> None:
    """A --lf-target FILE typed here means this folder's file, not one beside the recipe."""
    from pathlib import Path

    from minicpm_tui.core.lftarget import INSTALLED, known_releases

    value = str(overrides.get("lf_target") or "").strip()
    if value and value != INSTALLED and value not in known_releases() and Path(value).expanduser().exists():
        overrides["lf_target"] = str(Path(value).expanduser().resolve())


def _save_recipe(recipe: Recipe, raw: str, force: bool) -> None:
    from pathlib import Path

    from minicpm_tui.core.atomic import backup

    target = Path(raw).expanduser()
    if target.exists() and not target.is_dir():
        if not force:
            raise UserError("exists", where=f"--save-recipe {raw}",
                            fix="pick another name, or pass --force to replace it (a backup is kept)")
        copy = backup(target)
        print(f"note: backed up {target} to {copy}", file=sys.stderr)
    recipe.save(target)
