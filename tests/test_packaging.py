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


def _tracked(*tops: str) -> list[str]:
    proc = subprocess.run(["git", "ls-files", "-z", *tops], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [name for name in proc.stdout.split("\0") if name]


def test_wheel_ships_every_tracked_package_file(wheel):
    """Every file of the package, the presets and the demo data that git tracks is in the wheel: a resource
    script, a style sheet or a preset left out of package-data would only fail on a user's install."""
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {name if name.startswith("minicpm_tui/") else f"minicpm_tui/{name}"
                for name in _tracked("minicpm_tui", "presets", "data")}
    assert expected, "git tracks no package files"
    missing = sorted(expected - names)
    assert not missing, f"tracked but not in the wheel (add them to [tool.setuptools.package-data]): {missing}"
    for top in ("minicpm_tui/core/_resources/", "minicpm_tui/tui/styles/", "minicpm_tui/presets/",
                "minicpm_tui/data/"):
        assert any(n.startswith(top) for n in names), f"{top} is not in the wheel"


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
