"""Reading a run directory's own files leniently: status, monitor and preflight must not fail on a damaged one."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_train_yaml(run_dir: Path, rel: str = "train.yaml") -> dict[str, Any]:
    """train.yaml's keys, {} when it is missing or cannot be read (the callers that need it report that)."""
    import yaml  # PyYAML costs ~30 ms to import; only the callers that read a run directory pay it

    try:
        data = yaml.safe_load((run_dir / rel).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
