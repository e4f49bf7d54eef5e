"""`doctor` against the real installed training stack (subprocess imports: slow, so integration)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from minicpm_tui.core.doctor import MISSING, format_table, run_doctor
from minicpm_tui.core.lfinfo import training_python

DEMO_SFT = Path(__file__).resolve().parent.parent / "data" / "demo_sft.json"


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


def _unusable_pythons(tmp_path):
    """(name, path, words of the reason) for training Pythons that cannot be run."""
    folder = tmp_path / "a-folder"
    folder.mkdir()
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\nexit 0\n")
    no_program = tmp_path / "no-program"
    no_program.write_bytes(b"\x00\x01 not a program\n")
    no_program.chmod(0o755)
    return [("missing", str(tmp_path / "no-such-env" / "python"), "not found"),
            ("folder", str(folder), "is a folder"),
            ("not executable", str(plain), "is not executable"),
            ("not a program", str(no_program), "cannot be started"),
            ("bare name", "no-such-python-anywhere", "not found on PATH")]


def test_an_unusable_training_python_is_one_error_everywhere(tmp_path, monkeypatch):
    # The introspection, the preflight and the tiny-model build each wrote their own "not found" (different
    # `where` and fix), and a folder or a non-executable file was a PermissionError traceback.
    from minicpm_tui.core.datasets import validate_file
    from minicpm_tui.core.datasets.preview import preview_records
    from minicpm_tui.core.datasets.stats import token_stats
    from minicpm_tui.core.errors import UserError
    from minicpm_tui.core.lfinfo import lf_info, run_introspection
    from minicpm_tui.core.preflight import _lf_check
    from minicpm_tui.core.tinymodel import tiny_model_dir

    # The dataset preview and token counts start the training Python too (the tokenizer lives there).
    report = validate_file(DEMO_SFT, token_sample=4)
    assert report.ok and report.token_sample
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    monkeypatch.delenv("TRAIN_PYTHON", raising=False)
    monkeypatch.delenv("MINICPM_TUI_TRAIN_PYTHON", raising=False)
    # lf_info() fingerprints the environment before it introspects: that raw subprocess call turned
    # `MINICPM_TUI_TRAIN_PYTHON=/missing/python minicpm-tui generate ...` into "/missing/python: no such file".
    sites = {"lf_info": lambda py: lf_info(py, refresh=True),
             "introspection": lambda py: run_introspection(py, timeout=30),
             "preflight": lambda py: _lf_check([], py, timeout=30),
             "tiny model": lambda py: tiny_model_dir("cpm3", root=tmp_path / "models", python=py),
             "preview": lambda py: preview_records(report, tokenizer, "cpm4", python=py, timeout=30),
             "token stats": lambda py: token_stats(report, tokenizer, python=py, timeout=30)}
    for name, python, reason in _unusable_pythons(tmp_path):
        lines = set()
        for site, call in sites.items():
            with pytest.raises(UserError) as caught:
                call(python)
            lines.add(caught.value.one_line())
            assert caught.value.where is None, (name, site)
        assert len(lines) == 1, (name, lines)
        line = lines.pop()
        assert f"training Python {python!r} {reason}" in line and "MINICPM_TUI_TRAIN_PYTHON" in line, line
    # The variable that chose it is named.
    missing = str(tmp_path / "gone" / "python")
    monkeypatch.setenv("TRAIN_PYTHON", missing)
    for call in sites.values():
        with pytest.raises(UserError) as caught:
            call(missing)
        assert caught.value.where == "TRAIN_PYTHON"
    monkeypatch.delenv("TRAIN_PYTHON")
    monkeypatch.setenv("MINICPM_TUI_TRAIN_PYTHON", missing)
    with pytest.raises(UserError) as caught:
        run_introspection()
    assert caught.value.where == "MINICPM_TUI_TRAIN_PYTHON"


def test_a_recorded_training_python_that_became_a_folder_is_not_used(tmp_path, monkeypatch):
    import sys

    from minicpm_tui.core.lfinfo import run_dir_python

    monkeypatch.delenv("TRAIN_PYTHON", raising=False)
    monkeypatch.delenv("MINICPM_TUI_TRAIN_PYTHON", raising=False)
    assert run_dir_python({"resolved": {"training_python": str(tmp_path)}}) == sys.executable
