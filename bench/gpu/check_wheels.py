"""Check that the carried wheels, installed with --target SITE, form a complete set in THIS Python.

    PYTHONPATH=SITE python bench/gpu/check_wheels.py --site SITE [--json]

For every distribution installed in SITE, every requirement (extras skipped, markers evaluated for
this interpreter) must be met by a distribution in SITE, or by one installed in this environment whose
name the device image is known to hold (bench/gpu/device-packages.txt), or be on the "left out on
purpose" list of bench/gpu/wheels.txt. Then it imports the modules a text-only LLaMA-Factory run
imports and checks that each carried package is the copy from SITE (not the image's own version).

Runs here in the rehearsal (a Python 3.12 venv standing in for the device) and first thing on the
device, so a missing wheel is found here and, failing that, in seconds there. Exit 0 ok, 1 problems.
Stdlib + ``packaging`` only (both Pythons have it).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

HERE = Path(__file__).resolve().parent

# llamafactory lists these, a text-only `llamafactory train` never imports them (wheels.txt says why).
LEFT_OUT = {canonicalize_name(n) for n in (
    "gradio", "fastapi", "uvicorn", "sse-starlette", "modelscope", "hf-transfer", "av", "tyro", "fire",
    "torchdata",
)}

# What a text-only SFT/DPO/KTO run with LoRA/full and DeepSpeed imports (checked by importing it).
TRAIN_PATH_MODULES = (
    "llamafactory.train.tuner", "llamafactory.train.sft.workflow", "llamafactory.train.dpo.workflow",
    "llamafactory.train.kto.workflow", "llamafactory.launcher", "deepspeed", "peft", "trl", "datasets",
    "transformers", "accelerate",
)


def device_names() -> set[str]:
    lines = (HERE / "device-packages.txt").read_text(encoding="utf-8").splitlines()
    return {canonicalize_name(x.strip()) for x in lines if x.strip() and not x.startswith("#")}


def dists_in(path: Path) -> dict[str, md.Distribution]:
    return {canonicalize_name(d.metadata["Name"]): d for d in md.distributions(path=[str(path)])}


def env_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def check(site: Path) -> dict:
    carried = dists_in(site)
    image = device_names()
    marker_env = default_environment()
    problems: list[str] = []
    notes: list[str] = []
    for name, dist in sorted(carried.items()):
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate({**marker_env, "extra": ""}):
                continue
            dep = canonicalize_name(req.name)
            if dep in LEFT_OUT:
                continue
            if dep in carried:
                have, where = carried[dep].version, "carried"
            elif dep in image:
                have, where = env_version(req.name), "image"
                if have is None:
                    # Known to be in the image, absent from this stand-in: only the device can say.
                    notes.append(f"{name} needs {req} (in the device image; not installed here)")
                    continue
            else:
                problems.append(f"{name} {dist.version} needs {req}: neither carried nor in the device image"
                                f" -> add it to bench/gpu/wheels.txt")
                continue
            if req.specifier and not req.specifier.contains(Version(have), prereleases=True):
                problems.append(f"{name} {dist.version} needs {req}, {where} has {have}"
                                f" -> carry a matching {req.name} in bench/gpu/wheels.txt")
    # Two versions of one package in SITE stop the offline install; pip --target would have failed, but
    # a hand-copied folder would not.
    seen: dict[str, int] = {}
    for d in md.distributions(path=[str(site)]):
        key = canonicalize_name(d.metadata["Name"])
        seen[key] = seen.get(key, 0) + 1
    problems += [f"{k} is installed {n} times in {site}" for k, n in seen.items() if n > 1]

    imports: dict[str, str] = {}
    for module in TRAIN_PATH_MODULES:
        try:
            mod = importlib.import_module(module)
            imports[module] = str(getattr(mod, "__file__", "") or "")
        except Exception as exc:  # report every failure, not just the first
            problems.append(f"import {module} failed: {type(exc).__name__}: {exc}")
    site_str = str(site.resolve())
    for name, dist in carried.items():
        top = (dist.read_text("top_level.txt") or "").split()
        for module in top[:1]:
            mod = sys.modules.get(module)
            path = str(getattr(mod, "__file__", "") or "")
            if mod is not None and path and not str(Path(path).resolve()).startswith(site_str):
                problems.append(f"{module} was imported from {path}, not from the carried {name} in {site}"
                                " -> put SITE first on PYTHONPATH")
    versions = {n: d.version for n, d in sorted(carried.items())}
    for name in ("torch", "numpy", "huggingface-hub", "safetensors", "pyarrow", "pandas"):
        versions.setdefault(name + " (image)", env_version(name) or "missing")
    return {"ok": not problems, "python": sys.version.split()[0], "site": str(site), "versions": versions,
            "problems": problems, "notes": notes, "imports": imports}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", required=True, type=Path, help="the --target folder the wheels went into")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = parser.parse_args()
    if not args.site.is_dir():
        print(f"check_wheels: {args.site}: no such folder (install the wheels with --target first)")
        return 1
    report = check(args.site)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"check_wheels: Python {report['python']}, {len(report['versions'])} packages")
        for name, version in report["versions"].items():
            print(f"  {name} {version}")
        for note in report["notes"]:
            print(f"  note: {note}")
        for problem in report["problems"]:
            print(f"  PROBLEM: {problem}")
        print("check_wheels: " + ("OK" if report["ok"] else f"{len(report['problems'])} problem(s)"))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
