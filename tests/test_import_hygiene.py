"""The tool must start fast: no module of ours may pull in the training stack, and the core never
imports Textual. Each module is imported in a fresh interpreter and sys.modules is inspected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "minicpm_tui"
HEAVY = ["torch", "transformers", "deepspeed", "llamafactory", "datasets", "peft", "trl", "accelerate", "tokenizers"]


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        if "_resources" in rel.parts or "__pycache__" in rel.parts:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts))
    return names


def _loaded_after_import(module: str) -> list[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"importing {module} failed: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_module_list_is_not_empty():
    names = _modules()
    assert "minicpm_tui.core.nvml" in names and "minicpm_tui.cli" in names


@pytest.mark.parametrize("module", _modules())
def test_no_heavy_imports(module):
    loaded = _loaded_after_import(module)
    heavy = sorted({m.split(".")[0] for m in loaded} & set(HEAVY))
    assert not heavy, f"{module} imports {heavy}; move that work into a subprocess (core/_resources)"
    if module.startswith(("minicpm_tui.core", "minicpm_tui.assets")) or module in ("minicpm_tui", "minicpm_tui.cli"):
        ui = sorted(m for m in loaded if m == "textual" or m.startswith("textual."))
        assert not ui, f"{module} imports Textual ({ui[:3]}); the core must not depend on the UI"
