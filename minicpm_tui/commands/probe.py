"""`minicpm-tui probe`: GPUs, topology, InfiniBand and host, through NVML. Always exits 0 when it can report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from minicpm_tui.core.errors import UserError

if TYPE_CHECKING:
    from minicpm_tui.core.probe import HardwareProfile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the profile as JSON (what --save writes)")
    parser.add_argument("--save", metavar="FILE", help="save the profile; plan elsewhere with `plan --hardware FILE`")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --save / --record-nvml file")
    parser.add_argument("--p2p-check", action="store_true",
                        help="run a real GPU-to-GPU copy test under a timeout (proves or disproves PCIe P2P)")
    parser.add_argument("--record-nvml", metavar="FILE",
                        help="write a raw NVML recording (test fixture format replayed by tests/fake_nvml.py)")
    parser.add_argument("--workdir", metavar="DIR", help="where the run will write (for the free-disk figure)")


def _write(path: str, text: str, force: bool) -> None:
    from minicpm_tui.core.atomic import write_atomic

    target = Path(path).expanduser()
    if target.exists() and not force:
        raise UserError(f"{target} exists", where="--save", fix="pass --force to overwrite it or pick another name")
    write_atomic(target, text)


def render(profile: HardwareProfile) -> str:
    """The human report."""
    from minicpm_tui.core.probe import TOPOLOGY_TEXT, hardware_presets

    lines: list[str] = []
    if not profile.gpus:
        lines.append(f"No NVIDIA GPU ({profile.status}): {profile.hint}")
        if profile.detail:
            lines.append(f"  detail: {profile.detail}")
        lines.append("Planning mode: plan for another machine with `minicpm-tui plan --hardware PRESET|FILE`.")
        lines.append("  presets: " + ", ".join(hardware_presets()))
        lines.append("  or run `minicpm-tui probe --save box.json` on the GPU machine and copy box.json here.")
    else:
        lines.append(f"{profile.summary()}  (driver {profile.driver_version or '?'}, "
                     f"CUDA {profile.cuda_driver_version or '?'})")
        for g in profile.gpus:
            cc = ".".join(map(str, g.compute_capability)) if g.compute_capability else "?"
            mem = (f"{(g.memory_used_mib or 0) / 1024:.1f}/{(g.memory_total_mib or 0) / 1024:.1f} GiB used"
                   if g.memory_total_mib is not None else "memory ?")
            util = f"{g.utilization_pct}%" if g.utilization_pct is not None else "?"
            flag = "" if g.visible else "  [hidden by CUDA_VISIBLE_DEVICES]"
            lines.append(f"  GPU {g.index}: {g.name or '?'}  cc {cc}  {mem}  util {util}  bus {g.pci_bus_id or '?'}{flag}")
            for p in g.processes:
                used = f"{p['used_mib'] / 1024:.1f} GiB" if p.get("used_mib") else "?"
                lines.append(f"      busy: pid {p['pid']} {p.get('name') or ''} holds {used}")
            for err in g.errors:
                lines.append(f"      ! {err}")
        if profile.links:
            n = len(profile.gpus)
            lines.append("  topology (NV# = NVLink count; P2P r/w as the driver reports):")
            header = "        " + "".join(f"GPU{j:<5}" for j in range(n))
            lines.append(header)
            for i in range(n):
                row = []
                for j in range(n):
                    lk = profile.link(i, j) if i != j else None
                    row.append("X" if i == j else (lk.label if lk else "?"))
                lines.append(f"  GPU{i:<3} " + "".join(f"{c:<8}" for c in row))
            for lk in profile.links:
                if lk.p2p_read and lk.p2p_read != "ok" or lk.p2p_write and lk.p2p_write != "ok":
                    lines.append(f"  P2P {lk.a}-{lk.b}: read {lk.p2p_read}, write {lk.p2p_write}")
            legend = sorted({lk.topology for lk in profile.links if lk.topology and not lk.nvlinks})
            for key in legend:
                lines.append(f"    {key}: {TOPOLOGY_TEXT.get(key, key)}")
    if profile.infiniband:
        for port in profile.infiniband:
            lines.append(f"  IB {port['device']} port {port['port']}: {port.get('state')} "
                         f"{port.get('link_layer') or ''} {port.get('rate') or ''}".rstrip())
    else:
        lines.append("  InfiniBand/RoCE: none")
    h = profile.host
    lines.append(f"  host: {h.get('cpu_cores')} CPU threads, RAM {h.get('ram_available_gib')}/{h.get('ram_total_gib')} "
                 f"GiB free, disk {h.get('disk_free_gib')} GiB free, CUDA_VISIBLE_DEVICES="
                 f"{h.get('cuda_visible_devices') if h.get('cuda_visible_devices') is not None else '(unset)'}")
    if profile.p2p_check is not None:
        lines.append(f"  P2P check: {profile.p2p_check.get('status')} - {profile.p2p_check.get('detail')}")
    for note in profile.notes:
        lines.append(f"  note: {note}")
    for err in profile.errors:
        lines.append(f"  ! {err}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from minicpm_tui.core.probe import probe, record_nvml

    if args.record_nvml:
        _write(args.record_nvml, json.dumps(record_nvml(), indent=2) + "\n", args.force)
    profile = probe(workdir=args.workdir)
    if args.p2p_check:
        if len(profile.gpus) < 2:
            profile.notes.append("--p2p-check needs two or more GPUs; skipped")
        else:
            from minicpm_tui.core.p2p import run_p2p_check

            profile.p2p_check = run_p2p_check()
    if args.save:
        _write(args.save, profile.to_json(), args.force)
    if args.json:
        print(profile.to_json(), end="")
    else:
        print(render(profile))
        if args.save and profile.gpus:
            print(f"saved to {args.save}: plan with `minicpm-tui plan --hardware {args.save}`")
        elif args.save:
            # `plan --hardware FILE` refuses a profile without GPUs: do not send the person there.
            print(f"saved to {args.save}, but it records no GPU ({profile.status}): `plan --hardware` cannot "
                  "use it; run `minicpm-tui probe --save FILE` on the GPU machine (with its NVIDIA driver "
                  "working), or plan with a preset")
    return 0
