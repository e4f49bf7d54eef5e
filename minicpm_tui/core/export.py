"""The step after training: merge a LoRA adapter into its base model, as OpenBMB's guide does with
`llamafactory-cli export` and a merge YAML.

    plan_export(run_dir, ...) -> ExportPlan     what would be merged, from where, into where (no writes)
    render_export_yaml(plan) -> str             RUN_DIR/export.yaml (only keys the installed LLaMA-Factory has)
    run_export(plan, say=print) -> Path         write export.yaml, merge into a temp folder, rename into place

The base model, template, finetuning_type, trust_remote_code and output_dir come from the run's train.yaml.
The merge runs `_resources/export_entry.py` (LLaMA-Factory's own export_model, after registering the chat
templates 0.9.5 removed) in the run's training Python, into a folder beside the target that is renamed onto
it only when LLaMA-Factory exits 0 and left a config and weights: a failed export never leaves a half model.
A full or freeze fine-tune has nothing to merge: ``plan.nothing_to_merge`` says which folder to serve.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from minicpm_tui import __version__
from minicpm_tui.core.atomic import write_atomic
from minicpm_tui.core.errors import UserError
from minicpm_tui.core.paths import absolute_path, missing
from minicpm_tui.core.writers import local_model

EXPORT_YAML = "export.yaml"
EXPORT_LOG = "logs/export.log"
DEFAULT_OUT = "merged"
DEFAULT_EXPORT_SIZE_GB = 5  # LLaMA-Factory's own default shard size
DEVICES = ("cpu", "auto")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# What a saved Hugging Face model's weights are called (one file or a sharded index).
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
# Keys export.yaml cannot do without; the others are left out (with a note) where a release lacks them.
# All ten exist in LLaMA-Factory 0.9.2-0.9.5 (hparams/model_args.py ExportArguments and BaseModelArguments).
REQUIRED_KEYS = ("model_name_or_path", "adapter_name_or_path", "template", "finetuning_type")
# Training keys that matter to loading the base model again for the merge, copied from train.yaml.
CARRIED_KEYS = ("trust_remote_code", "flash_attn")
STATUS_FIX = "see `minicpm-tui runs`"


@dataclass
class ExportPlan:
    """What `export` does for one run directory."""

    run_dir: Path
    python: str
    finetuning_type: str
    base_model: str  # as LLaMA-Factory gets it: an absolute local path, or a Hub id
    template: str | None
    output_dir: Path
    status: str  # the run's status (runner.run_status)
    source: Path | None = None  # the adapter (LoRA), or the servable model (full / freeze)
    source_kind: str = ""  # "final" (the model saved at the end) or "checkpoint-N" or "--checkpoint"
    out: Path | None = None
    force: bool = False
    device: str = "cpu"
    export_size: int = DEFAULT_EXPORT_SIZE_GB
    carried: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    template_from_entry: bool = False  # a chat template this LLaMA-Factory lacks (export_entry.py registers it)

    @property
    def nothing_to_merge(self) -> bool:
        return self.finetuning_type != "lora"

    @property
    def yaml_path(self) -> Path:
        return self.run_dir / EXPORT_YAML

    @property
    def log_path(self) -> Path:
        return self.run_dir / EXPORT_LOG


def _read_train_yaml(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "train.yaml"
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError("train.yaml is missing", where=str(run_dir),
                        fix="pass the run directory that `minicpm-tui generate` wrote") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"train.yaml is not valid YAML: {' '.join(str(exc).split())}", where=str(path),
                        fix="repair it, or regenerate the run directory with `minicpm-tui generate --force`") from exc
    if not isinstance(cfg, dict):
        raise UserError("train.yaml must be a mapping", where=str(path),
                        fix="regenerate the run directory with `minicpm-tui generate --force`")
    return cfg


def _local(run_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return absolute_path(run_dir / path)


def _base_model(run_dir: Path, cfg: dict[str, Any]) -> str:
    where = f"{run_dir / 'train.yaml'}: model_name_or_path"
    value = cfg.get("model_name_or_path")
    if not isinstance(value, str) or not value.strip():
        raise UserError("no base model", where=where, fix="set model_name_or_path there (the model you trained)")
    path = _local(run_dir, value)
    if path.is_dir():
        return str(path)
    if local_model(value) or path.exists():
        raise UserError(f"the base model folder {value!r} is missing" if not path.exists()
                        else f"the base model {value!r} is not a folder", where=where,
                        fix="put the base model back at that path, or point model_name_or_path at where it is now")
    return value  # a Hub id: LLaMA-Factory loads it from the Hugging Face cache (or downloads it)


def _training_state(run_dir: Path) -> tuple[str, bool]:
    """(status of the real training, whether it ended by saving its model: finished, or stopped gracefully).

    Refuses while anything of the run is live. A smoke run launched through the runner (the wizard does)
    is an attempt of its own that writes to smoke/output: it says nothing of output_dir."""
    from minicpm_tui.core import runner

    info = runner.run_status(run_dir)
    if info.status in runner.LIVE:
        pid = info.pid or "not yet known"
        raise UserError(f"training is still {info.status} (pid {pid}, {info.how}): there is no final adapter yet",
                        where=str(run_dir), exit_code=1,
                        fix=f"wait for it (`minicpm-tui monitor {run_dir}`) or stop it (`minicpm-tui stop "
                            f"{run_dir}`, which saves the model), then export")
    manifest = runner.RunManifest.load(run_dir)
    attempts = manifest.attempts if manifest is not None else []
    for number, attempt in reversed(list(enumerate(attempts))):
        if str(attempt.get("train_yaml") or "train.yaml") != "train.yaml":
            continue  # a smoke run (TRAIN_YAML=smoke/train.yaml): it never writes output_dir
        status = info.status if number == len(attempts) - 1 else str(attempt.get("status") or "unknown")
        return status, status in ("finished", "stopped")
    if attempts:
        return "never", False  # only smoke runs so far
    return info.status, info.status == "finished"


def _checkpoint(output_dir: Path, value: str) -> tuple[Path, str]:
    if value.isdigit():
        path = output_dir / f"checkpoint-{int(value)}"
        if not path.is_dir():
            from minicpm_tui.core.runner import checkpoints

            have = ", ".join(p.name.split("-")[-1] for p in checkpoints(output_dir)) or "none"
            raise UserError(f"no checkpoint-{int(value)} in {output_dir} (checkpoints there: {have})",
                            where="--checkpoint", fix="pass one of those step numbers, or a checkpoint folder's path")
        return path, path.name
    path = absolute_path(value)
    if not path.is_dir():
        raise missing(value, "checkpoint folder", where=f"--checkpoint {value}",
                      fix="pass a step number N (output_dir/checkpoint-N) or the path of a checkpoint folder")
    return path, "--checkpoint"


def _has_adapter(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file() and any((folder / name).is_file() for name in ADAPTER_WEIGHTS)


def _has_model(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / name).is_file() for name in MODEL_WEIGHTS)


def _pick_source(plan: ExportPlan, done: bool, checkpoint: str | None) -> None:
    """Set plan.source: --checkpoint, else the final model when training ended, else the newest checkpoint."""
    from minicpm_tui.core.runner import checkpoints

    out = plan.output_dir
    lora = not plan.nothing_to_merge
    has = _has_adapter if lora else _has_model
    what = "LoRA adapter (adapter_config.json + adapter_model.safetensors)" if lora else \
        "saved model (config.json + weights)"
    if checkpoint is not None:
        source, kind = _checkpoint(out, checkpoint)
        if lora and not (source / ADAPTER_CONFIG).is_file():
            raise UserError(f"no {ADAPTER_CONFIG} in {source}: not a LoRA adapter", where="--checkpoint",
                            fix="pass a checkpoint of a LoRA training (output_dir/checkpoint-N)")
        if not has(source):
            raise UserError(f"no {what} in {source}", where="--checkpoint",
                            fix="pass a checkpoint that LLaMA-Factory finished saving")
        plan.source, plan.source_kind = source, kind
        return
    final = has(out) if out.is_dir() else False
    found = [p for p in reversed(checkpoints(out)) if has(p)]
    if final and (done or not found):
        plan.source, plan.source_kind = out, "final"
        if not done and plan.status not in ("never", "finished"):
            plan.notes.append(f"the run is {plan.status}, not finished, and saved no checkpoint: using the "
                              f"{what.split(' (')[0]} at the top of {out}")
        return
    if found:
        plan.source, plan.source_kind = found[0], found[0].name
        if not done:
            plan.notes.append(f"training did not finish (status {plan.status}): using the newest checkpoint, "
                              f"{found[0].name}")
        return
    if lora and out.is_dir() and (out / ADAPTER_CONFIG).is_file():
        raise UserError(f"{out} has {ADAPTER_CONFIG} but no adapter weights", where=str(out),
                        fix=f"the save was cut short and no checkpoint-N is complete: train again "
                            f"(`minicpm-tui run {plan.run_dir}`)")
    status = "never launched" if plan.status == "never" else f"status {plan.status}"
    raise UserError(f"no {what} yet in {out} or its checkpoint-N folders ({status})", where=str(plan.run_dir),
                    exit_code=1, fix=f"train first (`minicpm-tui run {plan.run_dir}`); a checkpoint-N appears every "
                    "save_steps steps")


def _check_out(plan: ExportPlan, raw: str | None) -> Path:
    out = absolute_path(raw) if raw else plan.run_dir / DEFAULT_OUT
    where = f"--out {raw}" if raw else str(out)
    precious = [plan.run_dir, plan.output_dir] + ([plan.source] if plan.source else [])
    real = out.resolve()
    for keep in precious:
        if keep.resolve() == real or real in keep.resolve().parents:
            raise UserError(f"would replace {keep}, which export reads from", where=where,
                            fix="choose a new folder for the merged model (the default is RUN_DIR/merged)")
    if out.exists() and not out.is_dir():
        raise UserError("exists and is not a directory", where=where, fix="choose another --out")
    if out.is_dir() and not plan.force:
        raise UserError("already exists", where=where,
                        fix="choose another --out, or pass --force to replace it once the new export succeeds")
    return out


def plan_export(run_dir: str | os.PathLike[str], *, out: str | None = None, checkpoint: str | None = None,
                force: bool = False, device: str = "cpu", export_size: int = DEFAULT_EXPORT_SIZE_GB) -> ExportPlan:
    """Read the run directory and decide what to export; writes nothing. UserError for every refusal."""
    from minicpm_tui.core import runner
    from minicpm_tui.core.lfinfo import run_dir_python

    run = runner.require_run_dir(run_dir, fix=STATUS_FIX + " for the runs on this machine")
    runner.require_marked_run_dir(run)
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}", where="--device", fix=f"use one of {', '.join(DEVICES)}")
    if export_size < 1:
        raise UserError("the shard size must be at least 1 GB", where="--export-size", fix="e.g. --export-size 5")
    cfg = _read_train_yaml(run)
    meta: dict[str, Any] = {}
    if (run / "generated.json").is_file():
        from minicpm_tui.core.writers import read_generated

        meta = read_generated(run)
    ft = str(cfg.get("finetuning_type") or "lora")  # LLaMA-Factory's own default
    if ft not in ("lora", "full", "freeze"):
        raise UserError(f"finetuning_type {ft!r} is not one export knows", where=f"{run / 'train.yaml'}: finetuning_type",
                        fix="use lora, full or freeze")
    out_value = cfg.get("output_dir")
    if not isinstance(out_value, str) or not out_value:
        raise UserError("no output_dir", where=f"{run / 'train.yaml'}: output_dir",
                        fix="set output_dir there (where the training saved its model)")
    status, done = _training_state(run)
    plan = ExportPlan(run_dir=run, python=run_dir_python(meta), finetuning_type=ft, base_model="",
                      template=cfg.get("template"), output_dir=_local(run, out_value), status=status, force=force,
                      device=device, export_size=export_size)
    if plan.nothing_to_merge:
        _pick_source(plan, done, checkpoint)
        return plan
    plan.base_model = _base_model(run, cfg)
    if not plan.template:
        raise UserError("no template", where=f"{run / 'train.yaml'}: template",
                        fix="set the chat template the model was trained with (e.g. cpm4)")
    _pick_source(plan, done, checkpoint)
    plan.carried = {key: cfg[key] for key in CARRIED_KEYS if key in cfg}
    resolved = meta.get("resolved")
    plan.template_from_entry = isinstance(resolved, dict) and bool(resolved.get("template_from_entry"))
    if device == "cpu" and plan.carried.get("flash_attn") == "fa2":
        plan.carried["flash_attn"] = "sdpa"
        plan.notes.append("flash_attn: fa2 needs a GPU; the merge on the CPU loads the model with sdpa")
    if cfg.get("quantization_bit"):
        plan.notes.append(f"QLoRA: the adapter is merged into the unquantized base ({plan.base_model}), not the "
                          f"{cfg['quantization_bit']}-bit one it was trained on (LLaMA-Factory cannot merge into "
                          "a quantized model)")
    plan.out = _check_out(plan, out)
    return plan


def _rel(run_dir: Path, path: Path) -> str:
    """``path`` relative to the run directory when inside it (export.yaml stays readable and movable)."""
    try:
        return str(path.relative_to(run_dir))
    except ValueError:
        return str(path)


def export_config(plan: ExportPlan, known_keys: set[str] | None = None) -> dict[str, Any]:
    """export.yaml's keys, in order; keys the installed LLaMA-Factory lacks are refused (required) or dropped."""
    assert plan.source is not None and plan.out is not None
    config: dict[str, Any] = {
        "model_name_or_path": plan.base_model,
        "adapter_name_or_path": _rel(plan.run_dir, plan.source),
        "template": plan.template,
        "finetuning_type": "lora",
        **plan.carried,
        "export_dir": _rel(plan.run_dir, plan.out),
        "export_size": plan.export_size,
        "export_device": plan.device,
        "export_legacy_format": False,
    }
    if not known_keys:
        return config
    for key in list(config):
        if key in known_keys:
            continue
        if key in REQUIRED_KEYS or key == "export_dir":
            raise UserError(f"the installed LLaMA-Factory has no {key!r} argument, which the merge needs",
                            where=f"{plan.python}", fix="install LLaMA-Factory 0.9.2 or newer in that environment")
        del config[key]
        plan.notes.append(f"{key} left out of {EXPORT_YAML}: the installed LLaMA-Factory does not have it")
    return config


def render_export_yaml(plan: ExportPlan, known_keys: set[str] | None = None) -> str:
    kind = "the final one" if plan.source_kind == "final" else plan.source_kind
    header = (f"# LLaMA-Factory merge config for {plan.run_dir.name}: its LoRA adapter ({kind}) merged into the "
              "base model.\n"
              f"# Written by minicpm-tui {__version__} (`minicpm-tui export`, which rewrites it on each export); "
              "relative paths are\n# relative to this folder. "
              + (f"Template {plan.template} is missing from this LLaMA-Factory: run it with minicpm-tui export, "
                 "which registers it.\n" if plan.template_from_entry else
                 f"By hand, from here: llamafactory-cli export {EXPORT_YAML}\n"))
    return header + yaml.safe_dump(export_config(plan, known_keys), allow_unicode=True, sort_keys=False)


def _last_error(lines: list[str]) -> str:
    for line in reversed(lines):
        text = line.strip()
        if text and ("Error" in text or "error" in text) and not text.startswith("File "):
            return text[:300]
    return next((line.strip()[:300] for line in reversed(lines) if line.strip()), "no output")


# LLaMA-Factory's and transformers' log lines that say how far the merge is (0.9.2-0.9.5, transformers 4
# and 5), as the few lines `export` shows: loading, merging, saving. Everything else is in the log only.
_LOG_PREFIX = re.compile(r"^\[(?:INFO|WARNING)\|[^\]]*\][^>]*>> ")
_PROGRESS = (
    (re.compile(r"^\[minicpm-tui\] (.+)"), "{0}"),
    (re.compile(r"^loading weights file (\S+)"), "loading the base model ({0})"),
    (re.compile(r"^Loaded adapter\(s\): (.+)"), "loaded the adapter: {0}"),
    (re.compile(r"^Merged (\d+) adapter\(s\)"), "merged {0} adapter(s) into the base model"),
    (re.compile(r"^Convert model dtype to: (\S+?)\.?$"), "converting the weights to {0}"),
    (re.compile(r"^Model weights saved in "), "saved the merged weights"),
    (re.compile(r"^The model is bigger than the maximum size per checkpoint \((\S+)\) and is going to be split in "
                r"(\d+) checkpoint shards"), "saving the merged weights in {1} shards of at most {0}"),
    (re.compile(r"^tokenizer config file saved in "), "saved the tokenizer"),
)
LOG_TAIL_LINES = 15


def progress_line(line: str) -> str | None:
    """The short progress line `export` shows for one line of LLaMA-Factory's output, or None (log only)."""
    text = _LOG_PREFIX.sub("", line.strip())
    for pattern, wording in _PROGRESS:
        found = pattern.search(text)
        if found:
            return wording.format(*found.groups())
    return None


def run_export(plan: ExportPlan, *, say: Callable[[str], None] = print, known_keys: set[str] | None = None,
               verbose: bool = False) -> Path:
    """Write export.yaml and merge; return the merged model's folder (plan.out). The training Python's
    output is kept in RUN_DIR/logs/export.log; ``say`` gets a few progress lines (``progress_line``) and,
    on a failure, the log's last lines, or with ``verbose`` every line as it comes."""
    from minicpm_tui.core.lfinfo import check_training_python, training_python_error
    from minicpm_tui.core.resources import resource_script

    assert plan.out is not None and not plan.nothing_to_merge
    if known_keys is None:
        from minicpm_tui.core.lfinfo import lf_info, require_lf

        known_keys = require_lf(lf_info(plan.python)).all_keys or None
    text = render_export_yaml(plan, known_keys)
    write_atomic(plan.yaml_path, text, mode=0o600)
    out = plan.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:40]}.export-", dir=out.parent))
    plan.log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [check_training_python(plan.python), str(resource_script("export_entry.py")), str(plan.yaml_path),
            str(tmp)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    lines: list[str] = []
    last_shown: str | None = None
    try:
        with open(plan.log_path, "w", encoding="utf-8") as log:
            try:
                proc = subprocess.Popen(argv, cwd=plan.run_dir, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        errors="replace", start_new_session=True)
            except OSError as exc:
                raise training_python_error(plan.python, f"cannot be started ({exc.strerror or exc})") from exc
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    lines.append(line)
                    del lines[:-200]
                    shown = line.rstrip("\n") if verbose else progress_line(line)
                    if shown is not None and (verbose or shown != last_shown):
                        say(shown)
                        last_shown = shown
                code = proc.wait()
            except BaseException:  # interrupted, or over the limit: leave nothing running
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
        if code != 0:
            if not verbose:
                tail = [ln.rstrip("\n") for ln in lines if ln.strip()][-LOG_TAIL_LINES:]
                say(f"--- the last {len(tail)} lines of {plan.log_path} ---")
                for ln in tail:
                    say(ln)
            raise UserError(f"LLaMA-Factory's export failed (exit {code}): {_last_error(lines)}",
                            where=str(plan.log_path), exit_code=1,
                            fix="read the log; nothing was written to " + str(out))
        if not _has_model(tmp):
            raise UserError("LLaMA-Factory's export exited 0 but wrote no config.json and weights",
                            where=str(plan.log_path), exit_code=1, fix="read the log; nothing was written to " + str(out))
        os.chmod(tmp, 0o755 & ~_umask())
        if out.exists() and not plan.force:
            raise UserError("appeared while exporting (another export?)", where=str(out), exit_code=1,
                            fix="choose another --out, or pass --force to replace it")
        if out.exists():  # --force: the old export goes only once the new one is complete
            old = Path(tempfile.mkdtemp(prefix=f".{out.name[:40]}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def nothing_to_merge_text(plan: ExportPlan) -> str:
    return (f"{plan.finetuning_type} fine-tune: nothing to merge; the servable model is {plan.source} "
            f"({'the model saved at the end' if plan.source_kind == 'final' else plan.source_kind})")
