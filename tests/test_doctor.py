"""`doctor` against the real installed training stack (subprocess imports: slow, so integration)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from minicpm_tui.core.doctor import MISSING, format_table, run_doctor
from minicpm_tui.core.lfinfo import training_python


@pytest.mark.integration
def test_doctor_json_lists_the_real_templates():
    proc = subprocess.run([sys.executable, "-m", "minicpm_tui", "doctor", "--json"], capture_output=True,
                          text=True, timeout=300)
    report = json.loads(proc.stdout)
    lf = report["llamafactory"]
    import importlib.metadata as md

    assert lf["version"] == md.version("llamafactory")
    # Whatever the version, the list must be the installed registry's own.
    assert len(lf["templates"]) > 20
    if lf["version"] == "0.9.5":
        assert "cpm4" in lf["templates"] and "cpm3" not in lf["templates"] and "cpm" not in lf["templates"]
        assert lf["minicpm_templates"] == {"cpm": False, "cpm3": False, "cpm4": True, "minicpm5": False}
    names = {c["name"] for c in report["checks"]}
    assert {"torch", "transformers", "llamafactory", "deepspeed", "nvml / driver", "flash-attn"} <= names
    assert proc.returncode == (0 if report["ok"] else 1)


def test_doctor_survives_a_broken_training_python(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'no such thing' >&2\nexit 3\n")
    fake.chmod(0o755)
    report = run_doctor(str(fake))
    bad = [c for c in report.checks if c.status == MISSING]
    assert bad and bad[0].name == "training python" and "MINICPM_TUI_TRAIN_PYTHON" in bad[0].fix
    assert not report.ok
    assert "not ready" in format_table(report)


def test_doctor_on_a_python_without_llamafactory(tmp_path):
    # A bare venv: the introspection still answers, each missing piece is a line with its fix.
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    report = run_doctor(str(venv / "bin" / "python"))
    missing = {c.name: c for c in report.checks if c.status == MISSING}
    assert {"torch", "llamafactory", "deepspeed", "transformers"} <= set(missing)
    assert "pip install" in missing["llamafactory"].fix
    assert training_python() == sys.executable
