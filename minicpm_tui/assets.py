"""Where the shipped presets and demo datasets live.

The checkout keeps them at the top level (presets/, data/); the wheel ships them as the
packages ``minicpm_tui.presets`` and ``minicpm_tui.data`` (see pyproject.toml). This is the one
function everything else uses to find them, so an installed copy and a checkout behave alike.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

_PACKAGES = {"presets": "minicpm_tui.presets", "data": "minicpm_tui.data"}


@cache
def _root(kind: str) -> Path:
    spec = importlib.util.find_spec(_PACKAGES[kind])
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            path = Path(location)
            if path.is_dir():
                return path
    # A plain source tree on sys.path without an install (python -m from the checkout).
    fallback = Path(__file__).resolve().parent.parent / kind
    if fallback.is_dir():
        return fallback
    raise FileNotFoundError(f"minicpm-tui's {kind}/ folder is missing from this install; reinstall the package")


def asset_path(kind: str, *parts: str) -> Path:
    """Path of a shipped asset: ``asset_path("presets", "models")``, ``asset_path("data", "demo_sft.json")``."""
    if kind not in _PACKAGES:
        raise ValueError(f"unknown asset kind {kind!r}; expected one of {sorted(_PACKAGES)}")
    return _root(kind).joinpath(*parts)


def asset_files(kind: str, *parts: str, suffixes: tuple[str, ...] = (".yaml", ".yml", ".json")) -> dict[str, Path]:
    """``{stem: path}`` of the shipped files in one asset folder, sorted by name.

    Only a directory listing: the wizard's first screen lists the hardware presets with it before
    anything imports a YAML parser.
    """
    folder = asset_path(kind, *parts)
    if not folder.is_dir():
        return {}
    return {path.stem: path for path in sorted(folder.iterdir()) if path.suffix in suffixes}
