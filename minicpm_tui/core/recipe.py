"""The recipe: every choice the wizard makes, in one declarative object, and the ONE options registry.

Each field of :class:`Recipe` is declared once, with :func:`opt` (type, default, choices, help, group,
validation). The CLI flags (``add_recipe_arguments``), the TUI's form fields (``options()``), the
``recipe.yaml`` validation (``Recipe.from_dict``) and the docs all render from that one declaration.

Plan fields accept ``"auto"``: the writers fill them from the planner (``core.planner.plan``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from minicpm_tui.core.errors import UserError

AUTO = "auto"
RECIPE_VERSION = 1

GROUPS = ("model", "method", "dataset", "train", "eval", "plan", "output", "llamafactory")

# A value that is only ever passed to the shell through quoting still must not smuggle control
# characters into YAML keys, comma-separated dataset lists or comments.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Option:
    """One recipe field, as every front end sees it."""

    name: str
    kind: str  # "str" | "int" | "float" | "bool" | "list" | "dict"
    default: Any
    help: str
    group: str
    choices: tuple[Any, ...] | None = None
    auto: bool = False  # "auto" is accepted (filled from the planner / the model)
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], str | None] | None = None  # returns an error text or None
    advanced: bool = False  # hidden behind "advanced" in the TUI form

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def describe_type(self) -> str:
        base = {"str": "text", "int": "integer", "float": "number", "bool": "true/false",
                "list": "list", "dict": "mapping"}[self.kind]
        if self.choices:
            base = " | ".join(str(c) for c in self.choices)
        return f"{base} | auto" if self.auto and not (self.choices and AUTO in self.choices) else base

    def coerce(self, value: Any, where: str) -> Any:
        """Parse and validate one value (from YAML, a CLI string, or a form field)."""
        if self.auto and isinstance(value, str) and value.strip().lower() == AUTO:
            return AUTO
        try:
            value = _coerce_kind(self.kind, value)
        except (TypeError, ValueError) as exc:
            how = " Write it as KEY=VALUE pairs joined by commas, e.g. a=1,b=x." if self.kind == "dict" else ""
            raise UserError(f"{self.name} must be {self.describe_type()}, got {value!r}", where=where,
                            fix=self.help + how) from exc
        if self.choices is not None and value not in self.choices:
            raise UserError(f"{self.name} must be one of {', '.join(map(str, self.choices))}, got {value!r}",
                            where=where)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise UserError(f"{self.name} must be >= {self.minimum}, got {value}", where=where)
            if self.maximum is not None and value > self.maximum:
                raise UserError(f"{self.name} must be <= {self.maximum}, got {value}", where=where)
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise UserError(f"{self.name}: {problem}", where=where)
        return value


def _coerce_kind(kind: str, value: Any) -> Any:
    if kind == "str":
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            raise TypeError("not text")
        return str(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
            return False
        raise ValueError("not a boolean")
    if kind == "int":
        if isinstance(value, bool):
            raise TypeError("bool is not an integer")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("not an integer")
        return int(value)
    if kind == "float":
        if isinstance(value, bool):
            raise TypeError("bool is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("not finite")
        return number
    if kind == "list":
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            return [str(item) for item in value]
        raise TypeError("not a list")
    if kind == "dict":
        if value in (None, ""):
            return {}
        if isinstance(value, str):  # CLI form: KEY=VALUE,KEY=VALUE
            pairs = [p for p in value.split(",") if p.strip()]
            out = {}
            for pair in pairs:
                key, sep, val = pair.partition("=")
                if not sep:
                    raise ValueError("expected KEY=VALUE")
                out[key.strip()] = _scalar(val.strip())
            return out
        if isinstance(value, dict):
            for item in value.values():
                if isinstance(item, (dict, list)):
                    raise TypeError("values must be scalars")
            return {str(k): v for k, v in value.items()}
        raise TypeError("not a mapping")
    raise ValueError(f"unknown kind {kind}")


def _scalar(text: str) -> Any:
    """A CLI value as YAML would read it (1e-4 -> float, true -> bool), falling back to the text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (str, int, float, bool)) else text


# -- field checks ------------------------------------------------------------------------------
def _no_control(value: Any) -> str | None:
    text = value if isinstance(value, str) else str(value)
    if _CONTROL.search(text):
        return "contains a control character (newline, tab...); rename it"
    return None


def _run_name(value: str) -> str | None:
    """A run name is a label (the job name, the logs, the README), never a path: the run directory is --out."""
    name = value.strip()
    plain = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "minicpm-finetune"
    if not name:
        return "is empty; name the run, e.g. minicpm-finetune"
    if "/" in name or "\\" in name:
        return (f"{value!r} holds a path separator, but the name is a label, not a path; use e.g. {plain!r} "
                "(the run directory is --out)")
    if name in (".", ".."):
        return f"{value!r} is not a name; use e.g. {plain!r}"
    return _no_control(value)


def _output_dir(value: str) -> str | None:
    if not value.strip():
        return "is empty, and LLaMA-Factory's trainer fails at start on an empty path; name a folder, e.g. output"
    return _no_control(value)


def _dataset_names(value: list[str]) -> str | None:
    for name in value:
        if _CONTROL.search(name):
            return f"dataset name {name!r} contains a control character (newline, tab...); rename it"
        if "," in name:
            return f"dataset name {name!r} contains a comma, which LLaMA-Factory reads as a list separator"
        if name != name.strip() or not name:
            return f"dataset name {name!r} has leading/trailing spaces"
    return None


def _env_mapping(value: dict[str, str]) -> str | None:
    for key, val in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            return f"{key!r} is not an environment variable name"
        if _CONTROL.search(str(val)):
            return f"the value of {key} contains a control character"
        if re.search(r"(TOKEN|SECRET|PASSWORD|API_KEY)", key, re.I):
            return f"{key} looks like a secret; secrets pass through the environment, never a generated file"
    return None


def _gpu_list(value: str) -> str | None:
    if value and not re.fullmatch(r"[0-9]+(,[0-9]+)*|GPU-[0-9a-fA-F-]+(,GPU-[0-9a-fA-F-]+)*", value):
        return "must be a comma-separated list of GPU indices (0,1,2,3) or UUIDs"
    return None


def _host(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9_.:\-\[\]]+", value or "x"):
        return "must be a host name or IP address"
    return None


def _lora_target(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9_.,\s]+", value):
        return "must be 'all' or a comma-separated list of module names"
    return None


def _lf_target(value: str) -> str | None:
    from minicpm_tui.core.lftarget import check_lf_target

    return _no_control(value) or check_lf_target(value)


def _above_zero(value: Any) -> str | None:
    # 0 (or an underflow such as 1e-999) passes ">= 0" but trains nothing: every step leaves the weights as they are
    return None if value > 0 else f"must be above 0, got {value} (at 0 no step changes the weights)"


def opt(default: Any, help: str, group: str, kind: str | None = None, **kw: Any) -> Any:
    """Declare a recipe field (the one place its name, type, default, choices and help live)."""
    if kind is None:
        kind = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}[type(default)]
    meta = {"kind": kind, "help": help, "group": group, **kw}
    if isinstance(default, (list, dict)):
        factory = (lambda d=default: type(d)(d))  # noqa: E731 - a fresh copy per Recipe
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Recipe:
    """Every choice for one fine-tune. Load/save ``recipe.yaml``; ``validate()`` raises UserError."""

    # model
    name: str = opt("minicpm-finetune", "Run name (used for the run directory, the job name and logs).",
                    "model", check=_run_name)
    model: str = opt("MiniCPM4-0.5B", "Model preset (MiniCPM4-8B...), Hugging Face hub id, or local checkpoint "
                     "folder.", "model", check=_no_control)
    template: str = opt(AUTO, "LLaMA-Factory chat template; 'auto' picks the one the installed LLaMA-Factory "
                        "registers for this model's chat format (cpm4 / cpm3 / cpm).", "model", check=_no_control)
    trust_remote_code: str = opt(AUTO, "Load the checkpoint's own modelling code; 'auto': yes when the model "
                                 "ships remote code (MiniCPM 1-4 do).", "model", choices=(AUTO, "true", "false"))
    # method
    stage: str = opt("sft", "Training stage: sft (instruction tuning), dpo (preference pairs), kto "
                     "(thumbs up/down).", "method", choices=("sft", "dpo", "kto"))
    method: str = opt("lora", "lora trains small adapters; full trains every weight; qlora is LoRA on a "
                      "4-bit base (needs bitsandbytes and a GPU).", "method", choices=("lora", "full", "qlora"))
    lora_rank: int = opt(8, "LoRA rank (adapter width).", "method", minimum=1, maximum=1024)
    lora_alpha: int = opt(16, "LoRA alpha (scale = alpha / rank).", "method", minimum=1, maximum=4096,
                          advanced=True)
    lora_dropout: float = opt(0.0, "LoRA dropout.", "method", minimum=0.0, maximum=0.9, advanced=True)
    lora_target: str = opt("all", "Modules LoRA adapts: 'all' (safe for MiniCPM3's latent attention too) or a "
                           "comma list.", "method", check=_lora_target, advanced=True)
    pref_beta: float = opt(0.1, "DPO/KTO beta (how far the policy may move from the reference).", "method",
                           minimum=0.0, maximum=10.0)
    pref_ftx: float = opt(0.0, "Weight of an added SFT loss in DPO/KTO (was kto_ftx).", "method", minimum=0.0,
                          advanced=True)
    pref_loss: str = opt("sigmoid", "DPO loss variant.", "method",
                         choices=("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"), advanced=True)
    # dataset
    datasets: list = opt(["demo_sft"], "Dataset names registered in dataset_dir's dataset_info.json.",
                         "dataset", kind="list", check=_dataset_names)
    dataset_dir: str = opt("data", "Folder holding dataset_info.json and the data files (relative to the "
                           "recipe file, or absolute).", "dataset", check=_no_control)
    bundle_data: bool = opt(False, "Put the datasets' files into the run directory (data/, hard-linked where "
                            "the filesystem allows, else copied), so the folder can be moved to the training "
                            "machine as it is.", "dataset", advanced=True)
    cutoff_len: int = opt(1024, "Maximum tokens per example (longer ones are truncated).", "dataset",
                          minimum=8, maximum=1_048_576)
    max_samples: int = opt(0, "Use at most this many examples per dataset (0 = all).", "dataset", minimum=0,
                           advanced=True)
    val_size: float = opt(0.0, "Fraction (or count if >= 1) of the data held out for evaluation; 0 = none.",
                          "eval", minimum=0.0)
    # train
    learning_rate: float = opt(1.0e-4, "Peak learning rate (LoRA ~1e-4, LoRA DPO/KTO ~5e-5, full SFT ~1e-5, full DPO/KTO ~5e-7).",
                               "train",
                               minimum=0.0, maximum=1.0, check=_above_zero)
    num_train_epochs: float = opt(3.0, "Epochs over the data (ignored when max_steps > 0).", "train",
                                  minimum=0.0, maximum=10_000.0)
    max_steps: int = opt(0, "Stop after this many optimizer steps (0 = use num_train_epochs).", "train",
                         minimum=0)
    micro_batch: int = opt(AUTO, "Examples per GPU per forward pass; 'auto' from the planner.", "train",
                           kind="int", auto=True, minimum=1, maximum=4096)
    grad_accum: int = opt(AUTO, "Gradient accumulation steps; 'auto' from the planner.", "train", kind="int",
                          auto=True, minimum=1, maximum=65536)
    warmup_ratio: float = opt(0.1, "Fraction of steps spent warming the learning rate up.", "train",
                              minimum=0.0, maximum=1.0)
    lr_scheduler_type: str = opt("cosine", "Learning rate schedule.", "train",
                                 choices=("cosine", "linear", "constant", "constant_with_warmup", "polynomial",
                                          "cosine_with_restarts", "inverse_sqrt"))
    logging_steps: int = opt(10, "Log loss every N steps.", "train", minimum=1)
    save_steps: int = opt(500, "Save a checkpoint every N steps.", "train", minimum=1)
    save_total_limit: int = opt(3, "Keep at most N checkpoints (0 = all).", "train", minimum=0, advanced=True)
    seed: int = opt(42, "Random seed.", "train", minimum=0, advanced=True)
    eval_steps: int = opt(500, "Evaluate every N steps (when val_size > 0).", "eval", minimum=1)
    # plan
    hardware: str = opt(AUTO, "Hardware: 'auto' probes this machine; or a hardware preset / saved probe "
                        "JSON.", "plan", check=_no_control)
    gpus: int = opt(AUTO, "GPUs per node; 'auto' = all GPUs the probe sees.", "plan", kind="int", auto=True,
                    minimum=1, maximum=64)
    nodes: int = opt(1, "Number of nodes (machines).", "plan", minimum=1, maximum=4096)
    zero_stage: int = opt(AUTO, "DeepSpeed ZeRO stage: 0 (plain DDP), 2 or 3; 'auto' from the planner.",
                          "plan", kind="int", auto=True, choices=(0, 2, 3))
    offload: str = opt(AUTO, "DeepSpeed offload to CPU RAM: none, optimizer, or all (optimizer+params, "
                       "ZeRO-3).", "plan", choices=(AUTO, "none", "optimizer", "all"))
    precision: str = opt(AUTO, "bf16 on Ampere+ GPUs, fp16 before; fp32 only for debugging.", "plan",
                         choices=(AUTO, "bf16", "fp16", "fp32"))
    flash_attn: str = opt(AUTO, "Attention kernel: fa2 (FlashAttention-2, Ampere+), sdpa (any GPU), "
                          "disabled (eager).", "plan", choices=(AUTO, "fa2", "sdpa", "disabled"))
    gradient_checkpointing: str = opt(AUTO, "Recompute activations to save memory.", "plan",
                                      choices=(AUTO, "true", "false"))
    nccl_env: dict = opt({}, "NCCL variables the launch script sets (KEY=VALUE); empty + planner = its "
                         "choice.", "plan", kind="dict", check=_env_mapping, advanced=True)
    nccl_auto: bool = opt(True, "Let the planner add the NCCL flags it recommends (e.g. NCCL_P2P_DISABLE on "
                          "RTX 40xx).", "plan", advanced=True)
    cuda_visible_devices: str = opt("", "GPUs to use (CUDA_VISIBLE_DEVICES), e.g. 0,1; empty = the first "
                                    "`gpus`.", "plan", check=_gpu_list, advanced=True)
    master_addr: str = opt("127.0.0.1", "Address of node 0 (multi-node: its IP reachable from the others).",
                           "plan", check=_host, advanced=True)
    master_port: int = opt(29500, "Rendezvous port on node 0.", "plan", minimum=1024, maximum=65535,
                           advanced=True)
    # output
    output_dir: str = opt("output", "Where checkpoints and logs go (relative to the run directory, or "
                          "absolute).", "output", check=_output_dir)
    report_to: str = opt("none", "Experiment tracker.", "output", choices=("none", "tensorboard", "wandb"),
                         advanced=True)
    # how LLaMA-Factory is reached
    lf_source: str = opt("", "A LLaMA-Factory source checkout to use instead of the installed package "
                         "(its src/ goes on PYTHONPATH), as in OpenBMB's guide.", "llamafactory",
                         check=_no_control, advanced=True)
    lf_target: str = opt("installed", "The LLaMA-Factory the run directory is written for: 'installed' (the "
                         "training Python here), a release snapshot shipped with minicpm-tui (0.9.2 to 0.9.5), or "
                         "a file saved by `minicpm-tui doctor --save` where it will train.", "llamafactory",
                         check=_lf_target, advanced=True)
    extra_args: dict = opt({}, "Extra LLaMA-Factory keys written to train.yaml as-is (checked against the "
                           "keys of the lf_target LLaMA-Factory).", "llamafactory", kind="dict", advanced=True)

    # -- registry -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "recipe") -> Recipe:
        """Validate a mapping (recipe.yaml's content); unknown keys are errors with a suggestion."""
        if not isinstance(data, dict):
            raise UserError("a recipe must be a mapping of field: value", where=where)
        known = OPTIONS_BY_NAME
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key in ("version", "recipe_version"):
                continue
            option = known.get(str(key))
            if option is None:
                close = _close(str(key), list(known))
                raise UserError(f"unknown recipe field {key!r}", where=where,
                                fix=f"did you mean {close!r}?" if close else "see `minicpm-tui generate --help`")
            values[option.name] = option.coerce(raw, f"{where}: {option.name}")
        recipe = cls(**values)
        recipe.validate(where)
        return recipe

    def to_dict(self) -> dict[str, Any]:
        return {"version": RECIPE_VERSION, **{o.name: getattr(self, o.name) for o in options()}}

    def validate(self, where: str = "recipe") -> None:
        """Cross-field rules (each field's own rules ran in Option.coerce)."""
        for option in options():
            value = getattr(self, option.name)
            if value != AUTO or not option.auto:
                option.coerce(value, f"{where}: {option.name}")
        if not self.datasets:
            raise UserError("no dataset chosen", where=f"{where}: datasets",
                            fix="name at least one dataset registered in dataset_dir/dataset_info.json")
        if self.offload == "all" and self.zero_stage not in (3, AUTO):
            raise UserError("offloading parameters needs ZeRO-3", where=f"{where}: offload",
                            fix="set zero_stage: 3, or offload: optimizer")
        if self.offload in ("optimizer", "all") and self.zero_stage == 0:
            raise UserError("offload needs DeepSpeed ZeRO (stage 2 or 3)", where=f"{where}: offload",
                            fix="set zero_stage: 2 or 3, or offload: none")
        if self.max_steps == 0 and self.num_train_epochs <= 0:
            raise UserError("nothing to train: max_steps is 0 and num_train_epochs is 0",
                            where=f"{where}: num_train_epochs", fix="set one of them above 0")
        if self.cuda_visible_devices and self.gpus not in (AUTO,) and \
                len(self.cuda_visible_devices.split(",")) < int(self.gpus):
            raise UserError(f"cuda_visible_devices lists fewer GPUs than gpus={self.gpus}",
                            where=f"{where}: cuda_visible_devices")

    # -- files ----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recipe:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise UserError("recipe file not found", where=str(path),
                            fix="give a recipe.yaml, or a preset from `minicpm-tui generate --list`") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the recipe: {exc}", where=str(path)) from exc
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" (line {mark.line + 1})" if mark is not None else ""
            raise UserError(f"not valid YAML{at}", where=str(path)) from exc
        recipe = cls.from_dict(data, where=str(path))
        recipe.base_dir = path.resolve().parent
        return recipe

    def dump(self) -> str:
        lines = ["# minicpm-tui recipe: every choice for one fine-tune. `minicpm-tui generate` turns it into",
                 "# a run directory. Fields set to 'auto' are filled from the planner at generation time.",
                 f"version: {RECIPE_VERSION}"]
        for group in GROUPS:
            opts = [o for o in options() if o.group == group]
            if not opts:
                continue
            lines.append(f"\n# -- {group}")
            for option in opts:
                dumped = yaml.safe_dump({option.name: getattr(self, option.name)}, allow_unicode=True,
                                        default_flow_style=True, width=10_000).strip()
                if dumped.startswith("{") and dumped.endswith("}"):
                    dumped = dumped[1:-1]
                lines.append(f"{dumped}  # {option.help.splitlines()[0]}")
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike[str]) -> Path:
        from minicpm_tui.core.atomic import write_atomic

        return write_atomic(path, self.dump(), mode=0o600)

    def resolve_path(self, value: str) -> Path:
        """A recipe path: absolute, ~-expanded, or relative to the recipe file's folder."""
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = Path(getattr(self, "base_dir", None) or Path.cwd()) / path
        return path.resolve()

    def anchored(self, base: str | os.PathLike[str] | None = None) -> Recipe:
        """This recipe with its relative paths made absolute (against ``base``, else the recipe's own
        folder): dataset_dir, lf_source, a local model folder and a saved probe named as hardware. A copy
        saved elsewhere (the run directory's recipe.yaml) then still means the same files."""
        if base is not None:
            probe_ = self.replace()
            probe_.base_dir = Path(base)
        else:
            probe_ = self
        changes: dict[str, Any] = {}
        for name in ("dataset_dir", "lf_source"):
            value = getattr(self, name)
            if value and not Path(value).expanduser().is_absolute():
                changes[name] = str(probe_.resolve_path(value))
        model = self.model
        if not Path(model).expanduser().is_absolute() and (
                model.startswith((".", "~")) or os.sep in model and probe_.resolve_path(model).exists()):
            changes["model"] = str(probe_.resolve_path(model))
        hardware = self.hardware
        if hardware != AUTO and not Path(hardware).expanduser().is_absolute() \
                and probe_.resolve_path(hardware).is_file():
            changes["hardware"] = str(probe_.resolve_path(hardware))
        return self.replace(**changes) if changes else self

    def replace(self, **changes: Any) -> Recipe:
        new = dataclasses.replace(self, **changes)
        if hasattr(self, "base_dir"):
            new.base_dir = self.base_dir
        return new


def options() -> list[Option]:
    """The registry, in declaration order."""
    return list(_OPTIONS)


def _build_options() -> list[Option]:
    out = []
    for f in dataclasses.fields(Recipe):
        meta = dict(f.metadata)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append(Option(name=f.name, default=default, **meta))
    return out


_OPTIONS = _build_options()
OPTIONS_BY_NAME = {o.name: o for o in _OPTIONS}


def _close(word: str, candidates: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


# -- CLI rendering -----------------------------------------------------------------------------
def add_recipe_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """One --flag per registry option (default None: only typed flags override the recipe)."""
    by_group: dict[str, Any] = {}
    for option in options():
        group = by_group.get(option.group)
        if group is None:
            group = by_group[option.group] = parser.add_argument_group(f"recipe: {option.group}")
        default = option.default
        shown = ",".join(default) if isinstance(default, list) else (
            ",".join(f"{k}={v}" for k, v in default.items()) if isinstance(default, dict) else default)
        # Choices as argparse shows them ({sft,dpo,kto}), not the dest (RECIPE_STAGE); checked by the recipe.
        choices = [str(c) for c in option.choices or ()]
        if choices and option.auto and AUTO not in choices:
            choices.append(AUTO)
        metavar = "{" + ",".join(choices) + "}" if choices else option.describe_type().upper().replace(" ", "")
        # A yes/no option alone on the line means yes (--bundle-data); --bundle-data false still says no.
        switch = {"nargs": "?", "const": "true"} if isinstance(default, bool) else {}
        group.add_argument(option.flag, dest=f"recipe_{option.name}", default=None, metavar=metavar,
                           choices=None, **switch,
                           help=f"{option.help} [{option.describe_type()}; default: {shown}]")


def recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe fields the person typed on the command line (raw strings, each checked here so that an
    error names its flag; from_dict checks them again together with the recipe)."""
    out = {}
    for option in options():
        value = getattr(args, f"recipe_{option.name}", None)
        if value is not None:
            option.coerce(value, option.flag)
            out[option.name] = value
    # A path typed on the command line means one relative to the current folder, not to the recipe's.
    typed = Recipe().replace(**{k: v for k, v in out.items() if k in _PATH_FIELDS})
    anchored = typed.anchored(Path.cwd())
    for name in _PATH_FIELDS:
        if name in out and getattr(anchored, name) != getattr(typed, name):
            out[name] = getattr(anchored, name)
    return out


_PATH_FIELDS = ("dataset_dir", "lf_source", "model", "hardware")


def apply_overrides(recipe: Recipe, overrides: dict[str, Any], where: str = "command line") -> Recipe:
    data = recipe.to_dict()
    data.update(overrides)
    new = Recipe.from_dict(data, where=where)
    if hasattr(recipe, "base_dir"):
        new.base_dir = recipe.base_dir
    return new


# -- presets -----------------------------------------------------------------------------------
def preset_dir() -> Path:
    from minicpm_tui.assets import asset_path

    return asset_path("presets", "recipes")


def list_presets() -> list[str]:
    folder = preset_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_recipe(name_or_path: str | os.PathLike[str]) -> Recipe:
    """A recipe file, or the name of a shipped preset (presets/recipes/<name>.yaml)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return Recipe.load(path)
    preset = preset_dir() / f"{name_or_path}.yaml"
    if preset.is_file():
        recipe = Recipe.load(preset)
        # A preset's relative paths mean the person's current folder; its demo datasets, when that folder
        # has no dataset_info.json, are the shipped ones.
        recipe.base_dir = Path.cwd()
        if not (recipe.resolve_path(recipe.dataset_dir) / "dataset_info.json").is_file():
            from minicpm_tui.assets import asset_path

            recipe.dataset_dir = str(asset_path("data"))
        return recipe
    from minicpm_tui.core.paths import missing, symlink_loop

    if symlink_loop(path) is not None:
        raise missing(path, "recipe file", where=str(name_or_path))
    close = _close(str(name_or_path), list_presets())
    raise UserError("no such recipe file or preset", where=str(name_or_path),
                    fix=f"did you mean preset {close!r}?" if close else
                    f"presets: {', '.join(list_presets()) or 'none shipped'}")


# Fields a preset names for its own run; a new recipe gets them from the person's choices.
_PRESET_OWN = ("name", "model", "stage", "method", "datasets", "dataset_dir", "hardware")


# Full-parameter preference tuning moves every weight against a frozen reference: 5e-7 is the common
# learning rate for full DPO (Zephyr: Tunstall et al. 2023, "Zephyr: Direct Distillation of LM Alignment")
# and full KTO (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization"), where
# full SFT's 1e-5 would be 20 times too high.
FULL_PREFERENCE_LR = 5.0e-7


def defaults_for(method: str, stage: str, model: str = "") -> dict[str, Any]:
    """Starting values for a new recipe of this method and stage (learning rate, epochs, cutoff...):
    the nearest shipped preset (this model's, else another model's for the same stage and method;
    QLoRA as LoRA; full DPO/KTO, which ship no preset, as full SFT but with FULL_PREFERENCE_LR, 5e-7),
    else the registry's defaults.
    The preset's own name, model, stage, method, datasets and hardware are left out."""
    return dict(_defaults_for(method, stage, str(model).lower()))


def learning_rate_note(recipe: Recipe) -> str | None:
    """A note when the recipe's learning rate is ten times (or more) the usual one for its method and stage,
    e.g. a full SFT preset switched to DPO with --stage, which keeps its own 1e-5."""
    usual = defaults_for(recipe.method, recipe.stage, str(recipe.model))["learning_rate"]
    lr = recipe.learning_rate
    if not isinstance(lr, (int, float)) or not isinstance(usual, (int, float)) or usual <= 0 or lr < 10 * usual:
        return None
    flag = OPTIONS_BY_NAME["learning_rate"].flag
    return (f"learning_rate {lr:g} is {lr / usual:.0f}x the usual {usual:g} for {recipe.method} {recipe.stage}; "
            f"if that is not meant, pass {flag} {usual:g}")


@functools.lru_cache(maxsize=32)
def _defaults_for(method: str, stage: str, model: str) -> tuple[tuple[str, Any], ...]:
    values = {o.name: o.default for o in options() if o.name not in _PRESET_OWN}
    shipped = list_presets()
    tries = [(stage, method)] + ([(stage, "lora")] if method == "qlora" else []) + \
        ([("sft", "full")] if method == "full" and stage != "sft" else [])
    for want_stage, want_method in tries:
        suffix = f"-{want_stage}-{want_method}"
        found = [name for name in shipped if name.endswith(suffix)]
        if found:
            best = f"{model}{suffix}" if f"{model}{suffix}" in found else found[0]
            preset = Recipe.load(preset_dir() / f"{best}.yaml").to_dict()
            values.update({k: v for k, v in preset.items() if k in values})
            if method == "full" and stage in ("dpo", "kto") and want_stage == "sft":
                values["learning_rate"] = FULL_PREFERENCE_LR
            break
    return tuple(values.items())

# -- import of an old LLaMA-Factory YAML -------------------------------------------------------
STALE_KEYS = {"evaluation_strategy": "eval_strategy", "kto_ftx": "pref_ftx", "dpo_beta": "pref_beta",
              "dpo_loss": "pref_loss", "dpo_ftx": "pref_ftx", "kto_beta": "pref_beta"}

# LLaMA-Factory key -> recipe field.
_LF_TO_RECIPE = {
    "model_name_or_path": "model", "template": "template", "stage": "stage", "lora_rank": "lora_rank",
    "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout", "lora_target": "lora_target",
    "pref_beta": "pref_beta", "pref_ftx": "pref_ftx", "pref_loss": "pref_loss", "dataset": "datasets",
    "dataset_dir": "dataset_dir", "cutoff_len": "cutoff_len", "max_samples": "max_samples",
    "val_size": "val_size", "learning_rate": "learning_rate", "num_train_epochs": "num_train_epochs",
    "max_steps": "max_steps", "per_device_train_batch_size": "micro_batch",
    "gradient_accumulation_steps": "grad_accum", "warmup_ratio": "warmup_ratio",
    "lr_scheduler_type": "lr_scheduler_type", "logging_steps": "logging_steps", "save_steps": "save_steps",
    "save_total_limit": "save_total_limit", "seed": "seed", "eval_steps": "eval_steps",
    "output_dir": "output_dir", "report_to": "report_to",
}
# Keys the generator writes itself from the recipe/plan: imported values are dropped with a note.
_DERIVED = {"finetuning_type", "quantization_bit", "bf16", "fp16", "pure_bf16", "deepspeed", "flash_attn",
            "do_train", "overwrite_output_dir", "overwrite_cache", "plot_loss", "trust_remote_code",
            "gradient_checkpointing", "disable_gradient_checkpointing", "per_device_eval_batch_size",
            "eval_strategy", "ddp_timeout", "save_strategy", "logging_dir",
            "do_eval", "resume_from_checkpoint", "kto_chosen_weight", "kto_undesirable_weight"}


@dataclass
class ImportReport:
    recipe: Recipe
    mapped: list[tuple[str, str]]  # (old key, new key)
    dropped: list[str]  # keys the generator derives itself
    unknown: list[str]  # keys the installed LLaMA-Factory does not know
    extra: list[str]  # valid LLaMA-Factory keys kept in extra_args


def import_lf_yaml(path: str | os.PathLike[str], known_keys: set[str] | None = None) -> ImportReport:
    """Turn an old LLaMA-Factory training YAML (e.g. OpenBMB's) into a recipe; report what changed."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise UserError("YAML not found", where=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text (byte {exc.start})", where=str(path),
                        fix="give the LLaMA-Factory training YAML, saved as UTF-8") from exc
    except yaml.YAMLError as exc:
        raise UserError("not valid YAML", where=str(path)) from exc
    if not isinstance(data, dict):
        raise UserError("a LLaMA-Factory config must be a mapping", where=str(path))
    values: dict[str, Any] = {}
    mapped: list[tuple[str, str]] = []
    dropped: list[str] = []
    unknown: list[str] = []
    extra: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key == "warmup_steps" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and 0 <= value < 1:
            mapped.append(("warmup_steps", "warmup_ratio"))
            key = "warmup_ratio"
        elif key in STALE_KEYS:
            mapped.append((key, STALE_KEYS[key]))
            key = STALE_KEYS[key]
        if key in _LF_TO_RECIPE:
            values[_LF_TO_RECIPE[key]] = value
        elif key == "finetuning_type":
            if value not in ("lora", "full"):
                raise UserError(f"finetuning_type {value!r} is not supported by minicpm-tui",
                                where=f"{path}: finetuning_type", fix="use lora or full")
            values["method"] = "qlora" if value == "lora" and data.get("quantization_bit") else value
        elif key == "bf16" and value:
            values["precision"] = "bf16"
        elif key == "fp16" and value and not data.get("bf16"):
            values["precision"] = "fp16"
        elif key == "deepspeed" and isinstance(value, str):
            match = re.search(r"z([023])", Path(value).name)
            if match:
                values["zero_stage"] = int(match.group(1))
            if "offload" in Path(value).name:
                values["offload"] = "optimizer"
            dropped.append(key)
        elif key in _DERIVED:
            dropped.append(key)
        elif known_keys is not None and key not in known_keys:
            unknown.append(key)
        else:
            extra[key] = value
    if isinstance(values.get("datasets"), str):
        values["datasets"] = [d.strip() for d in values["datasets"].split(",") if d.strip()]
    if values.get("max_samples") is None:
        values.pop("max_samples", None)
    if values.get("max_steps", 0) in (-1, None):
        values["max_steps"] = 0
    if values.get("report_to") not in (None, "none", "tensorboard", "wandb"):
        values["report_to"] = "none"
    if values.get("stage") not in (None, "sft", "dpo", "kto"):
        raise UserError(f"stage {values['stage']!r} is not supported by minicpm-tui", where=f"{path}: stage",
                        fix="use sft, dpo or kto")
    values["name"] = path.stem
    recipe = Recipe.from_dict(values, where=str(path))
    recipe.extra_args = {str(k): v for k, v in extra.items()}
    recipe.base_dir = path.resolve().parent
    return ImportReport(recipe, mapped, dropped, unknown, sorted(extra))
