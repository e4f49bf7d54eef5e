"""Run the real GPU peer-to-peer check (``_resources/p2p_check.py``) in the training Python, under a timeout."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from minicpm_tui.core.lfinfo import training_python
from minicpm_tui.core.resources import resource_script


def run_p2p_check(timeout_s: float = 90.0, python: str | None = None) -> dict[str, Any]:
    """``{ok: True|False|None, status, detail, pairs}``; ``ok`` False on a failed copy or a hang (timeout)."""
    cmd = [python or training_python(), str(resource_script("p2p_check.py"))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        return {"ok": False, "status": "hung", "pairs": [],
                "detail": f"the GPU-to-GPU copy did not finish within {timeout_s:.0f} s (broken P2P hangs like this)"}
    except OSError as exc:
        return {"ok": None, "status": "error", "detail": f"cannot start {cmd[0]}: {exc}", "pairs": []}
    for line in reversed(proc.stdout.splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "ok" in data:
            return data
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"ok": None, "status": "error", "detail": f"exit {proc.returncode}: {tail[0]}", "pairs": []}
