"""The CLI front: version, help for every subcommand, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from minicpm_tui.cli import SUBCOMMANDS, main


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "minicpm_tui", *args], capture_output=True, text=True, timeout=timeout)


def test_version():
    proc = _cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("minicpm-tui ")


def test_top_help_lists_every_subcommand():
    proc = _cli("--help")
    assert proc.returncode == 0
    for name in ["probe", "plan", "validate", "register", "generate", "run", "runs", "monitor", "stop", "doctor", "smoke"]:
        assert name in SUBCOMMANDS
        assert f"  {name} " in proc.stdout


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"minicpm-tui {name}" in out


def test_unknown_subcommand_is_one_line_with_a_hint():
    proc = _cli("plna")
    assert proc.returncode == 2
    assert "unknown subcommand 'plna'" in proc.stderr
    assert "plan" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_user_error_is_one_line(capsys, monkeypatch):
    from minicpm_tui.commands import doctor
    from minicpm_tui.core.errors import UserError

    def boom(args):
        raise UserError("no such file", where="data/x.json", fix="check the path")

    monkeypatch.setattr(doctor, "run", boom)
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "minicpm-tui: error: data/x.json: no such file; check the path"
