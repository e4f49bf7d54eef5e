"""Check many train.yaml / ds_config.json pairs with LLaMA-Factory's and DeepSpeed's own parsers.

Runs in the training Python (importing llamafactory costs ~7 s, so one process checks a whole batch):
    python lf_preflight.py JOBS.json
JOBS.json: [{"id": str, "cwd": dir, "yaml": path (relative to cwd ok), "templates_from_entry": [names]}].
Prints one line "@@PREFLIGHT@@" + JSON: {id: {"problems": [{file, key, message, fix}], "notes": [...]}}.
Never raises for a bad config: each problem is reported with the file and key it came from.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
import sys
import warnings

MARK = "@@PREFLIGHT@@"
STALE = {"evaluation_strategy": "eval_strategy", "kto_ftx": "pref_ftx", "dpo_beta": "pref_beta",
         "dpo_loss": "pref_loss", "dpo_ftx": "pref_ftx"}
# DeepSpeed 'auto' values the HF Trainer fills at model time; stand-ins so DeepSpeed's model can validate.
DS_AUTO_FALLBACK = {"reduce_bucket_size": 500000000, "stage3_prefetch_bucket_size": 50000000,
                    "stage3_param_persistence_threshold": 100000}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:400]


def _fill_auto(node, fallback):
    if isinstance(node, dict):
        return {k: (fallback.get(k, 1) if v == "auto" else _fill_auto(v, fallback)) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill_auto(v, fallback) for v in node]
    return node


def check_one(job, train_cls, parser_cls, cuda):
    problems, notes = [], []
    cwd = job["cwd"]
    yaml_path = os.path.join(cwd, job["yaml"])
    yaml_name = job.get("yaml_label", job["yaml"])

    def add(file, key, message, fix=""):
        problems.append({"file": file, "key": key, "message": message, "fix": fix})

    try:
        from omegaconf import OmegaConf  # what LLaMA-Factory's read_args uses

        args = OmegaConf.to_container(OmegaConf.load(yaml_path))
    except BaseException as exc:
        add(yaml_name, None, f"cannot be read the way LLaMA-Factory reads it: {_first_line(exc)}")
        return {"problems": problems, "notes": notes}
    if not isinstance(args, dict):
        add(yaml_name, None, "must be a mapping of key: value")
        return {"problems": problems, "notes": notes}
    fields = {f.name for cls in train_cls for f in dataclasses.fields(cls)}
    for key in list(args):
        if key not in fields:
            if key in STALE:
                fix = f"renamed to {STALE[key]}"
            elif key == "warmup_steps" and isinstance(args[key], float) and args[key] < 1:
                fix = "a fraction belongs in warmup_ratio"
            else:
                close = difflib.get_close_matches(key, sorted(fields), n=1)
                fix = f"did you mean {close[0]}?" if close else "remove it"
            add(yaml_name, key, "is not an argument of the installed LLaMA-Factory", fix)
            args.pop(key)
    template = args.get("template")
    if template:
        from llamafactory.data.template import TEMPLATES

        if template not in TEMPLATES and template not in job.get("templates_from_entry", []):
            close = difflib.get_close_matches(str(template), sorted(TEMPLATES), n=2)
            add(yaml_name, "template", f"template {template!r} is not registered by this LLaMA-Factory",
                f"use {' or '.join(close)}" if close else "pick one from `minicpm-tui doctor`")
    if not cuda:
        for key in ("bf16", "fp16", "pure_bf16"):
            if args.pop(key, None):
                notes.append(f"{key} is checked on the GPU at launch (this machine has none)")
        args.pop("quantization_bit", None)
    old = os.getcwd()
    try:
        os.chdir(cwd)
        parsed = parser_cls(train_cls).parse_dict(args, allow_extra_keys=False)
    except BaseException as exc:
        message = _first_line(exc)
        key = next((k for k in args if k in message), None)
        add(yaml_name, key, f"LLaMA-Factory rejects it: {message}")
        return {"problems": problems, "notes": notes}
    finally:
        os.chdir(old)
    training_args = next((p for p in parsed if hasattr(p, "deepspeed")), None)
    check_dependencies(parsed, training_args, yaml_name, add)
    if args.get("deepspeed"):
        ds_file = str(args["deepspeed"])
        check_deepspeed(os.path.join(cwd, ds_file), ds_file, training_args, add)
    data_args = next((p for p in parsed if hasattr(p, "cutoff_len")), None)
    if data_args is not None and getattr(data_args, "dataset_dir", None) and not str(data_args.dataset_dir).startswith(
            ("ONLINE", "REMOTE")):
        info = os.path.join(cwd, data_args.dataset_dir, "dataset_info.json")
        try:
            with open(info, encoding="utf-8") as handle:
                registry = json.load(handle)
        except (OSError, ValueError) as exc:
            add("dataset_info.json", None, f"cannot be read: {_first_line(exc)}")
            registry = {}
        for name in [d.strip() for d in str(args.get("dataset") or "").split(",") if d.strip()]:
            if registry and name not in registry:
                add(yaml_name, "dataset", f"dataset {name!r} is not in dataset_info.json", "register it")
    return {"problems": problems, "notes": notes}


def check_dependencies(parsed, training_args, label, add):
    """LLaMA-Factory's own check of the packages a config needs (DeepSpeed's version, matplotlib for
    plot_loss, ...), which it runs at launch: 0.9.3 refuses DeepSpeed > 0.16.9 outright, 0.9.4 unless
    DISABLE_VERSION_CHECK=1. It is judged with DISABLE_VERSION_CHECK as the launch will have it
    (MINICPM_TUI_LAUNCH_DISABLE_VERSION_CHECK: this process sets its own to import quietly)."""
    from llamafactory.hparams import parser as lf_parser

    check = getattr(lf_parser, "_check_extra_dependencies", None)
    model_args = next((p for p in parsed if hasattr(p, "model_name_or_path")), None)
    finetuning_args = next((p for p in parsed if hasattr(p, "finetuning_type")), None)
    if check is None or model_args is None or finetuning_args is None:
        return
    launch = os.environ.get("MINICPM_TUI_LAUNCH_DISABLE_VERSION_CHECK")
    saved = os.environ.get("DISABLE_VERSION_CHECK")
    if launch is not None:
        if launch:
            os.environ["DISABLE_VERSION_CHECK"] = launch
        else:
            os.environ.pop("DISABLE_VERSION_CHECK", None)
    try:
        check(model_args, finetuning_args, training_args)
    except BaseException as exc:
        message = _first_line(exc)
        key = "deepspeed" if "deepspeed" in message.lower() else None
        fix = "install what it names in the training environment"
        if "DISABLE_VERSION_CHECK" in str(exc):
            fix += " (or export DISABLE_VERSION_CHECK=1 before launching, at your own risk)"
        add(label, key, f"LLaMA-Factory would refuse to start: {message}", fix)
    finally:
        if saved is None:
            os.environ.pop("DISABLE_VERSION_CHECK", None)
        else:
            os.environ["DISABLE_VERSION_CHECK"] = saved


def check_deepspeed(path, label, training_args, add):
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError:
        add(label, None, "DeepSpeed config file not found", "regenerate the run directory")
        return
    except ValueError as exc:
        add(label, None, f"not valid JSON: {exc}")
        return
    config = copy.deepcopy(raw)
    hf = getattr(training_args, "hf_deepspeed_config", None)
    if hf is not None:  # the HF Trainer already filled its 'auto' fields from train.yaml
        config = copy.deepcopy(hf.config)
    config = _fill_auto(config, DS_AUTO_FALLBACK)
    if isinstance(config.get("bf16"), dict) and isinstance(config.get("fp16"), dict) and \
            config["bf16"].get("enabled") is True and config["fp16"].get("enabled") is True:
        add(label, "fp16", "fp16 and bf16 are both enabled")
    config["train_batch_size"] = None if "train_batch_size" not in raw else config.get("train_batch_size")
    config = {k: v for k, v in config.items() if v is not None}
    try:
        from deepspeed.runtime.config import DeepSpeedConfig

        DeepSpeedConfig(config)
    except BaseException as exc:
        errors = getattr(exc, "errors", None)
        if callable(errors):  # pydantic: name the field and the rule
            try:
                first = errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ()))
                add(label, f"zero_optimization.{where}" if where and where.split(".")[0] not in raw else where,
                    f"DeepSpeed rejects it: {first.get('msg')} (got {first.get('input')!r})")
                return
            except BaseException:
                pass
        message = _first_line(exc)
        section = next((k for k in raw if k in message), None)
        add(label, section, f"DeepSpeed rejects it: {message}")


def main() -> int:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    with open(sys.argv[1], encoding="utf-8") as handle:
        jobs = json.load(handle)
    out = {}
    try:
        from llamafactory.hparams import parser as lf_parser
        from transformers import HfArgumentParser

        train_cls = getattr(lf_parser, "_TRAIN_ARGS", None)
        if train_cls is None:
            from llamafactory.hparams import (
                DataArguments,
                FinetuningArguments,
                GeneratingArguments,
                ModelArguments,
                TrainingArguments,
            )

            train_cls = [ModelArguments, DataArguments, TrainingArguments, FinetuningArguments, GeneratingArguments]
        try:
            import torch

            cuda = bool(torch.cuda.is_available())
        except BaseException:
            cuda = False
        try:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import train_entry

            train_entry.register_missing_templates()
        except BaseException:
            pass
    except BaseException as exc:
        for job in jobs:
            out[job["id"]] = {"problems": [{"file": job["yaml"], "key": None, "fix": "run `minicpm-tui doctor`",
                                            "message": f"LLaMA-Factory cannot be imported: {_first_line(exc)}"}],
                              "notes": []}
        sys.stdout.write("\n" + MARK + json.dumps(out) + "\n")
        return 0
    for job in jobs:
        try:
            out[job["id"]] = check_one(job, train_cls, HfArgumentParser, cuda)
        except BaseException as exc:  # a checker bug still names the file
            out[job["id"]] = {"problems": [{"file": job["yaml"], "key": None, "fix": "",
                                            "message": f"preflight failed: {_first_line(exc)}"}], "notes": []}
    sys.stdout.write("\n" + MARK + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
