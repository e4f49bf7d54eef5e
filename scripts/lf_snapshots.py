"""Write the shipped LLaMA-Factory release snapshots (presets/lf_releases/<version>.json) again.

    python scripts/lf_snapshots.py [--check] [VERSION ...]      (default: every release found)

Each snapshot is the introspection report (minicpm_tui/core/_resources/lf_introspect.py) of a real
environment of that release, without what only held on the machine it ran on (core.lftarget.snapshot_of).
The environments: this Python's own LLaMA-Factory (0.9.5 in the test venv) and $VENV/lfcompat/<version>
(built by scripts/lf_compat_envs.sh), as tests/test_lf_versions.py finds them. `--check` writes nothing
and exits 1 when a committed snapshot differs from its environment (tests/test_lf_target.py does the same).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minicpm_tui.core.atomic import write_atomic  # noqa: E402
from minicpm_tui.core.lfinfo import installed_lf_version, run_introspection  # noqa: E402
from minicpm_tui.core.lftarget import releases_dir, snapshot_of  # noqa: E402


def environments() -> dict[str, str]:
    """release -> the python of an environment that has it."""
    found: dict[str, str] = {}
    compat = Path(sys.prefix) / "lfcompat"
    for python in sorted(compat.glob("*/bin/python")):
        found[python.parent.parent.name] = str(python)
    here = installed_lf_version(sys.executable)
    if here:
        found[here] = sys.executable
    return found


def snapshot_text(python: str) -> str:
    return json.dumps(snapshot_of(run_introspection(python)), indent=1, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", help="releases to write (default: every environment found)")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    envs = environments()
    wanted = args.versions or sorted(envs)
    stale = 0
    for version in wanted:
        if version not in envs:
            print(f"{version}: no environment (build it with scripts/lf_compat_envs.sh {version})", file=sys.stderr)
            return 2
        text = snapshot_text(envs[version])
        release = json.loads(text)["snapshot"]["release"]
        if release != version:
            print(f"{version}: {envs[version]} has LLaMA-Factory {release}", file=sys.stderr)
            return 2
        path = releases_dir() / f"{version}.json"
        if args.check:
            same = path.is_file() and path.read_text(encoding="utf-8") == text
            stale += not same
            print(f"{version}: {'up to date' if same else 'STALE: run python scripts/lf_snapshots.py ' + version}")
        else:
            write_atomic(path, text)
            print(f"{version}: wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
