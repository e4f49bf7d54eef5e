"""XDG locations for config, state (the runs registry) and cache (tiny smoke models, LF introspection).

MINICPM_TUI_HOME overrides all three (tests point it at a temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, default: str, leaf: str) -> Path:
    override = os.environ.get("MINICPM_TUI_HOME")
    if override:
        return Path(override) / leaf
    base = os.environ.get(var) or str(Path.home() / default)
    return Path(base) / "minicpm-tui"


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config", "config")


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state", "state")


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache", "cache")
