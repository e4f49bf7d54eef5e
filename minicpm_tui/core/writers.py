"""Turn a Recipe into a self-contained run directory that the installed LLaMA-Factory accepts.

    generate(recipe, out_dir, force=False) -> list[Path]

Writes train.yaml, ds_config.json (ZeRO 2/3), single_node.sh, multi_node.sh, slurm.sbatch, train_entry.py
(our entry: registers the cpm/cpm3 chat formats missing from LLaMA-Factory 0.9.5, then runs its
run_exp), dataset_info.json, recipe.yaml, generated.json (facts the smoke run and the runner read) and a
README.md. Every value that reaches a shell is quoted with shlex.quote, every YAML value is emitted by
yaml.safe_dump, and names with control characters are refused by the recipe.

Run-directory layout (the runner and smoke rely on it): scripts cd into the run directory, so train.yaml
refers to ``ds_config.json``, ``dataset_info.json`` (dataset_dir ``.``) and ``output`` relatively; a copy
of the directory runs elsewhere when the model, data files and LLaMA-Factory are at the same paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from minicpm_tui import __version__
from minicpm_tui.core.atomic import backup, write_atomic
from minicpm_tui.core.errors import UserError
from minicpm_tui.core.paths import absolute_path
from minicpm_tui.core.recipe import AUTO, Recipe
from minicpm_tui.core.resources import resource_script

GENERATED_FILES = ("train.yaml", "ds_config.json", "single_node.sh", "multi_node.sh", "slurm.sbatch",
                   "train_entry.py", "dataset_info.json", "recipe.yaml", "generated.json", "README.md")
REGISTERED_BY_ENTRY = ("cpm", "cpm3")
DIGESTS_KEY = "files_sha256"  # generated.json: each written file's sha256 (generated.json's: over its other facts)
PLAN_REASON_FIELDS = ("zero_stage", "micro_batch")  # where the planner's one-line reason is shown  # chat formats train_entry.py adds when LLaMA-Factory lacks them

NCCL_REASONS = {
    "NCCL_P2P_DISABLE": "the driver reports GPU peer-to-peer as working but it hangs or corrupts data on this "
                        "card class (GeForce RTX 40xx/50xx, PCIe ACS/IOMMU); NCCL then goes through host memory",
    "NCCL_IB_DISABLE": "no usable InfiniBand/RoCE port: keep NCCL from probing it",
    "NCCL_SOCKET_IFNAME": "the network interface NCCL uses between nodes",
    "NCCL_DEBUG": "NCCL logs its transport choices (useful when a run hangs at start)",
    "NCCL_ASYNC_ERROR_HANDLING": "fail fast instead of hanging when a rank dies",
}


# -- resolution: recipe + model + LLaMA-Factory + plan -> concrete values ----------------------------
@dataclass
class Resolved:
    """Every concrete value the files need, with the reason behind each non-obvious one."""

    model_name_or_path: str
    model_name: str
    chat_format: str
    template: str
    template_from_entry: bool
    trust_remote_code: bool
    attention: str
    gpus: int
    nodes: int
    zero_stage: int
    offload: str
    precision: str
    flash_attn: str
    gradient_checkpointing: bool
    micro_batch: int
    grad_accum: int
    nccl_env: dict[str, str]
    lf_version: str | None
    training_python: str
    cuda_visible_devices: str
    reasons: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    lf_target: str = "installed"  # the recipe's lf_target: "installed", a release or a saved report
    lf_checked_against: str = ""  # what the keys and templates were read from, in words

    @property
    def elsewhere(self) -> bool:
        """Written for a LLaMA-Factory that is not this machine's (``lf_target`` is not installed)."""
        return self.lf_target != "installed"

    @property
    def uses_deepspeed(self) -> bool:
        return self.zero_stage in (2, 3)

    @property
    def distributed(self) -> bool:
        return self.uses_deepspeed or self.gpus * self.nodes > 1


def recipe_model(recipe: Recipe) -> Any:
    from minicpm_tui.core.models import load_model

    model = recipe.model
    local = recipe.resolve_path(model) if (model.startswith((".", "/", "~")) or os.sep in model and
                                           Path(model).expanduser().exists()) else None
    if local is not None and local.exists():
        return load_model(str(local)), str(local)
    arch = load_model(model)
    return arch, (arch.hub_id or model)


def local_model(value: str) -> bool:
    """Whether train.yaml's ``model_name_or_path`` is a path (read on the machine that trains, at that path),
    not a hub id (``name`` or ``org/name``: fetched, or found in the hub cache, there): absolute, ~, ./ ../, or
    more than one slash. ``recipe_model`` makes a local one absolute; a hand-edited train.yaml may not."""
    return value.startswith((".", "/", "~")) or os.path.isabs(value) or value.count("/") > 1


def model_path_note(model_path: str, elsewhere: bool, bundled: bool, tui: bool = False) -> str | None:
    """What to do about a model named by its path here, in a run directory that goes to another machine
    (written for another one's LLaMA-Factory, or with its data bundled to be moved); None when it does not
    apply. Said, never refused: the same path may well exist there (a shared filesystem). ``tui``: the fix in
    the wizard's words."""
    if not (elsewhere or bundled) or not local_model(model_path):
        return None
    if tui:  # beside the label "model", in a few lines of the Review step
        return (f"{model_path}: a path here, not carried: copy it to that path on the machine that trains, name "
                "it by its hub id (step 2), or edit model_name_or_path in train.yaml there")
    return (f"the model is named by its path on this machine ({model_path}), which the run directory does not "
            "carry: copy it to the same path on the machine that trains, or use its hub id (--model ORG/NAME), or "
            "edit model_name_or_path in train.yaml there")


def written_for_note(info: Any, python: str | None = None) -> str:
    """The plan's note for a run directory written for another LLaMA-Factory (``info.target``): train.yaml's
    and the README's; generate's preflight says it with what it checked instead (``target_note``). ``info``
    may also be its description in words (``info.describe()``), with its saved ``python``."""
    words = info if isinstance(info, str) else info.describe()
    python = python if isinstance(info, str) else info.python
    saved = f"; its python there was {python}" if python else ""
    return (f"written for {words}, not this machine's LLaMA-Factory: run `minicpm-tui run --check "
            f"RUN_DIR` where it trains, with TRAIN_PYTHON set to that environment's python{saved}")


def run_dir_written_for(run_dir: str | os.PathLike[str]) -> str | None:
    """``written_for_note`` of a run directory written for another machine's LLaMA-Factory (its
    generated.json's ``lf_target``), None when it is written for this machine's (or names no target)."""
    target = read_generated(run_dir).get("lf_target")
    if not isinstance(target, dict) or target.get("value") in (None, "installed"):
        return None
    words = target.get("checked_against") or f"the LLaMA-Factory {target['value']}"
    saved = target.get("saved_python")
    return written_for_note(str(words), saved if isinstance(saved, str) else None)


def choose_template(recipe: Recipe, chat_format: str, templates: list[str],
                    who: str = "the installed LLaMA-Factory") -> tuple[str, bool, str]:
    """(template, registered by our entry, reason); ``who`` names the LLaMA-Factory ``templates`` are from."""
    if recipe.template != AUTO:
        if recipe.template in templates:
            return recipe.template, False, "chosen in the recipe"
        if recipe.template in REGISTERED_BY_ENTRY:
            return recipe.template, True, "missing from this LLaMA-Factory; train_entry.py registers it"
        import difflib

        close = difflib.get_close_matches(recipe.template, templates, n=3)
        raise UserError(f"template {recipe.template!r} is not registered by {who}",
                        where="recipe: template",
                        fix=f"use 'auto'{' or one of ' + ', '.join(close) if close else ''}")
    if chat_format == "cpm3":
        for name in ("cpm4", "cpm3"):
            if name in templates:
                return name, False, (f"MiniCPM3/4 chat format; this LLaMA-Factory registers it as {name}")
        return "cpm3", True, "MiniCPM3/4 chat format; missing here, so train_entry.py registers cpm3"
    if chat_format == "cpm":
        if "cpm" in templates:
            return "cpm", False, "MiniCPM 1B/2B chat format (<用户>..<AI>)"
        return "cpm", True, ("MiniCPM 1B/2B chat format (<用户>..<AI>); LLaMA-Factory 0.9.5 removed it, "
                             "train_entry.py registers the original definition")
    raise UserError(f"unknown chat format {chat_format!r} for {recipe.model}", where="recipe: template",
                    fix="set template explicitly")


def recipe_hardware(recipe: Recipe) -> Any:
    """The HardwareProfile the recipe names (preset or saved probe), or this machine's probe for 'auto'."""
    from minicpm_tui.core.probe import load_hardware, probe

    if recipe.hardware == AUTO:
        return probe()
    # A saved probe named in a recipe file lies beside it (typed flags were made absolute already).
    beside = recipe.resolve_path(recipe.hardware)
    return load_hardware(beside if beside.is_file() else recipe.hardware)


def _planner_choice(recipe: Recipe, arch: Any, hardware: Any, gpus: int) -> tuple[Any | None, str]:
    """The planner's recommended PlanChoice, or (None, why not)."""
    from minicpm_tui.core.planner import PlanRequest, plan

    if hardware is None or not getattr(hardware, "gpus", None):
        if recipe.hardware != AUTO:
            return None, f"no GPU to plan for (hardware {recipe.hardware} has none)"
        return None, "no GPU hardware to plan for (hardware: auto on a machine without GPUs)"

    def explicit(value: Any) -> Any:
        return None if value == AUTO else value

    targets = [t.strip() for t in recipe.lora_target.split(",")] if recipe.lora_target != "all" else None
    request = PlanRequest(
        model=arch, method=recipe.method, stage=recipe.stage, hardware=hardware, gpus=gpus, nodes=recipe.nodes,
        cutoff_len=recipe.cutoff_len, lora_rank=recipe.lora_rank, lora_targets=targets,
        zero_stage=explicit(recipe.zero_stage), offload=explicit(recipe.offload),
        precision=explicit(recipe.precision), micro_batch=explicit(recipe.micro_batch),
        gradient_checkpointing=recipe.gradient_checkpointing != "false",
    )
    try:
        result = plan(request)
    except UserError:
        if recipe.hardware != AUTO:
            raise
        return None, "the planner could not plan for this machine"
    return result.recommended, "planner"


def resolve(recipe: Recipe, info: Any | None = None) -> Resolved:
    """Fill every 'auto' from the model, the target LLaMA-Factory (``lf_target``) and the planner."""
    from minicpm_tui.core.lfinfo import training_python
    from minicpm_tui.core.lftarget import target_info

    info = info or target_info(recipe)
    arch, model_path = recipe_model(recipe)
    reasons: dict[str, str] = {}
    notes: list[str] = []
    template, from_entry, why = choose_template(recipe, arch.chat_format, info.templates, info.describe())
    reasons["template"] = why
    if recipe.trust_remote_code == AUTO:
        trust = bool(arch.remote_code)
        reasons["trust_remote_code"] = ("the checkpoint ships its own modelling code (auto_map); LLaMA-Factory "
                                        ">= 0.9.2 defaults this to false" if trust else
                                        "the model loads with transformers' own classes")
    else:
        trust = recipe.trust_remote_code == "true"
    if info.target:
        notes.append(written_for_note(info))
    if recipe.method != "full" and recipe.lora_target != "all":
        arch.lora_params(recipe.lora_rank, recipe.lora_target)  # raises a UserError naming bad targets

    hardware = recipe_hardware(recipe) if (recipe.gpus == AUTO or recipe.hardware != AUTO) else None
    if recipe.gpus != AUTO:
        gpus = int(recipe.gpus)
    else:
        seen = len(hardware.usable_gpus()) if hardware is not None and hasattr(hardware, "usable_gpus") else 0
        gpus = max(seen, 1)
        if not seen:
            notes.append("no GPU was seen here: planned for 1 GPU per node; set `gpus` for the target machine")
    choice, source = _planner_choice(recipe, arch, hardware, gpus)
    if choice is None:
        notes.append(f"{source}: used conservative defaults for the 'auto' plan fields")

    def pick(name: str, recipe_value: Any, fallback: Any, fallback_reason: str) -> Any:
        if recipe_value != AUTO:
            reasons.setdefault(name, "chosen in the recipe")
            return recipe_value
        value = getattr(choice, name, None) if choice is not None else None
        if value is None:
            reasons.setdefault(name, fallback_reason)
            return fallback
        reasons.setdefault(name, "the planner's choice" if name not in PLAN_REASON_FIELDS else
                           str(getattr(choice, "reason", "") or "the planner's recommendation"))
        return value

    cc = _min_compute_capability(hardware)
    big = arch.param_count() > 3e9
    zero_fb = (3 if big else 2) if recipe.method == "full" else (2 if gpus * recipe.nodes > 1 else 0)
    zero = int(pick("zero_stage", recipe.zero_stage, zero_fb,
                    "ZeRO-3 shards weights, gradients and optimizer state: a full fine-tune of a model this size"
                    if zero_fb == 3 else "ZeRO-2 shards gradients and optimizer state across GPUs"
                    if zero_fb == 2 else "one GPU with LoRA: plain data parallel, no DeepSpeed needed"))
    offload = str(pick("offload", recipe.offload, "none", "the model states fit in GPU memory"))
    if offload in ("false", "False", "None"):
        offload = "none"
    prec_fb = "fp16" if cc is not None and cc < (8, 0) else "bf16"
    precision = str(pick("precision", recipe.precision, prec_fb,
                         "fp16: this GPU has no bf16 (compute capability < 8.0)" if prec_fb == "fp16"
                         else "bf16 mixed precision (Ampere or newer)"))
    fa_fb = "sdpa" if cc is not None and cc < (8, 0) else "auto"
    flash = str(pick("flash_attn", recipe.flash_attn, fa_fb,
                     "pre-Ampere GPU: MiniCPM's remote code would switch on FlashAttention-2, which fails there"
                     if fa_fb == "sdpa" else "LLaMA-Factory picks FlashAttention-2 when installed, else SDPA"))
    gc_value = pick("gradient_checkpointing", recipe.gradient_checkpointing, True,
                    "recompute activations: long sequences fit at a ~30% speed cost")
    gc_flag = gc_value if isinstance(gc_value, bool) else str(gc_value).lower() == "true"
    micro = int(pick("micro_batch", recipe.micro_batch, 1, "1 example per GPU per step; raise it if memory allows"))
    accum = int(pick("grad_accum", recipe.grad_accum, 8, "effective batch = micro_batch x grad_accum x GPUs"))
    nccl: dict[str, str] = {}
    if recipe.nccl_auto and choice is not None:
        nccl.update({str(k): str(v) for k, v in (getattr(choice, "nccl_env", None) or {}).items()})
    nccl.update({k: str(v) for k, v in recipe.nccl_env.items()})
    for key in nccl:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UserError(f"{key!r} is not an environment variable name", where="plan: nccl_env")
    if offload == "all" and zero != 3:
        raise UserError("offloading parameters needs ZeRO-3", where="recipe: offload",
                        fix="set zero_stage: 3, or offload: optimizer")
    if offload != "none" and zero == 0:
        offload = "none"
    for name, value, text in (
            ("precision", precision, {"bf16": "bf16 mixed precision: Ampere or newer GPUs have it",
                                      "fp16": "fp16 mixed precision: these GPUs lack bf16 (compute capability < 8.0)",
                                      "fp32": "fp32: slow and memory-hungry; for debugging"}),
            ("flash_attn", flash, {"sdpa": "PyTorch SDPA: MiniCPM's remote code would switch on FlashAttention-2, "
                                           "which fails before Ampere",
                                   "fa2": "FlashAttention-2 (Ampere or newer, flash-attn installed)",
                                   "auto": "LLaMA-Factory uses FlashAttention-2 when installed, else SDPA"})):
        if reasons.get(name) == "the planner's choice" and value in text:
            reasons[name] = text[value]
    if choice is not None and getattr(choice, "reason", ""):
        reasons["plan"] = str(choice.reason)
    visible = recipe.cuda_visible_devices or ",".join(str(i) for i in range(gpus))
    return Resolved(
        model_name_or_path=model_path, model_name=arch.name, chat_format=arch.chat_format, template=template,
        template_from_entry=from_entry, trust_remote_code=trust, attention=arch.attention, gpus=gpus,
        nodes=recipe.nodes, zero_stage=zero, offload=offload, precision=precision, flash_attn=flash,
        gradient_checkpointing=gc_flag, micro_batch=micro, grad_accum=accum, nccl_env=nccl,
        lf_version=info.version,
        # Written for elsewhere: no Python of this machine is the run's (its scripts take $TRAIN_PYTHON/python3).
        training_python="" if info.target else (info.python or training_python()),
        cuda_visible_devices=visible, reasons=reasons, notes=notes,
        lf_target=info.target or "installed", lf_checked_against=info.describe(),
    )


def _min_compute_capability(hardware: Any) -> tuple[int, int] | None:
    if hardware is None:
        return None
    caps = [tuple(g.compute_capability) for g in getattr(hardware, "gpus", []) if getattr(g, "compute_capability",
                                                                                          None)]
    return min(caps) if caps else None  # type: ignore[return-value]


# -- datasets --------------------------------------------------------------------------------------
def dataset_entries(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """The run's dataset_info.json: each recipe dataset's entry, with file paths made absolute.

    Names come from dataset_dir/dataset_info.json; a name that is not registered there but matches a
    data file (NAME.json/.jsonl/...) is registered through the datasets core when it is available.
    """
    data_dir = recipe.resolve_path(recipe.dataset_dir)
    info_path = data_dir / "dataset_info.json"
    registry: dict[str, Any] = {}
    if info_path.is_file():
        try:
            registry = json.loads(info_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UserError(f"not valid JSON: {exc}", where=str(info_path),
                            fix="fix it, or register datasets again with `minicpm-tui register`",
                            fix_tui="fix it, or register the dataset again (Dataset step, ^g)") from exc
        if not isinstance(registry, dict):
            raise UserError("dataset_info.json must map dataset names to entries", where=str(info_path))
    elif not data_dir.is_dir():
        raise UserError("dataset_dir does not exist", where=f"recipe: dataset_dir ({data_dir})",
                        fix="point it at the folder holding dataset_info.json (generate: --dataset-dir DIR)")
    out: dict[str, dict[str, Any]] = {}
    for name in recipe.datasets:
        entry = registry.get(name)
        if entry is None:
            entry = _entry_from_file(data_dir, name, recipe.stage)
        if entry is None:
            import difflib

            _refuse_a_path_as_dataset_name(recipe, name)
            from minicpm_tui.assets import asset_path

            close = difflib.get_close_matches(name, list(registry), n=1)
            # The shipped demo folder is no place for the user's data: name a folder of theirs.
            folder = "DIR" if data_dir == asset_path("data").resolve() else shlex.quote(str(data_dir))
            then = "" if folder != "DIR" else f", then pass --datasets {name} --dataset-dir DIR"
            raise UserError(f"dataset {name!r} is not registered", where=str(info_path),
                            fix=f"did you mean {close[0]!r}?" if close else
                            f"register it with `minicpm-tui register FILE --name {name} --dataset-dir {folder}`"
                            f"{then}",
                            fix_tui=None if close else "register it on the Dataset step (^g)")
        if not isinstance(entry, dict):
            raise UserError(f"the entry of dataset {name!r} is not a mapping", where=str(info_path))
        entry = dict(entry)
        # A hub, script or cloud entry is loaded from there (LLaMA-Factory's get_dataset_list looks at these
        # keys before file_name), and its "folder" is a folder of the hub dataset, not a local path.
        from minicpm_tui.core.datasets.formats import REMOTE_KEYS

        remote = any(entry.get(key) for key in REMOTE_KEYS)
        for key in ("file_name", "folder"):
            if isinstance(entry.get(key), str) and not remote:
                target = Path(entry[key]).expanduser()
                if not target.is_absolute():
                    target = data_dir / target
                if key == "file_name" and not target.exists():
                    raise UserError(f"data file of dataset {name!r} not found: {target}", where=str(info_path),
                                    fix="fix its file_name, or move the file back")
                entry[key] = str(target.resolve())
        _check_stage(name, entry, recipe.stage, str(info_path))
        out[name] = entry
    return out


BUNDLE_DIR = "data"


def bundled_entries(entries: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[tuple[Path, str]]]:
    """``entries`` with each local data file (or folder of shards) moved under ``data/<dataset>/`` of the run
    directory, and the (source, path in the run directory) pairs to put there.

    LLaMA-Factory reads a local file_name relative to dataset_dir ("." in train.yaml, where the scripts cd),
    so the relative names hold wherever the folder is moved. One folder per dataset: two datasets may have
    files of the same name. Remote entries (hub, script, cloud) have nothing local to bundle.
    """
    from minicpm_tui.core.datasets.formats import REMOTE_KEYS

    out: dict[str, dict[str, Any]] = {}
    copies: list[tuple[Path, str]] = []
    for name, entry in entries.items():
        entry = dict(entry)
        if isinstance(entry.get("file_name"), str) and not any(entry.get(key) for key in REMOTE_KEYS):
            source = Path(entry["file_name"])
            # the dataset name may hold characters a folder name should not (register refuses "/" already)
            folder = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "dataset"
            rel = f"{BUNDLE_DIR}/{folder}/{source.name}"
            entry["file_name"] = rel
            copies.append((source, rel))
        out[name] = entry
    return out, copies


def _link_or_copy(source: str, dest: str) -> None:
    """A hard link (no extra disk, instant), else a copy: another filesystem, or one without links."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def bundle_data(copies: list[tuple[Path, str]], run_dir: Path) -> int:
    """Put each bundled source at its place in ``run_dir``; returns the bytes bundled."""
    total = 0
    for source, rel in copies:
        dest = run_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            if source.is_dir():
                shutil.copytree(source, dest, copy_function=_link_or_copy)
                total += sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
            else:
                _link_or_copy(str(source), str(dest))
                total += dest.stat().st_size
        except OSError as exc:
            raise UserError(f"could not bundle the data file {source}: {exc.strerror or exc}", where=str(dest),
                            fix="free disk space or fix the permissions, or generate without --bundle-data") from exc
    return total


def _refuse_a_path_as_dataset_name(recipe: Recipe, name: str) -> None:
    """`--datasets data/train.jsonl`: a data file (or a folder of shards) where a dataset's name goes."""
    if os.sep not in name and "/" not in name and Path(name).suffix.lower() not in (".json", ".jsonl", ".csv",
                                                                                     ".parquet"):
        return
    path = recipe.resolve_path(name)
    if not path.exists():
        return
    folder, stem = (path, path.name) if path.is_dir() else (path.parent, path.stem)
    what = "a folder" if path.is_dir() else "a data file"
    if path.is_dir() and (path / "dataset_info.json").is_file():
        fix = f"it is a dataset folder: pass --dataset-dir {shlex.quote(str(path))} and one of its entries' names"
    elif path.is_dir():
        fix = (f"register the folder: `minicpm-tui register {shlex.quote(str(path))} --name {stem} --dataset-dir "
               f"{shlex.quote(str(folder.parent))}`, then pass --datasets {stem} --dataset-dir "
               f"{shlex.quote(str(folder.parent))}")
    else:
        fix = (f"pass --datasets {stem} --dataset-dir {shlex.quote(str(folder))} (a file NAME.jsonl there is "
               f"registered by its name), or register it: `minicpm-tui register {shlex.quote(str(path))} --name "
               f"{stem} --dataset-dir {shlex.quote(str(folder))}`")
    raise UserError(f"{name!r} is {what}; datasets takes the names of datasets in dataset_info.json",
                    where="recipe: datasets", fix=fix,
                    fix_tui="pick the file on the Dataset step (^o browse) and register it (^g)")


def _entry_from_file(data_dir: Path, name: str, stage: str) -> dict[str, Any] | None:
    try:
        from minicpm_tui.core.datasets import dataset_info_entry, validate_file  # type: ignore[attr-defined]
    except ImportError:
        return None
    for ext in (".jsonl", ".json", ".csv", ".parquet"):
        path = data_dir / f"{name}{ext}"
        if path.is_file():
            report = validate_file(path, stage=stage)
            entry = dict(dataset_info_entry(report))
            entry["file_name"] = str(path.resolve())
            return entry
    return None


def _check_stage(name: str, entry: dict[str, Any], stage: str, where: str) -> None:
    ranking = bool(entry.get("ranking"))
    if stage == "dpo" and not ranking:
        raise UserError(f"dataset {name!r} is not preference data (no `ranking: true`), but stage is dpo",
                        where=where, fix="choose a DPO dataset with chosen/rejected, or stage sft")
    if stage != "dpo" and ranking:
        raise UserError(f"dataset {name!r} is preference data (ranking: true), which stage {stage} rejects",
                        where=where, fix="use it with stage dpo")
    if stage == "kto" and "kto_tag" not in (entry.get("columns") or {}):
        raise UserError(f"dataset {name!r} has no kto_tag column, which stage kto needs", where=where,
                        fix="map the boolean label column to kto_tag in its entry")


# -- train.yaml -----------------------------------------------------------------------------------
def train_args(recipe: Recipe, res: Resolved) -> list[tuple[str, list[tuple[str, Any, str]]]]:
    """train.yaml as groups of (key, value, one-line reason or '')."""
    r = res.reasons
    model = [("model_name_or_path", res.model_name_or_path, ""),
             ("trust_remote_code", res.trust_remote_code, r.get("trust_remote_code", "")),
             ("template", res.template, r.get("template", "")),
             ("flash_attn", res.flash_attn, r.get("flash_attn", ""))]
    if not res.gradient_checkpointing:
        model.append(("disable_gradient_checkpointing", True, r.get("gradient_checkpointing", "")))
    method: list[tuple[str, Any, str]] = [("stage", recipe.stage, ""), ("do_train", True, ""),
                                          ("finetuning_type", "full" if recipe.method == "full" else "lora", "")]
    if recipe.method != "full":
        method += [("lora_rank", recipe.lora_rank, ""), ("lora_alpha", recipe.lora_alpha, ""),
                   ("lora_dropout", recipe.lora_dropout, ""),
                   ("lora_target", recipe.lora_target,
                    "every linear layer; safe for MiniCPM3's latent attention (no q_proj/v_proj)"
                    if recipe.lora_target == "all" else "")]
    if recipe.method == "qlora":
        method.append(("quantization_bit", 4, "QLoRA: the frozen base is stored in 4 bits"
                       + ("; under ZeRO-3 LLaMA-Factory needs bitsandbytes >= 0.43" if res.zero_stage == 3 else "")))
    if recipe.stage in ("dpo", "kto"):
        method += [("pref_beta", recipe.pref_beta, ""), ("pref_ftx", recipe.pref_ftx, "")]
    if recipe.stage == "dpo":
        method.append(("pref_loss", recipe.pref_loss, ""))
    ddp: list[tuple[str, Any, str]] = [("ddp_timeout", 180000000, "long data preprocessing must not time out")]
    if res.uses_deepspeed:
        why = ("ZeRO-3 shards weights, gradients and optimizer state"
               if res.zero_stage == 3 else "ZeRO-2 shards gradients and optimizer state")
        ddp.append(("deepspeed", "ds_config.json", f"{why}; {r.get('zero_stage', '')}".strip("; ")))
    dataset: list[tuple[str, Any, str]] = [
        ("dataset", ",".join(recipe.datasets), ""),
        ("dataset_dir", ".", "this run's dataset_info.json (absolute paths to the data files)"),
        ("cutoff_len", recipe.cutoff_len, ""), ("overwrite_cache", True, ""),
    ]
    if recipe.max_samples:
        dataset.append(("max_samples", recipe.max_samples, ""))
    output = [("output_dir", recipe.output_dir, ""), ("logging_steps", recipe.logging_steps, ""),
              ("save_steps", recipe.save_steps, ""), ("plot_loss", True, ""),
              ("overwrite_output_dir", False, "a rerun resumes from the last checkpoint instead of starting over"),
              ("report_to", recipe.report_to, "")]
    if recipe.save_total_limit:
        output.append(("save_total_limit", recipe.save_total_limit, ""))
    train: list[tuple[str, Any, str]] = [
        ("per_device_train_batch_size", res.micro_batch, r.get("micro_batch", "")),
        ("gradient_accumulation_steps", res.grad_accum, r.get("grad_accum", "")),
        ("learning_rate", recipe.learning_rate, ""),
    ]
    if recipe.max_steps:
        train.append(("max_steps", recipe.max_steps, "overrides num_train_epochs"))
    else:
        train.append(("num_train_epochs", recipe.num_train_epochs, ""))
    train.append(("lr_scheduler_type", recipe.lr_scheduler_type, ""))
    if "warmup_steps" not in recipe.extra_args:  # transformers 5 lets warmup_ratio override warmup_steps
        train.append(("warmup_ratio", recipe.warmup_ratio, ""))
    train.append(("seed", recipe.seed, ""))
    if res.precision == "bf16":
        train.append(("bf16", True, r.get("precision", "")))
    elif res.precision == "fp16":
        train.append(("fp16", True, r.get("precision", "")))
    evals: list[tuple[str, Any, str]] = []
    if recipe.val_size > 0:
        evals = [("val_size", recipe.val_size, ""), ("per_device_eval_batch_size", res.micro_batch, ""),
                 ("eval_strategy", "steps", ""), ("eval_steps", recipe.eval_steps, "")]
    groups = [("model", model), ("method", method), ("ddp", ddp), ("dataset", dataset), ("output", output),
              ("train", train), ("eval", evals)]
    if recipe.extra_args:
        groups.append(("extra (from the recipe's extra_args)",
                       [(str(k), v, "replaces warmup_ratio" if k == "warmup_steps" else "")
                        for k, v in recipe.extra_args.items()]))
    return groups


def _one_line(text: str) -> str:
    """Comment text with no way to end the comment (control characters shown escaped)."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], str(text))


def _yaml_value(key: str, value: Any) -> str:
    dumped = yaml.safe_dump({key: value}, allow_unicode=True, default_flow_style=True, width=100_000).strip()
    return dumped[1:-1] if dumped.startswith("{") else dumped


def render_train_yaml(recipe: Recipe, res: Resolved, known_keys: set[str] | None = None) -> str:
    lines = [f"# LLaMA-Factory training config for {_one_line(recipe.name)}: {_one_line(res.model_name)}, "
             f"{recipe.stage} {recipe.method}.",
             f"# Written by minicpm-tui {__version__} for LLaMA-Factory {res.lf_version}; launch with single_node.sh",
             "# (it cds into this folder, so the relative paths below are relative to it)."]
    if res.reasons.get("plan"):
        lines.append(f"# Plan: {_one_line(res.reasons['plan'])}")
    for note in res.notes:
        lines.append(f"# Note: {_one_line(note)}")
    seen: set[str] = set()
    for title, items in train_args(recipe, res):
        if not items:
            continue
        lines.append(f"\n### {title}")
        for key, value, why in items:
            if key in seen:
                raise UserError(f"train.yaml key {key!r} is set twice", where="recipe: extra_args",
                                fix=f"remove {key} from extra_args; the recipe sets it")
            seen.add(key)
            if known_keys is not None and key not in known_keys:
                who = res.lf_checked_against or f"the installed LLaMA-Factory ({res.lf_version})"
                if key in recipe.extra_args:
                    fix = "remove it from extra_args, or target a LLaMA-Factory that has it"
                else:
                    fix = "choose a recipe setting that release has, or another lf_target"
                raise UserError(f"key {key!r} does not exist in {who}", where="train.yaml", fix=fix)
            text = _yaml_value(key, value)
            lines.append(f"{text}  # {_one_line(why)}" if why else text)
    return "\n".join(lines) + "\n"


# -- ds_config.json --------------------------------------------------------------------------------
def ds_config(res: Resolved) -> dict[str, Any]:
    """DeepSpeed config matching the plan; 'auto' where the HF Trainer fills the value in."""
    cfg: dict[str, Any] = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
                 "hysteresis": 2, "min_loss_scale": 1},
        "bf16": {"enabled": "auto"},
    }
    zero: dict[str, Any] = {"stage": res.zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if res.zero_stage == 2:
        zero.update({"allgather_partitions": True, "allgather_bucket_size": 500000000, "reduce_scatter": True,
                     "reduce_bucket_size": 500000000, "round_robin_gradients": True})
    else:
        zero.update({"sub_group_size": 1000000000, "reduce_bucket_size": "auto",
                     "stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                     "stage3_max_live_parameters": 1000000000, "stage3_max_reuse_distance": 1000000000,
                     "stage3_gather_16bit_weights_on_model_save": True})
    if res.offload in ("optimizer", "all"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if res.offload == "all":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    cfg["zero_optimization"] = zero
    return cfg


# -- shell scripts ---------------------------------------------------------------------------------
q = shlex.quote


def _python_default(res: Resolved) -> list[str]:
    """TRAIN_PYTHON: the environment's, else the training Python seen at generation, else python3."""
    if not res.training_python:
        return [f"# The Python that has LLaMA-Factory {_one_line(str(res.lf_version))}: $TRAIN_PYTHON, else python3 "
                "(written on another machine,", "# so no Python path of that one is assumed).",
                'TRAIN_PYTHON="${TRAIN_PYTHON:-python3}"']
    return [
        "# The Python that has LLaMA-Factory: $TRAIN_PYTHON, else the one minicpm-tui found, else python3.",
        'if [[ -z "${TRAIN_PYTHON:-}" ]]; then',
        f"  if [[ -x {q(res.training_python)} ]]; then TRAIN_PYTHON={q(res.training_python)}; else TRAIN_PYTHON=python3; fi",
        "fi",
    ]


def _default(var: str, value: Any, *, export: bool = False, unset_only: bool = False) -> str:
    """``VAR`` from the environment, else ``value`` (quoted for the shell whatever it holds).

    ``unset_only``: an empty value in the environment is kept (CUDA_VISIBLE_DEVICES= hides all GPUs).
    """
    test = f'-z "${{{var}+set}}"' if unset_only else f'-z "${{{var}:-}}"'
    line = f"if [[ {test} ]]; then {var}={q(str(value))}; fi"
    return f"{line}; export {var}" if export else line


def _env_block(recipe: Recipe, res: Resolved, nproc: int, nnodes: int) -> list[str]:
    lines = [
        "# Each of these can be overridden from the environment, e.g. NPROC_PER_NODE=2 bash single_node.sh",
        _default("NPROC_PER_NODE", nproc),
        _default("NNODES", nnodes),
        _default("NODE_RANK", 0),
        _default("MASTER_ADDR", recipe.master_addr),
        _default("MASTER_PORT", recipe.master_port),
        _default("CUDA_VISIBLE_DEVICES", res.cuda_visible_devices, export=True, unset_only=True),
        "# NVML and CUDA number the GPUs alike (minicpm-tui's probe uses NVML indices).",
        'export CUDA_DEVICE_ORDER="${CUDA_DEVICE_ORDER:-PCI_BUS_ID}"',
        'TRAIN_YAML="${TRAIN_YAML:-train.yaml}"',
        "# Less fragmentation and no record-stream stalls, as `llamafactory-cli train` sets under torchrun.",
        'export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"',
        'export TORCH_NCCL_AVOID_RECORD_STREAMS="${TORCH_NCCL_AVOID_RECORD_STREAMS:-1}"',
        "# Secrets (HF_TOKEN, WANDB_API_KEY...) are never written here: export them before launching.",
    ]
    for key in sorted(res.nccl_env):
        why = NCCL_REASONS.get(key, "requested by the plan")
        lines.append(f"# {_one_line(key)}: {_one_line(why)}")
        lines.append(_default(key, res.nccl_env[key], export=True))
    if recipe.lf_source:
        src = str(Path(recipe.lf_source).expanduser().resolve() / "src")
        lines.append("# LLaMA-Factory from the source checkout named in the recipe (as in OpenBMB's guide).")
        lines.append(f'export PYTHONPATH={q(src)}"${{PYTHONPATH:+:$PYTHONPATH}}"')
    return lines


def _header(recipe: Recipe, res: Resolved, what: str) -> list[str]:
    return [
        "#!/usr/bin/env bash",
        f"# {what}",
        f"# Run: {_one_line(recipe.name)} ({_one_line(res.model_name)}, {recipe.stage} {recipe.method}, "
        f"ZeRO-{res.zero_stage}{', offload ' + res.offload if res.offload != 'none' else ''}, {res.precision}).",
        f"# Written by minicpm-tui {__version__} for LLaMA-Factory {res.lf_version}.",
        "# Extra arguments are passed to LLaMA-Factory as key=value overrides, e.g. max_steps=10.",
        "set -euo pipefail",
        'RUN_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"',
        'cd -- "$RUN_DIR"',
    ]


def render_single_node(recipe: Recipe, res: Resolved) -> str:
    lines = _header(recipe, res, "Launch on one machine (torchrun; also each node of a static multi-node job "
                                 "with NNODES/NODE_RANK/MASTER_ADDR set).")
    lines += _env_block(recipe, res, res.gpus, 1) + _python_default(res)
    lines += [
        'echo "minicpm-tui: $NNODES node(s) x $NPROC_PER_NODE process(es), node rank $NODE_RANK, '
        'master $MASTER_ADDR:$MASTER_PORT, config $TRAIN_YAML" >&2',
        'exec "$TRAIN_PYTHON" -m torch.distributed.run \\',
        '  --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$NPROC_PER_NODE" \\',
        '  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \\',
        '  train_entry.py "$TRAIN_YAML" "$@"',
    ]
    return "\n".join(lines) + "\n"


def render_multi_node(recipe: Recipe, res: Resolved) -> str:
    lines = _header(recipe, res, "Launch on EACH node: NODE_RANK=0 on the first, 1..N-1 on the others; "
                                 "MASTER_ADDR = node 0's address (c10d rendezvous).")
    lines += _env_block(recipe, res, res.gpus, max(recipe.nodes, 2)) + _python_default(res)
    lines += [
        "# The same job id on every node joins them into one rendezvous.",
        'RDZV_ID="${RDZV_ID:-minicpm-tui-$MASTER_PORT}"',
        "# Node 0 hosts the rendezvous store; the others only connect to it.",
        'if [[ "$NODE_RANK" == 0 ]]; then IS_HOST=1; else IS_HOST=0; fi',
        'echo "minicpm-tui: node $NODE_RANK of $NNODES, $NPROC_PER_NODE process(es), '
        'rendezvous $MASTER_ADDR:$MASTER_PORT" >&2',
        'exec "$TRAIN_PYTHON" -m torch.distributed.run \\',
        '  --nnodes "$NNODES" --nproc_per_node "$NPROC_PER_NODE" --node_rank "$NODE_RANK" \\',
        '  --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv_id "$RDZV_ID" \\',
        '  --rdzv_conf "is_host=$IS_HOST" \\',
        '  train_entry.py "$TRAIN_YAML" "$@"',
    ]
    return "\n".join(lines) + "\n"


def _int_arg(recipe: Recipe, key: str) -> int:
    """A whole-number LLaMA-Factory argument from the recipe's extra_args, 0 when unset or not a number."""
    value = recipe.extra_args.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def slurm_cpus_per_task(recipe: Recipe, res: Resolved) -> int:
    """CPUs the one task per node asks for: a core for each GPU's process and one for each of its
    dataloader workers, or the preprocessing workers if those are more (they run before training)."""
    per_process = 1 + _int_arg(recipe, "dataloader_num_workers")
    return max(res.gpus * per_process, _int_arg(recipe, "preprocessing_num_workers"), 1)


def render_slurm(recipe: Recipe, res: Resolved) -> str:
    job = re.sub(r"[^A-Za-z0-9_.-]", "_", recipe.name)[:64] or "minicpm"
    cpus = slurm_cpus_per_task(recipe, res)
    # Two jobs sharing a node must not both listen on the recipe's port: offset it by the job id.
    port_span = max(1, min(10_000, 65_535 - recipe.master_port))
    lines = [
        "#!/usr/bin/env bash",
        f"#SBATCH --job-name={job}",
        f"#SBATCH --nodes={recipe.nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gres=gpu:{res.gpus}",
        f"#SBATCH --cpus-per-task={cpus}",
        "#SBATCH --output=slurm-%x-%j.out",
        f"# Slurm job for {_one_line(recipe.name)}: submit from the run directory with `sbatch slurm.sbatch`.",
        "# One task per node; each runs torchrun, which starts one process per GPU (c10d rendezvous).",
        f"# --cpus-per-task={cpus}: one core per GPU process plus its dataloader workers (dataloader_num_workers,",
        "# preprocessing_num_workers in extra_args); raise it with `sbatch --cpus-per-task=N slurm.sbatch`.",
        f"# Written by minicpm-tui {__version__} for LLaMA-Factory {res.lf_version}.",
        "set -euo pipefail",
        'RUN_DIR="${RUN_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}"',
        'cd -- "$RUN_DIR"',
    ]
    # Slurm sets these three per allocation below; the shared block's defaults would only mislead.
    env = [line for line in _env_block(recipe, res, res.gpus, recipe.nodes)
           if not any(f'"${{{var}:-}}"' in line for var in ("NODE_RANK", "MASTER_ADDR", "NNODES", "MASTER_PORT"))]
    lines += env + _python_default(res)
    lines += [
        'NNODES="${SLURM_NNODES:-1}"',
        "# The first node of the allocation hosts the rendezvous.",
        'MASTER_ADDR="$(scontrol show hostnames "${SLURM_JOB_NODELIST:-localhost}" | head -n 1)"',
        f'if [[ -z "${{MASTER_PORT:-}}" ]]; then MASTER_PORT=$(( {recipe.master_port} + ${{SLURM_JOB_ID:-0}} % {port_span} )); fi',
        "# Since Slurm 22.05 srun no longer inherits the job's --cpus-per-task (22.05 release notes): its task",
        "# would get the default single CPU. Hand on whatever the job was submitted with.",
        f'export SRUN_CPUS_PER_TASK="${{SLURM_CPUS_PER_TASK:-{cpus}}}"',
        'export TRAIN_PYTHON TRAIN_YAML NPROC_PER_NODE NNODES MASTER_ADDR MASTER_PORT',
        'srun --kill-on-bad-exit=1 "$TRAIN_PYTHON" -m torch.distributed.run \\',
        '  --nnodes "$NNODES" --nproc_per_node "$NPROC_PER_NODE" \\',
        '  --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv_id "${SLURM_JOB_ID:-0}" \\',
        '  train_entry.py "$TRAIN_YAML" "$@"',
    ]
    return "\n".join(lines) + "\n"


def render_readme(recipe: Recipe, res: Resolved) -> str:
    offload = f", offload {res.offload}" if res.offload != "none" else ""
    ds = f"ds_config.json      DeepSpeed ZeRO-{res.zero_stage} config{offload}\n" if res.uses_deepspeed else ""
    notes = "".join(f"- {_one_line(n)}\n" for n in res.notes)
    return f"""# Run directory: {_one_line(recipe.name)}

{_one_line(res.model_name)} · {recipe.stage} · {recipe.method} · {res.gpus} GPU(s) x {recipe.nodes} node(s) ·
ZeRO-{res.zero_stage} · {res.precision} · template `{res.template}`. Written by minicpm-tui {__version__} for
LLaMA-Factory {res.lf_version}.

## Launch
{_readme_launch(res)}Overrides: `NPROC_PER_NODE=2 CUDA_VISIBLE_DEVICES=0,1 bash single_node.sh max_steps=100`.
Several nodes: on each node `NODE_RANK=<i> MASTER_ADDR=<node 0 address> NNODES=<n> bash multi_node.sh`,
or `sbatch slurm.sbatch` under Slurm.

## Resume
    minicpm-tui run . --resume     # from the last checkpoint-N in {_one_line(recipe.output_dir)}/ (one every save_steps)
`bash single_node.sh` resumes by itself: `overwrite_output_dir` is false, so LLaMA-Factory continues from
that checkpoint. A stop saves the model, not a checkpoint.

## Monitor
    minicpm-tui monitor .          # or: tail -f {_one_line(recipe.output_dir)}/trainer_log.jsonl
{_readme_export(recipe)}
## Files
train.yaml          LLaMA-Factory arguments, each non-obvious value with its reason
{ds}single_node.sh      torchrun on one machine (every setting overridable from the environment)
multi_node.sh       the same for several nodes (c10d rendezvous)
slurm.sbatch        Slurm: srun + torchrun on every node
train_entry.py      LLaMA-Factory's run_exp, after registering the cpm/cpm3 chat formats when missing
dataset_info.json   this run's datasets ({"data/: their files, bundled" if recipe.bundle_data else "absolute paths to the data files"})
recipe.yaml         every choice, to regenerate with `minicpm-tui generate recipe.yaml --out DIR`
generated.json      facts minicpm-tui's smoke run and runner read
Secrets (HF_TOKEN...) are never written here; export them in the shell that launches.
{"" if not notes else chr(10) + "## Notes" + chr(10) + notes}"""


def _readme_launch(res: Resolved) -> str:
    """How to start it: here, or, written for another machine's LLaMA-Factory, there (a smoke run here would
    train with this machine's LLaMA-Factory, not the target's: the wizard's Run step says the same)."""
    if not res.elsewhere:
        return ("    minicpm-tui smoke .            # a minute on the CPU: the whole chain with a tiny model\n"
                "    minicpm-tui run .              # detached; survives an SSH drop\n"
                "    bash single_node.sh            # or by hand (foreground)\n")
    return (f"Written for {_one_line(res.lf_checked_against or res.lf_target)}: copy this folder to the machine "
            "that trains\n(data and model at the same paths), then there:\n"
            "    minicpm-tui run --check .      # the checks only that machine's LLaMA-Factory can do\n"
            "    minicpm-tui smoke .            # a minute on its CPU: the whole chain with a tiny model\n"
            "    minicpm-tui run .              # detached; survives an SSH drop\n"
            "    TRAIN_PYTHON=/path/to/python bash single_node.sh   # or by hand, with that environment's python\n")


def _readme_export(recipe: Recipe) -> str:
    if recipe.method == "full":
        return (f"\n## Serve\nA full fine-tune has nothing to merge: {_one_line(recipe.output_dir)}/ is the model "
                "(`minicpm-tui export .` says so).\n")
    return ("\n## Export (after training)\n"
            "    minicpm-tui export .           # LoRA adapter + base model -> merged/, a model you can serve\n"
            f"It writes export.yaml and takes the final adapter in {_one_line(recipe.output_dir)}/, else the newest "
            "checkpoint-N.\n")


# -- generate --------------------------------------------------------------------------------------
def render(recipe: Recipe, info: Any | None = None) -> tuple[dict[str, str], Resolved]:
    """All generated files' text (name -> content), without writing anything."""
    from minicpm_tui.core.lftarget import target_info

    recipe.validate()
    info = info or target_info(recipe)
    res = resolve(recipe, info)
    known = info.all_keys or None
    entries = dataset_entries(recipe)
    if recipe.bundle_data:
        entries, _ = bundled_entries(entries)
    elif info.target and any(isinstance(e.get("file_name"), str) and os.path.isabs(e["file_name"])
                             for e in entries.values()):
        res.notes.append("dataset_info.json names the data by this machine's paths: put the files at the same "
                         "paths where it trains, or generate with --bundle-data to carry them in the run directory")
    model_note = model_path_note(res.model_name_or_path, res.elsewhere, recipe.bundle_data)
    if model_note:
        res.notes.append(model_note)
    files = {
        "train.yaml": render_train_yaml(recipe, res, known),
        "single_node.sh": render_single_node(recipe, res),
        "multi_node.sh": render_multi_node(recipe, res),
        "slurm.sbatch": render_slurm(recipe, res),
        "train_entry.py": resource_script("train_entry.py").read_text(encoding="utf-8"),
        "dataset_info.json": json.dumps(entries, indent=2, ensure_ascii=False) + "\n",
        "recipe.yaml": _saved_recipe(recipe).dump(),
        "README.md": render_readme(recipe, res),
    }
    if res.uses_deepspeed:
        files["ds_config.json"] = json.dumps(ds_config(res), indent=2) + "\n"
    meta = {"generator": f"minicpm-tui {__version__}", "llamafactory": res.lf_version, "output_dir":
            recipe.output_dir, "train_yaml": "train.yaml", "resolved": asdict(res),
            "uses_deepspeed": res.uses_deepspeed, "distributed": res.distributed,
            "nproc_per_node": res.gpus, "nnodes": recipe.nodes,
            "lf_target": {"value": res.lf_target, "checked_against": info.describe(),
                          # a doctor --save report's Python: the one to name in TRAIN_PYTHON over there
                          "saved_python": (info.python or None) if info.target else None}}
    digests = {name: _sha256(text.encode("utf-8")) for name, text in files.items()}
    digests["generated.json"] = _meta_digest(json.loads(json.dumps(meta, ensure_ascii=False)))
    meta[DIGESTS_KEY] = digests
    files["generated.json"] = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    return files, res


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _meta_digest(meta: dict[str, Any]) -> str:
    """generated.json's digest: over its facts without the digests (which cannot hold their own file's)."""
    rest = {k: v for k, v in meta.items() if k != DIGESTS_KEY}
    return _sha256(json.dumps(rest, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def _digest(name: str, data: bytes) -> str | None:
    """A generated file's digest as recorded in generated.json (None: a generated.json that does not parse)."""
    if name != "generated.json":
        return _sha256(data)
    try:
        meta = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    return _meta_digest(meta) if isinstance(meta, dict) else None


def _recorded_digests(out: Path) -> dict[str, str]:
    """The digests an earlier generate recorded in ``out``/generated.json ({} for an older one without them)."""
    try:
        recorded = json.loads((out / "generated.json").read_text(encoding="utf-8")).get(DIGESTS_KEY)
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in recorded.items()} if isinstance(recorded, dict) else {}


def _edited_since_generated(path: Path, recorded: str | None, new_text: str | None) -> bool:
    """Whether a run directory's generated file holds something of the user's: its content differs from the
    digest generate recorded, or (an older run directory, no digest) from what is about to replace it."""
    try:
        now = _digest(path.name, path.read_bytes())
    except OSError:
        return True  # unreadable: the backup then says which file, before it is replaced
    if recorded is None:
        recorded = _digest(path.name, new_text.encode("utf-8")) if new_text is not None else None
    return now is None or now != recorded


_MODES = {"single_node.sh": 0o700, "multi_node.sh": 0o700, "slurm.sbatch": 0o700, "README.md": 0o644,
          "train_entry.py": 0o644}


def generate(recipe: Recipe, out_dir: str | os.PathLike[str], force: bool = False, *, info: Any | None = None,
             preflight: bool = True, reports: list[Any] | None = None, notes: list[str] | None = None,
             backups: list[tuple[Path, Path]] | None = None) -> list[Path]:
    """Write the run directory; refuse an existing one without ``force``. Returns the written paths.

    Everything is written into a new folder beside the target and (with ``preflight``) checked there
    first; only a directory that passes is moved into place, all or nothing. With ``force`` an existing
    directory keeps what we did not write (output/, logs, smoke/) and each generated file is replaced.
    A folder that is no run directory (no generated.json: a project folder, a dataset folder) holds the
    user's files: each one a generated file replaces is copied first (``core.atomic.backup``; the pairs
    (file, copy) go to ``backups``), its ds_config.json is left alone, and a data/ folder of its own is
    never replaced by a bundle (refused). In a run directory, a generated file edited by hand since (its
    sha256 differs from generated.json's ``files_sha256``; an older generated.json without them: it differs
    from the new file) is copied the same way before it is replaced or removed; an unchanged one is not.
    ``reports`` (a list) receives the PreflightReport; ``notes`` (a list) the plan's notes (train.yaml's
    "# Note:" lines), for the caller to show; checked against a target, less the "written for" one, which the
    report's first note (``target_note``) says with what the check left to the machine that trains.
    """
    out = absolute_path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError("exists and is not a directory", where=str(out), fix="choose another --out",
                        fix_tui="choose another run directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError("run directory already exists", where=str(out),
                        fix="choose another --out, or pass --force to rewrite its generated files")
    foreign = out.is_dir() and not (out / "generated.json").is_file()
    if out.is_dir() and recipe.bundle_data and os.path.lexists(out / BUNDLE_DIR) and not _own_bundle(out):
        raise UserError(f"{BUNDLE_DIR}/ is not a data bundle minicpm-tui wrote, and bundling the data would "
                        "replace it (and everything in it)", where=str(out / BUNDLE_DIR),
                        fix=f"move that {BUNDLE_DIR}/ away, generate into a new --out, or generate without "
                            "--bundle-data",
                        fix_tui=f"move that {BUNDLE_DIR}/ away, choose a new run directory, or do not carry the "
                                "data in (^l)")
    from minicpm_tui.core.lftarget import target_info

    info = info or target_info(recipe)
    files, res = render(recipe, info)
    if out.is_dir():
        folders = sorted(name for name in files if (out / name).is_dir())
        if folders:
            raise UserError(f"{', '.join(folders)} is a folder there, where a generated file goes", where=str(out),
                            fix="move it away, or generate into a new --out",
                            fix_tui="move it away, or choose a new run directory")
    if notes is not None:
        notes.extend(res.notes)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:40]}.", dir=out.parent))
    try:
        for name, text in files.items():
            write_atomic(tmp / name, text, mode=_MODES.get(name, 0o600))
        if recipe.bundle_data:
            bundle_data(bundled_entries(dataset_entries(recipe))[1], tmp)
        if preflight:
            from minicpm_tui.core.preflight import preflight as run_preflight

            # The advice names the user's dataset_info.json, not the copy in this folder (gone if it fails).
            # Written for another LLaMA-Factory: this machine's parser would judge the wrong release.
            report = run_preflight(tmp, lf_source=recipe.lf_source or None,
                                   source_info=recipe.resolve_path(recipe.dataset_dir) / "dataset_info.json",
                                   target=info if info.target else None)
            report.run_dir = out
            if report.target:
                # One message for the target: the plan's "written for" note said with what was checked instead.
                report.notes.insert(0, report.target_note())
                if notes is not None:
                    notes[:] = [n for n in notes if n != written_for_note(info)]
            if reports is not None:
                reports.append(report)
            report.raise_for_problems()
        if out.is_dir():
            recorded = {} if foreign else _recorded_digests(out)

            def keep(name: str) -> None:
                copy = backup(out / name)
                if backups is not None and copy is not None:
                    backups.append((out / name, copy))

            for name in files:
                if (out / name).is_file() and (foreign or _edited_since_generated(out / name, recorded.get(name),
                                                                                   files[name])):
                    keep(name)
                os.replace(tmp / name, out / name)
            _replace_bundle(tmp, out)
            if "ds_config.json" not in files and (out / "ds_config.json").is_file() and not foreign:
                if _edited_since_generated(out / "ds_config.json", recorded.get("ds_config.json"), None):
                    keep("ds_config.json")
                (out / "ds_config.json").unlink()  # a stale one would mislead
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.chmod(tmp, 0o700)  # the files name private paths; the folder keeps them to this user
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / name for name in files]


def _saved_recipe(recipe: Recipe) -> Recipe:
    """The run directory's recipe.yaml: its paths absolute, so it regenerates from anywhere; a bundled one reads
    its datasets from the run directory itself (dataset_dir "." is the recipe's own folder), so it also
    regenerates after the folder moved to another machine."""
    saved = recipe.anchored()
    return saved.replace(dataset_dir=".") if recipe.bundle_data else saved


def _own_bundle(out: Path) -> bool:
    """Whether ``out``/data is a bundle an earlier generate wrote: a run directory whose recipe.yaml bundled."""
    if not (out / "generated.json").is_file() or not (out / BUNDLE_DIR).is_dir():
        return False
    try:
        saved = yaml.safe_load((out / "recipe.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return isinstance(saved, dict) and saved.get("bundle_data") is True


def _replace_bundle(tmp: Path, out: Path) -> None:
    """--force into an existing directory: its data/ is ours (bundled before), so the new one replaces it; without
    bundling now, an old data/ stays (the datasets may still be read from it by hand-edited entries)."""
    new = tmp / BUNDLE_DIR
    if not new.is_dir():
        return
    old = out / BUNDLE_DIR
    if old.exists():
        aside = out / f".{BUNDLE_DIR}.old"
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(old, aside)
        os.rename(new, old)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.rename(new, old)


def read_generated(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """generated.json of a run directory (UserError when it is not one)."""
    path = Path(run_dir) / "generated.json"
    fix = "regenerate with `minicpm-tui generate recipe.yaml --out DIR --force`"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError("not a minicpm-tui run directory (no generated.json)", where=str(run_dir),
                        fix="create one with `minicpm-tui generate RECIPE --out DIR`") from exc
    except ValueError as exc:
        raise UserError(f"generated.json is damaged: {exc}", where=str(path), fix=fix) from exc
    if not isinstance(data, dict):
        raise UserError(f"generated.json is damaged: a JSON {type(data).__name__}, not an object", where=str(path),
                        fix=fix)
    if not isinstance(data.get("resolved", {}), dict):
        raise UserError("generated.json is damaged: `resolved` is not an object", where=f"{path}: resolved", fix=fix)
    return data


if __name__ == "__main__":  # pragma: no cover - debugging aid
    sys.exit(0)
