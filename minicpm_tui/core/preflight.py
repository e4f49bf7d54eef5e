"""Check a run directory before a single GPU-hour is spent.

- train.yaml through LLaMA-Factory's own argument parser (every key must exist in the installed version),
  ds_config.json through DeepSpeed's config model: ``_resources/lf_preflight.py`` in the training Python,
  one subprocess for many run directories (``preflight_many``).
- the datasets through the datasets core (``core.datasets.validate_file``) when it is available.
- the scripts through ``bash -n``.
Each problem names the file, the key and the fix.

A run directory written for another LLaMA-Factory (``target``: a release snapshot or a ``doctor --save``
report, ``core.lftarget``) cannot be proved by the parser here: train.yaml's keys and template are then
checked against the target's facts, the rest is left to ``run --check`` where it trains (``not_checked``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minicpm_tui.core.errors import UserError
from minicpm_tui.core.lfinfo import LFInfo, run_dir_python
from minicpm_tui.core.resources import resource_script
from minicpm_tui.core.rundir import read_train_yaml as _train_yaml

MARK = "@@PREFLIGHT@@"
SCRIPTS = ("single_node.sh", "multi_node.sh", "slurm.sbatch")


@dataclass
class Problem:
    file: str
    message: str
    key: str | None = None
    fix: str = ""
    fix_tui: str | None = None  # the fix in the wizard's words, where the CLI's would mean nothing there

    def one_line(self, tui: bool = False) -> str:
        """``file: key: message; fix``; ``tui``: the fix in the wizard's words where it has them."""
        where = f"{self.file}: {self.key}" if self.key else self.file
        fix = (self.fix_tui or self.fix) if tui else self.fix
        return f"{where}: {self.message}" + (f"; {fix}" if fix else "")


@dataclass
class PreflightReport:
    run_dir: Path
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    target: str = ""  # what it was checked against instead of a LLaMA-Factory here ("" = the real parser)
    not_checked: list[str] = field(default_factory=list)
    target_python: str = ""  # a `doctor --save` report's python: the one TRAIN_PYTHON names over there

    def left(self) -> str:
        """``not_checked`` in words: "A, B and C"."""
        items = self.not_checked or ["nothing"]
        return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"

    def target_summary(self) -> str:
        """Written for a target: what the check here left to the machine that trains (generate's one line)."""
        return (f"written for {self.target}, not this machine's LLaMA-Factory; left for `minicpm-tui run --check` "
                f"on the machine that trains: {self.left()}")

    def target_note(self) -> str:
        """``target_summary`` with the command to run there, in one line (the report's first note)."""
        python = f"TRAIN_PYTHON={shlex.quote(self.target_python)}" if self.target_python else \
            "TRAIN_PYTHON set to that environment's python"
        return f"{self.target_summary()}; run `minicpm-tui run --check {shlex.quote(str(self.run_dir))}` there, with {python}"

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "ok": self.ok, "checked": self.checked, "notes": self.notes,
                "target": self.target or None, "not_checked": self.not_checked,
                "target_python": self.target_python or None,
                "problems": [p.__dict__ for p in self.problems], "duration_s": round(self.duration_s, 1)}

    def raise_for_problems(self) -> None:
        if self.problems:
            first = self.problems[0]
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            raise UserError(f"preflight failed: {first.message}{more}",
                            where=f"{first.file}: {first.key}" if first.key else first.file,
                            fix=first.fix or "see `minicpm-tui run --check RUN_DIR`", fix_tui=first.fix_tui,
                            exit_code=1)


def _lf_check(jobs: list[dict[str, Any]], python: str, lf_source: str | None = None, timeout: float = 600
              ) -> dict[str, Any]:
    from minicpm_tui.core.lfinfo import check_training_python, lf_source_env, run_training_python
    from minicpm_tui.core.tinymodel import offline_env

    check_training_python(python)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as handle:
        json.dump(jobs, handle)
        jobs_file = handle.name
    env = offline_env(lf_source_env(lf_source))
    env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "")
    # offline_env switches LLaMA-Factory's version checks off; its launch-time check is judged as launched
    env["MINICPM_TUI_LAUNCH_DISABLE_VERSION_CHECK"] = os.environ.get("DISABLE_VERSION_CHECK", "")
    try:
        proc = run_training_python(python, [str(resource_script("lf_preflight.py")), jobs_file],
                                   capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"LLaMA-Factory's argument check took over {timeout:.0f} s",
                        fix="run `minicpm-tui doctor`") from exc
    finally:
        os.unlink(jobs_file)
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
    raise UserError(f"LLaMA-Factory's argument check did not answer: {tail}", fix="run `minicpm-tui doctor`")


def _bash_n(run_dir: Path, report: PreflightReport) -> None:
    for name in SCRIPTS:
        path = run_dir / name
        if not path.is_file():
            if name == "single_node.sh":
                report.problems.append(Problem(name, "is missing", fix="regenerate the run directory"))
            continue
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            report.problems.append(Problem(name, f"bash -n: {proc.stderr.strip()[:300]}",
                                           fix="regenerate the run directory"))
    report.checked.append("scripts: bash -n")


def _check_datasets(run_dir: Path, stage: str | None, report: PreflightReport, lf_version: str | None = None,
                    resolved: dict[str, Any] | None = None, python: str | None = None,
                    source_info: Path | None = None, target: LFInfo | None = None) -> None:
    """Each dataset through its dataset_info.json entry (columns, tags, ranking), as LLaMA-Factory reads it;
    ``lf_version`` (the release the run directory was written for) decides what an openai entry means;
    the template (and model) in ``resolved`` (generated.json), else train.yaml's, which media columns are
    read (asked of ``python``'s LLaMA-Factory for a template that is not MiniCPM's). ``source_info``: the
    dataset_info.json the entries were copied from (generate checks a folder that is gone when it fails:
    the advice names the user's registry instead). ``target``: the media come from its facts, not from
    ``python``'s LLaMA-Factory."""
    try:
        from minicpm_tui.core.datasets.entry import read_entry, validate_entry
        from minicpm_tui.core.datasets.media import entry_maps_media, may_count, media_for
    except ImportError:
        report.notes.append("datasets core not available: data files not validated")
        return
    info_path = run_dir / "dataset_info.json"
    try:
        registry = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report.problems.append(Problem("dataset_info.json", f"cannot be read: {exc}"))
        return
    if not isinstance(registry, dict):
        report.problems.append(Problem("dataset_info.json", "is not a JSON object of dataset entries",
                                       fix="regenerate the run directory"))
        return
    media = None
    resolved = resolved or {}
    cfg = _train_yaml(run_dir)
    template = resolved.get("template") or cfg.get("template")
    template = template if isinstance(template, str) else None
    if may_count(template) or any(entry_maps_media(entry) for entry in registry.values()):
        model = resolved.get("model_name")
        media_dir = cfg.get("media_dir")  # relative to the run directory, where the scripts cd to
        model = model if isinstance(model, str) else None
        folder = run_dir / media_dir if isinstance(media_dir, str) else None
        media = media_for(template, model, folder, python, target)
    for name, entry in registry.items():
        reading = read_entry(entry, lf_version, media)
        if reading.skipped:  # remote data: LLaMA-Factory reads it at start
            report.notes.append(f"dataset {name!r} not validated: {reading.skipped}")
            continue
        try:
            # file_name is relative to the dataset_dir, which is the run directory ("dataset_dir: .")
            result = validate_entry(name, reading, run_dir, stage=stage)
        except UserError as exc:
            report.problems.append(Problem("dataset_info.json", exc.one_line(), key=name))
            continue
        report.notes.extend(f"dataset {name!r}: {note}" for note in result.notes)
        report.notes.extend(f"dataset {name!r}: {w.field}: {w.message}" for w in result.warnings
                            if w.kind == "openai_system_prompt")
        if not result.ok:
            report.problems.append(_dataset_problem(name, result, stage, info_path, source_info))
    report.checked.append("datasets: validated through their dataset_info.json entries")


def _dataset_problem(name: str, result: Any, stage: str | None, info_path: Path, source_info: Path | None
                     ) -> Problem:
    """A dataset that would fail: an issue LLaMA-Factory stops on (it names its record) with its own fix,
    else the way to list the unusable records."""
    message = f"dataset {name!r} ({result.file}): {result.summary()}"
    err = result.file_error
    if err is not None and err.fix:
        return Problem("dataset_info.json", message, key=name, fix=err.fix)
    if source_info is not None:
        info_path = source_info
        try:
            known = name in json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            known = False
        if not known:  # generate registered it from a data file of that name
            command = f"validate {shlex.quote(str(result.file))}" + (f" --stage {stage}" if stage else "")
            return Problem("dataset_info.json", message, key=name, fix=f"run `minicpm-tui {command}` for record "
                           "numbers", fix_tui="the Dataset step lists the unusable records")
    return Problem("dataset_info.json", message, key=name, fix="run `minicpm-tui validate --dataset-info "
                   f"{shlex.quote(str(info_path))} {shlex.quote(name)}` for record numbers",
                   fix_tui="the Dataset step lists the unusable records")


def unknown_to(run: Path, cfg: dict[str, Any], lf: LFInfo, skip: tuple[str, ...] = ()) -> tuple[list[str], Any]:
    """What of train.yaml (``cfg``) the LLaMA-Factory ``lf`` would stop on: the keys it has no argument for (less
    ``skip``), and the template when neither it nor the run directory's train_entry.py registers it (else None)."""
    from minicpm_tui.core.writers import REGISTERED_BY_ENTRY

    missing = [str(k) for k in cfg if str(k) not in lf.all_keys and str(k) not in skip]
    template = cfg.get("template")
    entry = REGISTERED_BY_ENTRY if (run / "train_entry.py").is_file() else ()
    registered = not template or template in lf.templates or template in entry
    return missing, None if registered else template


def _target_check(run: Path, target: LFInfo, report: PreflightReport) -> None:
    """train.yaml's keys and template against ``target``'s facts (what needs no LLaMA-Factory here)."""
    import difflib

    from minicpm_tui.core.writers import local_model

    cfg = _train_yaml(run)
    if not cfg:
        report.problems.append(Problem("train.yaml", "cannot be read as a mapping of key: value",
                                       fix="regenerate the run directory"))
        return
    missing, template = unknown_to(run, cfg, target)
    for key in missing:
        close = difflib.get_close_matches(key, sorted(target.all_keys), n=1)
        report.problems.append(Problem("train.yaml", f"is not an argument of {target.describe()}", key=key,
                                       fix=f"did you mean {close[0]}?" if close else "remove it"))
    if template is not None:
        close = difflib.get_close_matches(str(template), target.templates, n=2)
        report.problems.append(Problem("train.yaml", f"template {template!r} is not registered by "
                                       f"{target.describe()}", key="template",
                                       fix=f"use {' or '.join(close)}" if close else
                                       "pick one it registers (`minicpm-tui doctor --json` there lists them)"))
    report.checked.append(f"train.yaml: keys and template against {target.describe()}")
    report.target = target.describe()
    report.target_python = target.python
    report.not_checked = ["LLaMA-Factory's own argument parser"]
    if (run / "ds_config.json").is_file():
        report.not_checked.append("DeepSpeed's config model")
    model = cfg.get("model_name_or_path")
    if isinstance(model, str) and local_model(model):  # a path here: whether it is there too, only there
        report.not_checked.append(f"the model at {model}")


def _check_model(run: Path, report: PreflightReport) -> None:
    """A model named by its path (``writers.local_model``; relative: to the run directory, where the scripts
    cd) must be there on the machine that trains: LLaMA-Factory's parser takes any string, the launch would
    fail loading it. A run directory written elsewhere leaves this to `run --check` here."""
    from minicpm_tui.core.writers import local_model

    model = _train_yaml(run).get("model_name_or_path")
    if not isinstance(model, str) or not local_model(model):
        return
    path = run / Path(model).expanduser()
    if not path.exists():
        report.problems.append(Problem("train.yaml", f"{model} does not exist on this machine (the model is read "
                                       "from that path)", key="model_name_or_path",
                                       fix="copy the model to that path, or set model_name_or_path to where it is "
                                           "here, or to its hub id"))
        return
    report.checked.append(f"model: found at {model}")


def preflight_many(run_dirs: list[str | os.PathLike[str]], *, datasets: bool = True,
                   lf_source: str | None = None, source_info: Path | None = None,
                   target: LFInfo | None = None) -> list[PreflightReport]:
    """Preflight several run directories with ONE LLaMA-Factory subprocess (none with ``target``: the run
    directories were written for that LLaMA-Factory, not this machine's, and are checked against its facts)."""
    start = time.monotonic()
    reports = []
    jobs = []
    for index, run_dir in enumerate(run_dirs):
        run = Path(run_dir).absolute()
        report = PreflightReport(run_dir=run)
        reports.append(report)
        if not (run / "train.yaml").is_file():
            report.problems.append(Problem("train.yaml", "is missing", fix="regenerate the run directory"))
            continue
        meta: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads((run / "generated.json").read_text(encoding="utf-8"))
        meta = meta if isinstance(meta, dict) else {}
        if target is None:
            _check_model(run, report)
            from_entry = ["cpm", "cpm3"] if (run / "train_entry.py").is_file() else []
            jobs.append({"id": str(index), "cwd": str(run), "yaml": "train.yaml", "templates_from_entry": from_entry,
                         "python": run_dir_python(meta)})
        else:
            _target_check(run, target, report)
        _bash_n(run, report)
        if datasets:
            resolved = meta.get("resolved")
            resolved = resolved if isinstance(resolved, dict) else {}
            stage = resolved.get("stage") or _stage_of(run)
            version = resolved.get("lf_version")
            _check_datasets(run, stage, report, version if isinstance(version, str) else None, resolved,
                            run_dir_python(meta), source_info, target)
    # One LLaMA-Factory subprocess per training Python: each run is parsed by the release it trains with.
    by_python: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_python.setdefault(job.pop("python"), []).append(job)
    answers: dict[str, Any] = {}
    for python, group in by_python.items():
        answers.update(_lf_check(group, python, lf_source))
    for job in jobs:
        report = reports[int(job["id"])]
        answer = answers.get(job["id"], {})
        for item in answer.get("problems", []):
            report.problems.append(Problem(item.get("file") or "train.yaml", item.get("message", ""),
                                           key=item.get("key"), fix=item.get("fix") or ""))
        report.notes.extend(answer.get("notes", []))
        report.checked.append("train.yaml: LLaMA-Factory's argument parser")
        if (report.run_dir / "ds_config.json").is_file():
            report.checked.append("ds_config.json: DeepSpeed's config model")
    elapsed = time.monotonic() - start
    for report in reports:
        report.duration_s = elapsed
    return reports


def _stage_of(run: Path) -> str | None:
    return _train_yaml(run).get("stage")


def preflight(run_dir: str | os.PathLike[str], *, datasets: bool = True, lf_source: str | None = None,
              source_info: Path | None = None, target: LFInfo | None = None) -> PreflightReport:
    return preflight_many([run_dir], datasets=datasets, lf_source=lf_source, source_info=source_info,
                          target=target)[0]
