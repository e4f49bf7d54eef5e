"""Scripts that run in the training Python (they import the heavy stack; we never do)."""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent / "_resources"


def resource_script(name: str) -> Path:
    path = RESOURCES / name
    if not path.is_file():
        raise FileNotFoundError(f"minicpm-tui resource {name} is missing; reinstall the package")
    return path
