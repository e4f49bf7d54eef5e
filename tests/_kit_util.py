"""Load the GPU kit's scripts (bench/gpu/*.py, not a package) as modules for the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

KIT = Path(__file__).resolve().parent.parent / "bench" / "gpu"


def load_kit_module(name: str) -> ModuleType:
    key = f"kit_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, KIT / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module
