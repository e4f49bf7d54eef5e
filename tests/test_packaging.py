"""A normal (non-editable) install must carry presets/ and data/ and find them through assets."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("minicpm_tui-*.whl")
    return path


def test_wheel_ships_presets_data_and_styles(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for top in ("presets", "data"):
        assert any(n.startswith(f"minicpm_tui/{top}/") for n in names), f"{top}/ is not in the wheel"
    assert any(n.startswith("minicpm_tui/core/_resources/") and n.endswith(".py") for n in names)
    for path in (ROOT / "presets").rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".json", ".md"):
            assert f"minicpm_tui/presets/{path.relative_to(ROOT / 'presets').as_posix()}" in names
    for path in (ROOT / "minicpm_tui" / "tui" / "styles").glob("*.tcss"):
        assert f"minicpm_tui/tui/styles/{path.name}" in names


def test_installed_copy_resolves_assets_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    code = ("import minicpm_tui, minicpm_tui.assets as a; "
            "print(minicpm_tui.__file__); print(a.asset_path('presets')); print(a.asset_path('data'))")
    # Run from an unrelated folder with only the installed copy on the path.
    proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    module_file, presets, data = proc.stdout.split()
    for path in (module_file, presets, data):
        assert path.startswith(str(target)), path
    assert Path(presets).is_dir() and Path(data).is_dir()
