"""The hardware a plan is made for: probed through NVML, loaded from a preset, or from a saved probe.

``probe()`` never raises: a missing library or driver, a driver/library mismatch or a GPU that fails one
query each end up as a status, a hint and per-GPU ``errors``, and the rest of the report still comes
back. ``HardwareProfile.to_dict()`` is what ``minicpm-tui probe --save`` writes and what
``load_hardware()`` reads back anywhere, so a person can probe a remote box and plan on a laptop.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from minicpm_tui.assets import asset_files
from minicpm_tui.core import nvml as nvml_mod
from minicpm_tui.core.errors import UserError
from minicpm_tui.core.nvml import NA, Nvml

PROFILE_FORMAT = "minicpm-tui-hardware/1"
RECORDING_FORMAT = "nvml-recording/1"
MIB = 1024**2

# nvmlDeviceGetTopologyCommonAncestor levels -> the names `nvidia-smi topo -m` prints.
TOPOLOGY_NAMES = {0: "X", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}
TOPOLOGY_LEVELS = {v: k for k, v in TOPOLOGY_NAMES.items()}
TOPOLOGY_TEXT = {
    "X": "same board",
    "PIX": "one PCIe switch",
    "PXB": "several PCIe switches",
    "PHB": "a PCIe host bridge (CPU)",
    "NODE": "PCIe host bridges within one NUMA node",
    "SYS": "across CPU sockets (SMP interconnect)",
}
# nvmlDeviceGetP2PStatus codes.
P2P_NAMES = {0: "ok", 1: "chipset_not_supported", 2: "gpu_not_supported", 3: "topology_not_supported",
             4: "disabled_by_regkey", 5: "not_supported", 6: "unknown"}
NVLINK_TYPE_SWITCH = 2


@dataclass
class GpuInfo:
    """One GPU as NVML reports it. Values NVML could not give are ``None`` (with a line in ``errors``)."""

    index: int
    name: str | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    memory_free_mib: int | None = None
    compute_capability: tuple[int, int] | None = None
    utilization_pct: int | None = None
    processes: list[dict[str, Any]] = field(default_factory=list)  # {pid, used_mib, name}
    numa_node: int | None = None
    power_limit_w: float | None = None
    max_sm_clock_mhz: int | None = None
    nvlinks: list[dict[str, Any]] = field(default_factory=list)  # {link, peer_bus_id, to_switch}
    visible: bool = True  # inside CUDA_VISIBLE_DEVICES
    errors: list[str] = field(default_factory=list)

    @property
    def geforce(self) -> bool:
        """A consumer card: P2P over PCIe is the driver's weak spot there."""
        name = (self.name or "").lower()
        if "geforce" in name or "titan" in name:
            return True
        return any(tag in name for tag in ("rtx 20", "rtx 30", "rtx 40", "rtx 50", "gtx "))

    @property
    def bf16(self) -> bool:
        """bf16 needs Ampere (compute capability 8.0) or newer."""
        return self.compute_capability is not None and self.compute_capability[0] >= 8

    @property
    def busy(self) -> bool:
        """Other processes hold memory or the GPU is in use: it is not a free GPU."""
        return bool(self.processes) or (self.utilization_pct or 0) >= 10

    def available_mib(self) -> int | None:
        """Memory a new run can have: free memory (total minus what others already hold)."""
        if self.memory_free_mib is not None:
            return self.memory_free_mib
        return self.memory_total_mib

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["compute_capability"] = list(self.compute_capability) if self.compute_capability else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> GpuInfo:
        if not isinstance(data, dict) or not isinstance(data.get("index"), int):
            raise UserError("each entry of gpus needs an integer index", where=f"{where}: gpus")
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        cc = kwargs.get("compute_capability")
        if cc is not None:
            if isinstance(cc, str):
                major, _, minor = cc.partition(".")
                cc = (int(major), int(minor or 0))
            kwargs["compute_capability"] = (int(cc[0]), int(cc[1]))
        for key in ("memory_total_mib", "memory_used_mib", "memory_free_mib"):
            value = kwargs.get(key)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise UserError(f"{key} must be a non-negative number", where=f"{where}: gpus[{data['index']}]")
        return cls(**kwargs)


@dataclass
class Link:
    """A GPU pair: PCIe/NUMA path, NVLink count and the P2P status the driver reports."""

    a: int
    b: int
    topology: str | None = None  # X PIX PXB PHB NODE SYS (nvidia-smi topo names)
    nvlinks: int = 0
    p2p_read: str | None = None  # ok | not_supported | ... (P2P_NAMES) | None when unknown
    p2p_write: str | None = None
    p2p_nvlink: str | None = None

    @property
    def label(self) -> str:
        return f"NV{self.nvlinks}" if self.nvlinks else (self.topology or "?")

    @property
    def p2p_ok(self) -> bool:
        return self.p2p_read == "ok" and self.p2p_write == "ok"


@dataclass
class HardwareProfile:
    """Everything the planner needs to know about the machine(s). See the module docstring."""

    status: str = nvml_mod.STATUS_OK
    hint: str = ""
    detail: str = ""
    name: str = ""
    source: str = "probe"
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_version: str | None = None
    gpus: list[GpuInfo] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    infiniband: list[dict[str, Any]] = field(default_factory=list)  # {device, port, state, link_layer, rate}
    host: dict[str, Any] = field(default_factory=dict)
    nodes: int = 1
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Result of a real peer-to-peer copy test (`probe --p2p-check`): {ok, pairs: [{a, b, ok, detail}], detail}
    p2p_check: dict[str, Any] | None = None

    # -- derived facts the planner uses ------------------------------------
    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    def usable_gpus(self) -> list[GpuInfo]:
        return [g for g in self.gpus if g.visible]

    def link(self, a: int, b: int) -> Link | None:
        lo, hi = min(a, b), max(a, b)
        for link in self.links:
            if (link.a, link.b) == (lo, hi):
                return link
        return None

    def pairs(self, indices: list[int] | None = None) -> list[Link]:
        chosen = set(indices if indices is not None else [g.index for g in self.gpus])
        return [lk for lk in self.links if lk.a in chosen and lk.b in chosen]

    def active_ib_ports(self) -> list[dict[str, Any]]:
        return [p for p in self.infiniband if str(p.get("state", "")).upper().endswith("ACTIVE")]

    def summary(self) -> str:
        if not self.gpus:
            return "no NVIDIA GPU"
        names: dict[str, int] = {}
        for gpu in self.gpus:
            names[gpu.name or "unknown GPU"] = names.get(gpu.name or "unknown GPU", 0) + 1
        text = ", ".join(f"{n}x {name}" for name, n in names.items())
        if self.links and all(lk.nvlinks for lk in self.links):
            text += ", NVLink"
        if self.nodes > 1:
            text = f"{self.nodes} nodes of {text}"
        return text

    # -- (de)serialisation ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpus"] = [g.to_dict() for g in self.gpus]
        return {"format": PROFILE_FORMAT, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = "hardware profile") -> HardwareProfile:
        """Rebuild a profile from :meth:`to_dict` output; :class:`UserError` naming the field otherwise."""
        if not isinstance(data, dict) or not isinstance(data.get("gpus"), list):
            raise UserError("not a hardware profile (no 'gpus' list)", where=where,
                            fix="use a file written by `minicpm-tui probe --save FILE` or a hardware preset name")
        fmt = data.get("format", PROFILE_FORMAT)
        if fmt != PROFILE_FORMAT:
            raise UserError(f"unsupported profile format {fmt!r}", where=where, fix=f"expected {PROFILE_FORMAT}")
        gpus = [GpuInfo.from_dict(g, where) for g in data["gpus"]]
        links = []
        for i, raw in enumerate(data.get("links") or []):
            if not isinstance(raw, dict) or not isinstance(raw.get("a"), int) or not isinstance(raw.get("b"), int):
                raise UserError("each link needs integer a and b", where=f"{where}: links[{i}]")
            known = set(Link.__dataclass_fields__)
            links.append(Link(**{k: v for k, v in raw.items() if k in known}))
        nodes = data.get("nodes", 1)
        if not isinstance(nodes, int) or nodes < 1:
            raise UserError("nodes must be a whole number >= 1", where=f"{where}: nodes")
        if not isinstance(data.get("host") or {}, dict):
            raise UserError("host must be a mapping", where=f"{where}: host",
                            fix="save the profile again with `minicpm-tui probe --save FILE`, or remove host")
        known = set(cls.__dataclass_fields__) - {"gpus", "links", "nodes"}
        kwargs = {k: v for k, v in data.items() if k in known}
        if kwargs.get("host") is None:
            kwargs.pop("host", None)
        return cls(gpus=gpus, links=links, nodes=nodes, **kwargs)


# -- probing -------------------------------------------------------------------
def _text(value: Any) -> str | None:
    if value is NA or value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _bus(value: Any) -> str | None:
    """Normalise a PCI bus id to ``0000:07:00.0`` (NVML gives 8-digit domains in upper case)."""
    text = _text(value)
    if not text:
        return None
    text = text.strip().lower()
    domain, _, rest = text.partition(":")
    if rest and len(domain) > 4:
        text = f"{domain[-4:]}:{rest}"
    return text


def _cuda_version(code: Any) -> str | None:
    if not isinstance(code, int) or code <= 0:
        return None
    return f"{code // 1000}.{(code % 1000) // 10}"


def _visible_set(env: str | None, gpus: list[GpuInfo]) -> set[int] | None:
    """Indices CUDA_VISIBLE_DEVICES allows (NVML itself ignores it). None when unset."""
    if env is None:
        return None
    allowed: set[int] = set()
    for token in (t.strip() for t in env.split(",")):
        if not token:
            continue
        if token.isdigit():
            allowed.add(int(token))
            continue
        if token.startswith("-"):
            break  # CUDA stops at the first invalid entry
        for gpu in gpus:
            if gpu.uuid and gpu.uuid.lower().startswith(token.lower()):
                allowed.add(gpu.index)
    return allowed


def _probe_gpu(nv: Nvml, index: int) -> tuple[GpuInfo, Any]:
    gpu = GpuInfo(index=index)
    handle = nv.handle(index)
    if handle is NA:
        gpu.errors.append(f"cannot open GPU {index}: {nv.errors.get('nvmlDeviceGetHandleByIndex', 'unknown error')}")
        return gpu, NA

    def ask(what: str, fn: str, *args: Any) -> Any:
        nv.errors.pop(fn, None)
        value = nv.call(fn, handle, *args)
        if value is NA:
            gpu.errors.append(f"{what}: {nv.errors.get(fn, 'not available')}")
        return value

    gpu.name = _text(ask("name", "nvmlDeviceGetName"))
    gpu.uuid = _text(ask("uuid", "nvmlDeviceGetUUID"))
    pci = ask("PCI bus id", "nvmlDeviceGetPciInfo")
    if pci is not NA:
        gpu.pci_bus_id = _bus(getattr(pci, "busId", None))
    mem = ask("memory", "nvmlDeviceGetMemoryInfo")
    if mem is not NA:
        gpu.memory_total_mib = int(mem.total) // MIB
        gpu.memory_used_mib = int(mem.used) // MIB
        gpu.memory_free_mib = int(mem.free) // MIB
    cc = ask("compute capability", "nvmlDeviceGetCudaComputeCapability")
    if cc is not NA:
        gpu.compute_capability = (int(cc[0]), int(cc[1]))
    util = ask("utilisation", "nvmlDeviceGetUtilizationRates")
    if util is not NA:
        gpu.utilization_pct = int(util.gpu)
    procs = ask("processes", "nvmlDeviceGetComputeRunningProcesses")
    if procs is not NA:
        for proc in procs:
            used = getattr(proc, "usedGpuMemory", None)
            name = _text(nv.call("nvmlSystemGetProcessName", proc.pid))
            gpu.processes.append({"pid": int(proc.pid), "used_mib": int(used) // MIB if used else None,
                                  "name": name})
    # Optional facts: silence is fine (many GPUs do not report them).
    numa = nv.call("nvmlDeviceGetNumaNodeId", handle)
    gpu.numa_node = int(numa) if numa is not NA and int(numa) >= 0 else None
    limit = nv.call("nvmlDeviceGetEnforcedPowerLimit", handle)
    gpu.power_limit_w = round(int(limit) / 1000, 1) if limit is not NA else None
    clock = nv.call("nvmlDeviceGetMaxClockInfo", handle, nv.constant("NVML_CLOCK_SM", 1))
    gpu.max_sm_clock_mhz = int(clock) if clock is not NA else None
    max_links = int(nv.constant("NVML_NVLINK_MAX_LINKS", 18))
    for link in range(max_links):
        state = nv.call("nvmlDeviceGetNvLinkState", handle, link)
        if state is NA:
            if link == 0:
                break  # no NVLink on this GPU
            continue
        if int(state) != int(nv.constant("NVML_FEATURE_ENABLED", 1)):
            continue
        remote = nv.call("nvmlDeviceGetNvLinkRemotePciInfo", handle, link)
        kind = nv.call("nvmlDeviceGetNvLinkRemoteDeviceType", handle, link)
        gpu.nvlinks.append({"link": link, "peer_bus_id": _bus(getattr(remote, "busId", None)) if remote else None,
                            "to_switch": kind is not NA and int(kind) == NVLINK_TYPE_SWITCH})
    return gpu, handle


def _nvlink_count(a: GpuInfo, b: GpuInfo) -> int:
    direct = sum(1 for lk in a.nvlinks if lk["peer_bus_id"] and lk["peer_bus_id"] == b.pci_bus_id)
    if direct:
        return direct
    # NVSwitch boxes (DGX/HGX): every GPU reaches every other through the switches.
    sa = sum(1 for lk in a.nvlinks if lk["to_switch"])
    sb = sum(1 for lk in b.nvlinks if lk["to_switch"])
    return min(sa, sb)


def _probe_links(nv: Nvml, gpus: list[GpuInfo], handles: list[Any]) -> tuple[list[Link], list[str]]:
    links: list[Link] = []
    errors: list[str] = []
    # pynvml's NVML_P2P_CAPS_INDEX_READ is the tuple (0,) by a typo: pass plain ints.
    read, write, nvlink = 0, 1, 2
    for i, a in enumerate(gpus):
        for b in gpus[i + 1:]:
            ha, hb = handles[a.index], handles[b.index]
            link = Link(a=a.index, b=b.index, nvlinks=_nvlink_count(a, b))
            if ha is NA or hb is NA:
                links.append(link)
                continue
            level = nv.call("nvmlDeviceGetTopologyCommonAncestor", ha, hb)
            link.topology = TOPOLOGY_NAMES.get(int(level)) if level is not NA else None
            values = []
            for idx in (read, write, nvlink):
                status = nv.call("nvmlDeviceGetP2PStatus", ha, hb, idx)
                values.append(P2P_NAMES.get(int(status), "unknown") if status is not NA else None)
            link.p2p_read, link.p2p_write, link.p2p_nvlink = values
            if link.topology is None and link.p2p_read is None:
                errors.append(f"GPU {a.index}-{b.index}: topology and P2P status unavailable")
            links.append(link)
    return links, errors


def read_infiniband(root: str | os.PathLike[str] = "/sys/class/infiniband") -> list[dict[str, Any]]:
    """InfiniBand / RoCE ports from sysfs: device, port, state (e.g. "4: ACTIVE"), link layer, rate."""
    base = Path(root)
    ports: list[dict[str, Any]] = []
    if not base.is_dir():
        return ports

    def read(path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError:
            return None

    for dev in sorted(base.iterdir()):
        port_dir = dev / "ports"
        if not port_dir.is_dir():
            continue
        for port in sorted(port_dir.iterdir(), key=lambda p: p.name):
            ports.append({
                "device": dev.name,
                "port": int(port.name) if port.name.isdigit() else port.name,
                "state": read(port / "state"),
                "link_layer": read(port / "link_layer"),
                "rate": read(port / "rate"),
            })
    return ports


def host_info(workdir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """CPU cores, RAM (offload needs it), free disk where the run writes, CUDA_VISIBLE_DEVICES."""
    info: dict[str, Any] = {"hostname": socket.gethostname(), "cpu_cores": os.cpu_count()}
    try:
        import psutil

        vm = psutil.virtual_memory()
        info["ram_total_gib"] = round(vm.total / 1024**3, 1)
        info["ram_available_gib"] = round(vm.available / 1024**3, 1)
    except Exception:  # psutil missing or unsupported platform
        info["ram_total_gib"] = info["ram_available_gib"] = None
    path = Path(workdir or os.getcwd())
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        info["disk_free_gib"] = round(shutil.disk_usage(path).free / 1024**3, 1)
        info["disk_path"] = str(path)
    except OSError:
        info["disk_free_gib"] = None
    # IOMMU/ACS redirection is one reason PCIe P2P is reported working yet hangs.
    iommu = Path("/sys/class/iommu")
    info["iommu"] = iommu.is_dir() and any(iommu.iterdir())
    info["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    info["cuda_device_order"] = os.environ.get("CUDA_DEVICE_ORDER")
    return info


def probe(nvml: Nvml | None = None, *, workdir: str | os.PathLike[str] | None = None,
          ib_root: str | os.PathLike[str] = "/sys/class/infiniband") -> HardwareProfile:
    """Probe this machine. Never raises: failures become ``status``/``hint`` and per-GPU ``errors``."""
    nv = nvml or Nvml()
    profile = HardwareProfile(source="probe")
    try:
        profile.host = host_info(workdir)
    except Exception as exc:  # never let the host part sink the report
        profile.errors.append(f"host: {exc}")
    try:
        profile.infiniband = read_infiniband(ib_root)
    except Exception as exc:
        profile.errors.append(f"infiniband: {exc}")
    try:
        _probe_nvml(nv, profile)
    except Exception as exc:  # a bug or an exotic driver: still a report
        profile.status = nvml_mod.STATUS_ERROR
        profile.detail = f"{type(exc).__name__}: {exc}"
        profile.hint = nvml_mod.HINTS[nvml_mod.STATUS_ERROR]
    profile.name = profile.summary()
    return profile


def _probe_nvml(nv: Nvml, profile: HardwareProfile) -> None:
    nv.start()
    profile.status, profile.hint, profile.detail = nv.status, nv.hint, nv.detail
    if nv.status not in (nvml_mod.STATUS_OK, nvml_mod.STATUS_NO_GPU):
        return
    profile.driver_version = _text(nv.call("nvmlSystemGetDriverVersion"))
    profile.cuda_driver_version = _cuda_version(nv.call("nvmlSystemGetCudaDriverVersion"))
    profile.nvml_version = _text(nv.call("nvmlSystemGetNVMLVersion"))
    count = nv.device_count()
    handles: list[Any] = []
    for index in range(count):
        gpu, handle = _probe_gpu(nv, index)
        profile.gpus.append(gpu)
        handles.append(handle)
    visible = _visible_set(profile.host.get("cuda_visible_devices"), profile.gpus)
    if visible is not None:
        for gpu in profile.gpus:
            gpu.visible = gpu.index in visible
    profile.links, errors = _probe_links(nv, profile.gpus, handles)
    profile.errors.extend(errors)
    failing = [g.index for g in profile.gpus if g.errors]
    if failing:
        profile.notes.append(f"GPU {', '.join(map(str, failing))} failed some NVML queries (see errors); "
                             "check `nvidia-smi -q` and the kernel log (dmesg) for Xid errors")


def record_nvml(nvml: Nvml | None = None) -> dict[str, Any]:
    """A raw NVML recording of this machine (``nvml-recording/1``, the format tests replay with the fake)."""
    profile = probe(nvml)
    rec: dict[str, Any] = {"format": RECORDING_FORMAT, "status": profile.status,
                           "driver_version": profile.driver_version, "nvml_version": profile.nvml_version,
                           "cuda_driver_version": None, "devices": [], "p2p": {}, "topology": {}}
    if profile.cuda_driver_version:
        major, _, minor = profile.cuda_driver_version.partition(".")
        rec["cuda_driver_version"] = int(major) * 1000 + int(minor) * 10
    for g in profile.gpus:
        total = (g.memory_total_mib or 0) * MIB
        rec["devices"].append({
            "index": g.index, "name": g.name, "uuid": g.uuid,
            "pci_bus_id": g.pci_bus_id.upper().rjust(16, "0") if g.pci_bus_id else None,
            "memory": {"total": total, "used": (g.memory_used_mib or 0) * MIB,
                       "free": (g.memory_free_mib or 0) * MIB} if g.memory_total_mib is not None else None,
            "compute_capability": list(g.compute_capability) if g.compute_capability else None,
            "utilization": {"gpu": g.utilization_pct, "memory": 0} if g.utilization_pct is not None else None,
            "numa_node": g.numa_node,
            "power_limit_mw": int(g.power_limit_w * 1000) if g.power_limit_w else None,
            "max_clocks": {"sm": g.max_sm_clock_mhz} if g.max_sm_clock_mhz else None,
            "processes": [{"pid": p["pid"], "used_memory": (p["used_mib"] or 0) * MIB, "name": p.get("name")}
                          for p in g.processes],
            "nvlink": [{"link": lk["link"], "state": 1,
                        "remote_bus_id": lk["peer_bus_id"].upper().rjust(16, "0") if lk["peer_bus_id"] else None,
                        "remote_type": NVLINK_TYPE_SWITCH if lk["to_switch"] else 0} for lk in g.nvlinks],
        })
    inv = {v: k for k, v in P2P_NAMES.items()}
    for lk in profile.links:
        key = f"{lk.a}-{lk.b}"
        rec["p2p"][key] = {"read": inv.get(lk.p2p_read or ""), "write": inv.get(lk.p2p_write or ""),
                           "nvlink": inv.get(lk.p2p_nvlink or "")}
        if lk.topology in TOPOLOGY_LEVELS:
            rec["topology"][key] = TOPOLOGY_LEVELS[lk.topology]
    return rec


# -- presets and saved profiles ------------------------------------------------
def _expand_preset(data: dict[str, Any], where: str) -> HardwareProfile:
    """Expand the compact preset form (one ``gpu`` block + an ``nvidia-smi topo -m`` matrix)."""
    gpu = data.get("gpu")
    if not isinstance(gpu, dict) or not gpu.get("name") or not isinstance(gpu.get("count"), int):
        raise UserError("a hardware preset needs gpu: {name, count, memory_total_mib, compute_capability}",
                        where=where)
    count = int(gpu["count"])
    if count < 0:
        raise UserError(f"is {count}", where=f"{where}: gpu.count", fix="write the GPUs per machine, e.g. 8")
    total = _preset_number(gpu, "memory_total_mib", where, "the memory of one GPU in MiB, e.g. 81920 for 80 GB")
    used = _preset_number(gpu, "memory_used_mib", where, "the MiB already in use before training, e.g. 0",
                          default=0)
    if used > total:
        raise UserError(f"memory_used_mib ({used}) is more than memory_total_mib ({total})",
                        where=f"{where}: gpu.memory_used_mib", fix="give the MiB in use before training, e.g. 0")
    cc = gpu.get("compute_capability")
    if isinstance(cc, (str, float)) and re.fullmatch(r"\d+\.\d+", str(cc)):  # "8.0", as nvidia-smi prints it
        cc = [int(part) for part in str(cc).split(".")]
    if cc is not None and not (isinstance(cc, (list, tuple)) and len(cc) == 2
                               and all(isinstance(v, int) and not isinstance(v, bool) for v in cc)):
        raise UserError(f"compute_capability is {cc!r}", where=f"{where}: gpu.compute_capability",
                        fix="write it as [major, minor], e.g. [8, 0] for an A100 (nvidia-smi --query-gpu="
                            "compute_cap --format=csv)")
    numa = gpu.get("numa_nodes") or [0] * count
    for key, value in (("numa_nodes", numa), ("pci_bus_ids", gpu.get("pci_bus_ids") or [None] * count)):
        if not isinstance(value, list) or len(value) != count:
            raise UserError(f"{key} must list one value per GPU ({count})", where=f"{where}: gpu.{key}",
                            fix=f"give {count} values, or leave {key} out")
    if not isinstance(data.get("host") or {}, dict):
        raise UserError("host must be a mapping", where=f"{where}: host",
                        fix="write host: {cpu_cores: N, ram_total_gib: N, ram_available_gib: N, disk_free_gib: N}, "
                            "or leave it out")
    nodes = data.get("nodes", 1)
    if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
        raise UserError(f"nodes is {nodes!r}", where=f"{where}: nodes", fix="write the number of machines, e.g. 1")
    gpus = []
    for i in range(count):
        bus = (gpu.get("pci_bus_ids") or [None] * count)[i] or f"0000:{0x10 + 0x10 * i:02x}:00.0"
        gpus.append(GpuInfo(
            index=i, name=gpu["name"], uuid=f"GPU-preset-{i}", pci_bus_id=bus, memory_total_mib=total,
            memory_used_mib=used, memory_free_mib=total - used,
            compute_capability=(int(cc[0]), int(cc[1])) if cc else None, utilization_pct=0,
            numa_node=int(numa[i]), power_limit_w=gpu.get("power_limit_w"),
            max_sm_clock_mhz=gpu.get("max_sm_clock_mhz")))
    rows = [r.split() for r in str(data.get("topology") or "").strip().splitlines() if r.strip()]
    if count > 1 and (len(rows) != count or any(len(r) != count for r in rows)):
        got = f"it has {len(rows)} row(s)" if rows else "there is none"
        raise UserError(f"{count} GPUs need a {count}x{count} GPU-to-GPU topology matrix ({got})",
                        where=f"{where}: topology",
                        fix="add `topology: |` with one line per GPU of `nvidia-smi topo -m`'s GPU columns "
                            "(X on the diagonal; NV<n>, PIX, PXB, PHB, NODE or SYS), or save a probe on that "
                            "machine (`minicpm-tui probe --save FILE`)")
    p2p_default = data.get("p2p", "ok")
    p2p_pairs = data.get("p2p_pairs") or {}
    links = []
    for a in range(count):
        for b in range(a + 1, count):
            cell = rows[a][b]
            nv = int(cell[2:]) if cell.startswith("NV") else 0
            topo = data.get("pcie", {}).get(f"{a}-{b}") if nv else cell
            if cell not in TOPOLOGY_LEVELS and not nv:
                raise UserError(f"unknown topology cell {cell!r}", where=f"{where}: topology",
                                fix="use X, NV<n>, PIX, PXB, PHB, NODE or SYS")
            p2p = p2p_pairs.get(f"{a}-{b}", p2p_default)
            links.append(Link(a=a, b=b, topology=topo or ("PXB" if nv else None), nvlinks=nv, p2p_read=p2p,
                              p2p_write=p2p, p2p_nvlink="ok" if nv else "not_supported"))
    for g in gpus:
        g.nvlinks = [{"link": k, "peer_bus_id": None, "to_switch": True}
                     for k in range(max((lk.nvlinks for lk in links if g.index in (lk.a, lk.b)), default=0))]
    host = dict(data.get("host") or {})
    host.setdefault("cuda_visible_devices", None)
    ib = [dict(p) for p in data.get("infiniband") or []]
    return HardwareProfile(
        status=nvml_mod.STATUS_OK, name=str(data.get("title") or data.get("name") or where), source=where,
        driver_version=str(data.get("driver_version")) if data.get("driver_version") else None,
        cuda_driver_version=str(data.get("cuda_driver_version")) if data.get("cuda_driver_version") else None,
        gpus=gpus, links=links, infiniband=ib, host=host, nodes=nodes,
        notes=list(data.get("notes") or []))


def _preset_number(block: dict[str, Any], key: str, where: str, what: str, default: int | None = None) -> int:
    """A whole, non-negative number of a preset's ``gpu`` block; a UserError naming the key otherwise."""
    value = block.get(key, default)
    if value is None:
        raise UserError("is missing", where=f"{where}: gpu.{key}", fix=f"add it: {what}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise UserError(f"is {value!r}, not a whole number of MiB", where=f"{where}: gpu.{key}",
                        fix=f"write {what}")
    return int(value)


def hardware_presets() -> dict[str, Path]:
    return asset_files("presets", "hardware")


def _load_file(path: Path, where: str) -> HardwareProfile:
    import yaml  # here, not at the top: probing this machine (the wizard's first load) needs no YAML

    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read it: {str(exc).splitlines()[0]}", where=where,
                        fix="give a preset name or a file written by `minicpm-tui probe --save`") from None
    if isinstance(data, dict) and "gpu" in data and "gpus" not in data:
        return _expand_preset(data, where)
    if isinstance(data, dict) and data.get("format") == RECORDING_FORMAT:
        raise UserError("this is a raw NVML recording, not a hardware profile", where=where,
                        fix="use `minicpm-tui probe --save FILE` to write a profile")
    profile = HardwareProfile.from_dict(data, where)
    profile.source = profile.source if profile.source not in ("", "probe") else where
    return profile


def load_hardware(preset_or_path: str | os.PathLike[str]) -> HardwareProfile:
    """A preset name (``presets/hardware/<name>.yaml|json``) or a path to a saved profile / preset file."""
    text = str(preset_or_path).strip()
    path = Path(text).expanduser()
    if path.is_file():
        return _load_file(path, str(path))
    presets = hardware_presets()
    key = text.lower().replace("_", "-")
    if key in presets:
        return _load_file(presets[key], f"preset:{key}")
    if path.is_dir():
        raise UserError(f"{text!r} is a folder, not a hardware preset or a saved probe", where="--hardware",
                        fix="give the .json file that `minicpm-tui probe --save FILE` wrote, or a preset name",
                        fix_tui="type the path of the .json file that `minicpm-tui probe --save FILE` wrote "
                                "(not its folder), or pick a preset")
    if path.suffix in (".json", ".yaml", ".yml") or os.sep in text:
        raise UserError(f"no such file {text!r}", where="--hardware",
                        fix="give a saved probe (`minicpm-tui probe --save FILE`) or a preset name",
                        fix_tui="check the path, or pick a preset")
    raise UserError(f"unknown hardware preset {text!r}", where="--hardware",
                    fix=f"use one of: {', '.join(presets)}, or a file from `minicpm-tui probe --save`",
                    fix_tui="pick a preset from the list, or type the path of a saved probe (.json)")
