"""`minicpm-tui doctor`: what the training environment has, what it lacks, and how to fix it.

The slow imports (torch, llamafactory, deepspeed) run in a subprocess (lf_introspect.py --full);
this module only turns that report, NVML's status and the host into checks.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from minicpm_tui.core.lfinfo import run_introspection, training_python
from minicpm_tui.core.nvml import Nvml

OK, WARN, MISSING = "ok", "warn", "missing"
# The chat formats MiniCPM text models use, and which LLaMA-Factory template serves each.
# (cpm/cpm3 were removed in 0.9.5; cpm4 is byte-for-byte the cpm3 format: see the knowledge notes.)
MINICPM_TEMPLATES = {"cpm": "MiniCPM 1B/2B", "cpm3": "MiniCPM3 (<= 0.9.4)", "cpm4": "MiniCPM3/4/4.1",
                     "minicpm5": "MiniCPM5 (source installs after 0.9.5)"}


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)
    llamafactory: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.status != MISSING for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks], "llamafactory": self.llamafactory,
                "python": self.raw.get("python", {}), "packages": self.raw.get("packages", {})}


def run_doctor(python: str | None = None, nvml: Nvml | None = None) -> DoctorReport:
    python = python or training_python()
    report = DoctorReport()
    add = report.checks.append
    add(Check("minicpm-tui python", OK, f"{platform.python_version()} ({sys.executable})"))
    try:
        raw = run_introspection(python, os.environ.get("MINICPM_TUI_LF_SOURCE") or None, full=True)
    except Exception as exc:  # the environment itself is broken: still a report, not a crash
        add(Check("training python", MISSING, str(exc), "set MINICPM_TUI_TRAIN_PYTHON to a python with llamafactory"))
        _host_checks(report, nvml)
        return report
    report.raw = raw
    pkgs = raw.get("packages", {})
    add(Check("training python", OK, f"{raw['python']['version']} ({raw['python']['executable']})"))

    torch = raw.get("torch", {})
    if torch.get("version"):
        if torch.get("cuda_available"):
            detail = f"{torch['version']}, CUDA {torch.get('cuda_build')}, {torch.get('device_count')} GPU(s)"
            add(Check("torch", OK, detail))
        else:
            add(Check("torch", WARN, f"{torch['version']}, CUDA not usable here (build: {torch.get('cuda_build')})",
                      "fine for planning and CPU smoke runs; training on GPUs needs a CUDA build and a driver"))
    else:
        add(Check("torch", MISSING, torch.get("error", "not installed"), "pip install torch (a CUDA build on GPU boxes)"))

    _version_check(report, "transformers", pkgs.get("transformers"), "pip install transformers")
    lf = raw.get("llamafactory", {})
    if lf.get("importable"):
        templates = lf.get("templates", [])
        have = {name: name in templates for name in MINICPM_TEMPLATES}
        report.llamafactory = {"version": lf.get("version"), "templates": templates, "minicpm_templates": have,
                               "launcher": lf.get("launcher"), "hparams_keys": sum(len(v) for v in lf.get("hparams", {}).values())}
        known = ", ".join(n for n, present in have.items() if present) or "none"
        missing = [n for n, present in have.items() if not present and n != "minicpm5"]
        detail = f"{lf.get('version')}; MiniCPM templates: {known}"
        if missing:
            detail += f" (not in this version: {', '.join(missing)}; generated run directories register them)"
        add(Check("llamafactory", OK if "templates" in lf else WARN, detail,
                  "" if "templates" in lf else f"template registry unreadable: {lf.get('templates_error')}"))
    else:
        add(Check("llamafactory", MISSING, lf.get("error", "not installed"), "pip install 'llamafactory>=0.9.2,<0.10'"))

    ds = raw.get("deepspeed", {})
    if ds.get("version"):
        builds = ds.get("cxx") and ds.get("ninja")
        detail = f"{ds['version']}; ops JIT-build: {'yes (c++ and ninja found)' if builds else 'no'}"
        if "cpu_adam_compatible" in ds:
            detail += f"; cpu_adam compatible: {'yes' if ds['cpu_adam_compatible'] else 'no'}"
        add(Check("deepspeed", OK if builds else WARN, detail,
                  "" if builds else "install a C++ compiler and ninja so DeepSpeed can build its ops (offload needs cpu_adam)"))
    else:
        add(Check("deepspeed", MISSING, ds.get("error", "not installed"), "pip install deepspeed"))

    if pkgs.get("flash-attn"):
        add(Check("flash-attn", OK, pkgs["flash-attn"]))
    else:
        add(Check("flash-attn", WARN, "not installed", "optional: SDPA is used instead (pip install flash-attn on Ampere+)"))
    for name in ("peft", "trl", "datasets", "accelerate"):
        _version_check(report, name, pkgs.get(name), f"pip install {name}")
    _host_checks(report, nvml)
    return report


def _version_check(report: DoctorReport, name: str, version: str | None, fix: str) -> None:
    if version:
        report.checks.append(Check(name, OK, version))
    else:
        report.checks.append(Check(name, MISSING, "not installed", fix))


def _host_checks(report: DoctorReport, nvml: Nvml | None) -> None:
    nv = nvml or Nvml()
    if nv.start():
        driver = nv.call("nvmlSystemGetDriverVersion")
        count = nv.device_count()
        status = OK if count else WARN
        report.checks.append(Check("nvml / driver", status, f"driver {driver}, {count} GPU(s)", nv.hint if not count else ""))
    else:
        report.checks.append(Check("nvml / driver", WARN, f"no NVIDIA GPU data ({nv.status})", nv.hint))
    nv.shutdown()
    for tool in ("torchrun", "bash"):
        path = shutil.which(tool, path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        report.checks.append(Check(tool, OK if path else WARN, path or "not on PATH",
                                   "" if path else f"{tool} is needed by the generated launch scripts"))


def format_table(report: DoctorReport) -> str:
    marks = {OK: "ok  ", WARN: "warn", MISSING: "MISS"}
    width = max(len(c.name) for c in report.checks)
    lines = []
    for c in report.checks:
        lines.append(f"[{marks[c.status]}] {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"       {'':<{width}}  fix: {c.fix}")
    lines.append("")
    lines.append("ready to train" if report.ok else "not ready: fix the MISS lines above")
    return "\n".join(lines)
