"""Which LLaMA-Factory a run directory is written for: this machine's, a shipped release, or a saved report.

A recipe's ``lf_target`` is
- ``installed`` (the default): the training Python here, read by ``lfinfo.lf_info``;
- a supported release (``0.9.3``): the introspection report of a real environment of that release, with
  what only held on the machine that made it (paths, the Python, torch's and DeepSpeed's builds) left out.
  They ship under presets/lf_releases/; ``scripts/lf_snapshots.py`` writes them again and
  tests/test_lf_target.py compares each with a live introspection of that release;
- a file written by ``minicpm-tui doctor --save FILE`` in the environment that will train.
Either of the last two lets a laptop without (that) LLaMA-Factory write a cluster's run directory.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from minicpm_tui.core.errors import UserError
from minicpm_tui.core.lfinfo import LFInfo

INSTALLED = "installed"
RELEASE_RE = re.compile(r"\d+\.\d+(\.\d+)*")
# The packages whose releases the facts were read with: TrainingArguments' keys are transformers' own.
SNAPSHOT_PACKAGES = ("llamafactory", "transformers", "peft", "trl", "datasets", "accelerate", "tokenizers")
# Where the package lay on the machine that was introspected: true there only.
LOCAL_KEYS = ("package_dir", "launcher", "source_train_py")
SAVE_FIX = ("save one with `minicpm-tui doctor --save FILE` in the environment that will train, or use "
            "installed or a shipped release")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def releases_dir() -> Path:
    from minicpm_tui.assets import asset_path

    return asset_path("presets", "lf_releases")


def known_releases() -> list[str]:
    """The releases minicpm-tui ships a snapshot of, oldest first (a directory listing: cheap)."""
    folder = releases_dir()
    names = [p.stem for p in folder.glob("*.json") if RELEASE_RE.fullmatch(p.stem)] if folder.is_dir() else []
    return sorted(names, key=_version_key)


def snapshot_of(raw: dict[str, Any]) -> dict[str, Any]:
    """An introspection report (``lf_introspect.py``) without what only held on the machine it ran on."""
    lf = {k: v for k, v in dict(raw.get("llamafactory") or {}).items() if k not in LOCAL_KEYS}
    packages = raw.get("packages") or {}
    return {"snapshot": {"release": lf.get("version"), "written_by": "scripts/lf_snapshots.py"},
            "packages": {name: packages.get(name) for name in SNAPSHOT_PACKAGES},
            "llamafactory": lf}


def looks_like_release(value: str) -> bool:
    return bool(RELEASE_RE.fullmatch(value.strip()))


def unknown_release(value: str, where: str = "lf_target") -> UserError:
    known = ", ".join(known_releases()) or "none"
    return UserError(f"no snapshot of LLaMA-Factory {value} (minicpm-tui ships {known})", where=where,
                     fix=f"use one of {known}, installed, or a file saved by `minicpm-tui doctor --save` there")


def check_lf_target(value: str) -> str | None:
    """The recipe's own check of ``lf_target`` (a file is only looked at when the run is generated)."""
    if not value.strip():
        return "is empty: write installed, a release (e.g. 0.9.3) or the path of a `doctor --save` report"
    if looks_like_release(value) and value.strip() not in known_releases() and not os.path.exists(value):
        return unknown_release(value.strip()).message
    return None


def report_problem(raw: Any) -> str | None:
    """Why ``raw`` cannot stand for a LLaMA-Factory environment, or None."""
    if not isinstance(raw, dict):
        return f"a JSON {type(raw).__name__}, not an introspection report object"
    lf = raw.get("llamafactory")
    if not isinstance(lf, dict):
        return "no `llamafactory` section"
    if not lf.get("importable"):
        return f"LLaMA-Factory was not importable there ({lf.get('error') or 'not installed'})"
    if not isinstance(lf.get("version"), str) or not lf["version"]:
        return "no `llamafactory.version`"
    templates = lf.get("templates")
    if not isinstance(templates, list) or not templates or not all(isinstance(t, str) for t in templates):
        return f"no template list (`llamafactory.templates`){': ' + lf['templates_error'] if lf.get('templates_error') else ''}"
    hparams = lf.get("hparams")
    if not isinstance(hparams, dict) or not hparams or not all(
            isinstance(keys, list) and all(isinstance(k, str) for k in keys) for keys in hparams.values()):
        return f"no argument keys (`llamafactory.hparams`){': ' + lf['hparams_error'] if lf.get('hparams_error') else ''}"
    media = lf.get("template_media")
    if media is not None and not isinstance(media, dict):
        return "`llamafactory.template_media` is not an object"
    return None


def read_report(path: Path, label: str, target: str) -> LFInfo:
    """A saved introspection report (``doctor --save`` or a shipped snapshot) as LFInfo; UserError naming the
    file when it cannot be read or is not one."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError("lf_target: no such file", where=str(path), fix=f"{SAVE_FIX} ({', '.join(known_releases())})"
                        ) from exc
    except IsADirectoryError as exc:
        raise UserError("lf_target: is a folder, not a saved report", where=str(path), fix=SAVE_FIX) from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"lf_target: not UTF-8 text (byte {exc.start})", where=str(path), fix=SAVE_FIX) from exc
    except ValueError as exc:
        raise UserError(f"lf_target: not valid JSON ({exc})", where=str(path), fix=SAVE_FIX) from exc
    except OSError as exc:
        raise UserError(f"lf_target: cannot be read ({exc.strerror or exc})", where=str(path), fix=SAVE_FIX) from exc
    problem = report_problem(raw)
    if problem:
        raise UserError(f"lf_target: not a usable LLaMA-Factory report: {problem}", where=str(path), fix=SAVE_FIX)
    return LFInfo(raw, target=target, label=label)


def load_release(version: str) -> LFInfo:
    """The shipped snapshot of a supported release."""
    if version not in known_releases():
        raise unknown_release(version)
    return read_report(releases_dir() / f"{version}.json", f"the LLaMA-Factory {version} snapshot", version)


def target_info(recipe: Any) -> LFInfo:
    """The LLaMA-Factory facts ``recipe`` is generated against (``lf_target``)."""
    from minicpm_tui.core.lfinfo import lf_info, require_lf

    value = str(getattr(recipe, "lf_target", INSTALLED) or INSTALLED).strip()
    if value == INSTALLED:
        return require_lf(lf_info(source=recipe.lf_source or None))
    if value in known_releases():
        return load_release(value)
    return _saved_target(recipe.resolve_path(value), value, "recipe: lf_target")


def typed_target(value: str | None, where: str = "--lf-target") -> LFInfo | None:
    """The facts of an ``lf_target`` typed on a command line (a release, or a saved report's path from the
    working directory); None for ``installed`` or nothing, this machine's, which the caller reads itself."""
    text = (value or "").strip()
    if not text or text == INSTALLED:
        return None
    if text in known_releases():
        return load_release(text)
    return _saved_target(Path(text).expanduser().absolute(), text, where)


def _saved_target(path: Path, value: str, where: str) -> LFInfo:
    """A ``doctor --save`` report named as ``lf_target`` (a release number that is no file: not shipped)."""
    if looks_like_release(value) and not path.exists():
        raise unknown_release(value, where=where)
    info = read_report(path, "", value)
    info.label = f"LLaMA-Factory {info.version} as saved in {path.name}"
    return info
