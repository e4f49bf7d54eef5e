"""XDG locations for config, state (the runs registry) and cache (tiny smoke models, LF introspection).

MINICPM_TUI_HOME overrides all three (tests point it at a temporary folder). As the XDG spec asks, a
relative XDG_*_HOME is ignored: it would name another folder from every working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from minicpm_tui.core.errors import UserError


def _xdg(var: str, default: str, leaf: str) -> Path:
    override = os.environ.get("MINICPM_TUI_HOME")
    if override:
        return Path(override).expanduser() / leaf
    base = os.environ.get(var, "")
    if not os.path.isabs(base):
        try:
            base = str(Path.home() / default)
        except (RuntimeError, KeyError) as exc:  # no HOME and no passwd entry (some containers)
            raise UserError("cannot tell where minicpm-tui keeps its files: no home directory", where=var,
                            fix=f"set HOME, or {var} (MINICPM_TUI_HOME overrides all of them)") from exc
    return Path(base) / "minicpm-tui"


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config", "config")


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state", "state")


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache", "cache")


def absolute_path(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute and normal (``~`` expanded, ``.`` and ``..`` folded, as ``os.path.abspath``
    does), without resolving the symlinks the user chose: ``proj/../runs/p1`` is ``$PWD/runs/p1``."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
