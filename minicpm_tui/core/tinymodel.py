"""Tiny random models with MiniCPM's chat specials, built locally once and cached.

Used by the smoke run and by tests: real LLaMA-Factory training, no download.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

from minicpm_tui.core.errors import UserError
from minicpm_tui.core.paths import cache_dir
from minicpm_tui.core.resources import resource_script

# Bump when build_tiny_model.py changes what it writes.
TINY_MODEL_VERSION = 1
CHAT_FORMATS = ("cpm", "cpm3")


def offline_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for subprocesses that must never reach a hub."""
    env = dict(os.environ if base is None else base)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "DISABLE_VERSION_CHECK": "1", "WANDB_DISABLED": "true",
                "TOKENIZERS_PARALLELISM": "false"})
    return env


def tiny_model_path(chat_format: str, python: str, *, root: Path | None = None) -> Path:
    """Where ``python``'s tiny model for ``chat_format`` lives (built or not)."""
    # Not realpath: every venv's bin/python is a link to the same base interpreter.
    env_key = hashlib.sha256(os.path.abspath(python).encode()).hexdigest()[:10]
    return (root or cache_dir() / "tiny-models") / f"{chat_format}-v{TINY_MODEL_VERSION}-{env_key}"


def tiny_model_dir(chat_format: str = "cpm3", *, root: Path | None = None, python: str | None = None) -> Path:
    """Path of a ready tiny model for ``chat_format``, built by ``python`` (default: the training Python)
    on first use (about 5 s).

    One per training environment: what transformers 5 saves (its tokenizer class ``TokenizersBackend``)
    does not load in transformers 4, which older LLaMA-Factory releases pin; so the environment that trains
    on the model is the one that builds it.
    """
    if chat_format not in CHAT_FORMATS:
        raise UserError(f"unknown chat format {chat_format!r}", fix=f"use one of {', '.join(CHAT_FORMATS)}")
    from minicpm_tui.core.lfinfo import check_training_python, run_training_python, training_python

    python = python or training_python()
    target = tiny_model_path(chat_format, python, root=root)
    base = target.parent
    marker = target / "tiny_model.json"
    if marker.is_file():
        return target
    check_training_python(python)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f".{chat_format}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test processes must not build into one folder
        if marker.is_file():
            return target
        tmp = base / f".{target.name}.building-{os.getpid()}"
        proc = run_training_python(python, [str(resource_script("build_tiny_model.py")), str(tmp),
                                            "--chat-format", chat_format],
                                   capture_output=True, text=True, env=offline_env(), timeout=600)
        if proc.returncode != 0 or not (tmp / "tiny_model.json").is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise UserError("building the tiny smoke model failed: " + " | ".join(tail),
                            fix="run `minicpm-tui doctor` to check the training environment")
        os.replace(tmp, target)
    return target


def tiny_model_info(path: Path) -> dict:
    return json.loads((Path(path) / "tiny_model.json").read_text(encoding="utf-8"))
