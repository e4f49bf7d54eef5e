"""What the installed LLaMA-Factory really has (templates, argument keys, launcher), read from it.

The facts come from ``_resources/lf_introspect.py`` run in the training Python, so this process never
imports the training stack. They are cached per (interpreter, LLaMA-Factory version and location,
source checkout) under the XDG cache dir; importing llamafactory costs 6-8 s here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minicpm_tui.core.errors import UserError
from minicpm_tui.core.paths import cache_dir
from minicpm_tui.core.resources import resource_script

ENV_TRAIN_PYTHON = "MINICPM_TUI_TRAIN_PYTHON"
ENV_LF_SOURCE = "MINICPM_TUI_LF_SOURCE"
MARK = "@@LFINFO@@"


def training_python() -> str:
    """The interpreter that has LLaMA-Factory: $MINICPM_TUI_TRAIN_PYTHON, else this one."""
    return os.environ.get(ENV_TRAIN_PYTHON) or sys.executable


def run_dir_python(meta: dict[str, Any]) -> str:
    """The Python a run directory trains with, in its scripts' own order: $TRAIN_PYTHON, else the one
    recorded in generated.json when it was written (if it still exists), else ``training_python()``.

    The smoke run and the preflight use it too, so they prove the environment the real run will use, not
    whichever one this shell's MINICPM_TUI_TRAIN_PYTHON names today.
    """
    if os.environ.get("TRAIN_PYTHON"):
        return os.environ["TRAIN_PYTHON"]
    resolved = meta.get("resolved") if isinstance(meta, dict) else None
    recorded = resolved.get("training_python") if isinstance(resolved, dict) else None
    if isinstance(recorded, str) and os.path.isfile(recorded) and os.access(recorded, os.X_OK):
        return recorded
    return training_python()


TRAIN_PYTHON_FIX = (f"point TRAIN_PYTHON (one run directory) or {ENV_TRAIN_PYTHON} at the python of the "
                    "environment that has llamafactory; `minicpm-tui doctor --python PATH` checks one")


def training_python_error(python: str, reason: str = "not found") -> UserError:
    """The one error for a training Python that cannot be run, wherever it is run from.

    ``where`` names the variable that chose it (TRAIN_PYTHON, else MINICPM_TUI_TRAIN_PYTHON) when one did.
    """
    where = next((var for var in ("TRAIN_PYTHON", ENV_TRAIN_PYTHON) if os.environ.get(var) == python), None)
    return UserError(f"training Python {python!r} {reason}", where=where, fix=TRAIN_PYTHON_FIX)


def check_training_python(python: str) -> str:
    """``python`` if it names a program that can be run (a path, or a bare name found on PATH), else the
    UserError of ``training_python_error``: missing, a folder, or not executable."""
    path = python if os.sep in python else shutil.which(python)
    if path is None:
        raise training_python_error(python, "not found on PATH")
    if not os.path.exists(path):
        raise training_python_error(python, "not found")
    if os.path.isdir(path):
        raise training_python_error(python, "is a folder, not a python executable")
    if not os.access(path, os.X_OK):
        raise training_python_error(python, "is not executable")
    return python


def run_training_python(python: str, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([python, *args], **kwargs)`` with a python that cannot start as a UserError.
    Timeouts are left to the caller, who knows what was being waited for."""
    check_training_python(python)
    try:
        return subprocess.run([python, *args], **kwargs)
    except OSError as exc:  # e.g. ENOEXEC: an executable file that is no program
        raise training_python_error(python, f"cannot be started ({exc.strerror or exc})") from exc


def lf_source_env(source: str | os.PathLike[str] | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment that makes a LLaMA-Factory source checkout (``<src>/src/llamafactory``) importable."""
    env = dict(os.environ if base is None else base)
    if source:
        src = str(Path(source).expanduser().resolve() / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@dataclass
class LFInfo:
    """Facts about one training environment. ``raw`` keeps the whole introspection report.

    ``target``: empty when read from a Python here; else the recipe's ``lf_target`` (a release snapshot or a
    saved report, ``core.lftarget``), facts about an environment elsewhere, described by ``label``.
    """

    raw: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    label: str = ""

    def describe(self) -> str:
        """``the installed LLaMA-Factory (0.9.5)``, or the target's label."""
        return self.label or f"the installed LLaMA-Factory ({self.version})"

    @property
    def python(self) -> str:
        return str(self.raw.get("python", {}).get("executable", ""))

    @property
    def version(self) -> str | None:
        lf = self.raw.get("llamafactory", {})
        return lf.get("version") or self.raw.get("packages", {}).get("llamafactory")

    @property
    def installed(self) -> bool:
        return bool(self.raw.get("llamafactory", {}).get("importable"))

    @property
    def templates(self) -> list[str]:
        return list(self.raw.get("llamafactory", {}).get("templates", []))

    def has_template(self, name: str) -> bool:
        return name in self.templates

    @property
    def template_media(self) -> dict[str, list[str]] | None:
        """Template -> the media columns (images, videos, audios) its mm plugin takes; None: not introspected."""
        media = self.raw.get("llamafactory", {}).get("template_media")
        return dict(media) if isinstance(media, dict) else None

    @property
    def hparams(self) -> dict[str, list[str]]:
        return dict(self.raw.get("llamafactory", {}).get("hparams", {}))

    @property
    def all_keys(self) -> set[str]:
        return {key for keys in self.hparams.values() for key in keys}

    @property
    def launcher(self) -> str | None:
        return self.raw.get("llamafactory", {}).get("launcher")

    @property
    def source_train_py(self) -> str | None:
        return self.raw.get("llamafactory", {}).get("source_train_py")

    def package_version(self, name: str) -> str | None:
        return self.raw.get("packages", {}).get(name)


def _installed_key(python: str, source: str | None) -> str:
    """A cheap fingerprint of the training environment, to know when the cache is stale."""
    if python == sys.executable and not source:
        import importlib.metadata as md

        try:
            dist = md.distribution("llamafactory")
            where = str(dist.locate_file(""))
            stamp = f"{dist.version}|{where}|{_mtime(Path(where) / 'llamafactory')}"
        except md.PackageNotFoundError:
            stamp = "none"
    else:
        code = ("import importlib.util,os;s=importlib.util.find_spec('llamafactory');"
                "p=os.path.dirname(s.origin) if s and s.origin else '';"
                "print(p, os.stat(p).st_mtime if p else 0)")
        proc = run_training_python(python, ["-c", code], capture_output=True, text=True, timeout=60,
                                   env=lf_source_env(source))
        stamp = proc.stdout.strip() or f"rc{proc.returncode}"
    return hashlib.sha256(f"{os.path.realpath(python)}|{source}|{stamp}".encode()).hexdigest()[:16]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def run_introspection(python: str | None = None, source: str | None = None, *, full: bool = False,
                      timeout: float = 300) -> dict[str, Any]:
    python = python or training_python()
    try:
        proc = run_training_python(python, [str(resource_script("lf_introspect.py"))] + (["--full"] if full else []),
                                   capture_output=True, text=True, timeout=timeout, env=lf_source_env(source))
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"inspecting LLaMA-Factory took over {timeout:.0f} s",
                        fix="check the training environment with `minicpm-tui doctor`") from exc
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
    raise UserError(f"could not inspect the training environment ({python}): {tail}",
                    fix="run `minicpm-tui doctor`")


def lf_info(python: str | None = None, source: str | None = None, *, refresh: bool = False) -> LFInfo:
    """Facts about the training environment's LLaMA-Factory, cached until it changes."""
    python = python or training_python()
    source = source or os.environ.get(ENV_LF_SOURCE) or None
    key = _installed_key(python, source)
    path = cache_dir() / "lfinfo" / f"{key}.json"
    if not refresh and path.is_file():
        try:
            cached = LFInfo(json.loads(path.read_text(encoding="utf-8")))
            if cached.template_media is not None:  # else written before the media were introspected
                return cached
        except (OSError, ValueError):
            pass
    raw = run_introspection(python, source)
    if raw.get("llamafactory", {}).get("importable") and "templates" in raw["llamafactory"]:
        from minicpm_tui.core.atomic import write_atomic

        write_atomic(path, json.dumps(raw))
    return LFInfo(raw)


def installed_lf_version(python: str | None = None) -> str | None:
    """The LLaMA-Factory release ``python`` (default ``training_python()``) has, None if none or unknown.

    Read from the package metadata, without importing it (milliseconds, not the 6-8 s of ``lf_info``);
    a source checkout ($MINICPM_TUI_LF_SOURCE) goes through ``lf_info``, which reads it from the import.
    """
    python = python or training_python()
    source = os.environ.get(ENV_LF_SOURCE)
    try:
        if source:
            return lf_info(python, source).version
        if python == sys.executable:
            import importlib.metadata as md

            return md.version("llamafactory")
        proc = run_training_python(python, ["-c", "import importlib.metadata as m; print(m.version('llamafactory'))"],
                                   capture_output=True, text=True, timeout=60)
    except Exception:  # not installed, not runnable, not inspectable: the caller says the release is unknown
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def require_lf(info: LFInfo) -> LFInfo:
    if not info.installed:
        err = info.raw.get("llamafactory", {}).get("error", "not installed")
        raise UserError(f"LLaMA-Factory is not importable in {info.python}: {err}",
                        fix="pip install 'llamafactory>=0.9.2,<0.10' in that environment, or set "
                            f"{ENV_TRAIN_PYTHON} to a python that has it")
    return info
