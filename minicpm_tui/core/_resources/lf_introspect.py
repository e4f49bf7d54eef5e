"""Report what the installed training stack really has, as one JSON object on stdout.

Runs in the training Python; never raises: each missing piece is reported with its error.
    python lf_introspect.py [--full]
--full also imports torch (CUDA state) and DeepSpeed (op compatibility): slower, for `doctor`.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import json
import os
import platform
import sys
import warnings

PACKAGES = ["torch", "transformers", "llamafactory", "deepspeed", "peft", "trl", "datasets", "accelerate",
            "tokenizers", "flash-attn", "flash_attn", "bitsandbytes", "torchaudio", "torchvision", "liger-kernel"]
CPM_TEMPLATES = ["cpm", "cpm3", "cpm4", "minicpm5", "minicpm_v", "minicpm_o"]
MEDIA_TOKENS = (("images", "image_token"), ("videos", "video_token"), ("audios", "audio_token"))


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name.replace("_", "-")] = md.version(name)
        except md.PackageNotFoundError:
            out.setdefault(name.replace("_", "-"), None)
    return out


def llamafactory_facts() -> dict:
    facts: dict = {"importable": False}
    try:
        import llamafactory

        facts["importable"] = True
        facts["version"] = getattr(llamafactory, "__version__", None)
        pkg_dir = os.path.dirname(llamafactory.__file__)
        facts["package_dir"] = pkg_dir
        launcher = os.path.join(pkg_dir, "launcher.py")
        facts["launcher"] = launcher if os.path.isfile(launcher) else None
        # A source checkout keeps src/llamafactory and src/train.py side by side.
        train_py = os.path.join(os.path.dirname(pkg_dir), "train.py")
        facts["source_train_py"] = train_py if os.path.isfile(train_py) else None
    except BaseException as exc:
        facts["error"] = _err(exc)
        return facts
    try:
        from llamafactory.data.template import TEMPLATES

        facts["templates"] = sorted(TEMPLATES)
        facts["cpm_templates"] = {name: name in TEMPLATES for name in CPM_TEMPLATES}
    except BaseException as exc:
        facts["templates_error"] = _err(exc)
    else:
        # The media each template's mm plugin takes (its token is set): data/mm_plugin.py raises "This model
        # does not support image input" for the others. {} when unreadable: every template is then unknown.
        facts["template_media"] = {}
        try:
            facts["template_media"] = {name: [key for key, attr in MEDIA_TOKENS
                                              if getattr(getattr(tpl, "mm_plugin", None), attr, None) is not None]
                                       for name, tpl in TEMPLATES.items()}
        except BaseException as exc:
            facts["template_media_error"] = _err(exc)
    try:
        from llamafactory import hparams

        keys: dict[str, list[str]] = {}
        for cls_name in ("ModelArguments", "DataArguments", "FinetuningArguments", "GeneratingArguments",
                         "TrainingArguments", "Seq2SeqTrainingArguments", "RayArguments"):
            cls = getattr(hparams, cls_name, None)
            if cls is not None and dataclasses.is_dataclass(cls):
                keys[cls_name] = sorted(f.name for f in dataclasses.fields(cls))
        facts["hparams"] = keys
    except BaseException as exc:
        facts["hparams_error"] = _err(exc)
    return facts


def torch_facts() -> dict:
    facts: dict = {}
    try:
        import torch

        facts["version"] = torch.__version__
        facts["cuda_build"] = torch.version.cuda
        facts["cuda_available"] = bool(torch.cuda.is_available())
        facts["device_count"] = torch.cuda.device_count() if facts["cuda_available"] else 0
        if facts["cuda_available"]:
            facts["bf16_supported"] = bool(torch.cuda.is_bf16_supported())
    except BaseException as exc:
        facts["error"] = _err(exc)
    return facts


def deepspeed_facts() -> dict:
    facts: dict = {}
    try:
        import deepspeed

        facts["version"] = deepspeed.__version__
        try:
            from deepspeed.ops.op_builder import CPUAdamBuilder

            facts["cpu_adam_compatible"] = bool(CPUAdamBuilder().is_compatible(verbose=False))
        except BaseException as exc:
            facts["cpu_adam_error"] = _err(exc)
        import shutil

        facts["ninja"] = shutil.which("ninja") is not None
        facts["cxx"] = shutil.which(os.environ.get("CXX", "c++")) is not None
    except BaseException as exc:
        facts["error"] = _err(exc)
    return facts


def main() -> int:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    full = "--full" in sys.argv
    report = {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "packages": versions(),
        "llamafactory": llamafactory_facts(),
    }
    if full:
        report["torch"] = torch_facts()
        report["deepspeed"] = deepspeed_facts()
    sys.stdout.write("\n@@LFINFO@@" + json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
