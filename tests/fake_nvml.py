"""A fake ``pynvml`` module for ``Nvml(module=FakePynvml(...))``: the only fake in the test suite.

It mimics the call surface of nvidia-ml-py (functions named ``nvml*``, ``NVMLError`` with ``.value``,
the ``NVML_*`` constants, struct-like return objects, ``pciInfo.busId`` as bytes) and nothing above it,
so everything from :class:`minicpm_tui.core.nvml.Nvml` upwards runs for real.

Data comes from a *recording*: a plain dict (JSON-able) in the format that
``minicpm_tui.core.probe.record_nvml`` writes on a real GPU box (``minicpm-tui probe --record-nvml FILE``)::

    {"format": "nvml-recording/1",
     "driver_version": "550.54.15", "cuda_driver_version": 12040, "nvml_version": "12.550.54.15",
     "devices": [{"name": ..., "uuid": ..., "pci_bus_id": "00000000:07:00.0",
                  "memory": {"total": B, "used": B, "free": B}, "compute_capability": [8, 0],
                  "utilization": {"gpu": 0, "memory": 0}, "temperature": 31, "power_mw": 61000,
                  "power_limit_mw": 400000, "clocks": {"graphics": 210, "sm": 210, "mem": 1593},
                  "max_clocks": {...}, "numa_node": 0, "brand": 2,
                  "processes": [{"pid": 4242, "used_memory": B}],
                  "nvlink": [{"link": 0, "state": 1, "remote_bus_id": "00000000:0F:00.0",
                              "remote_type": 0}]}],   # remote_type 2: an NVSwitch
     "p2p": {"0-1": {"read": 0, "write": 0, "nvlink": 0}},   # NVML_P2P_STATUS_* codes
     "topology": {"0-1": 10}}                                   # NVML_TOPOLOGY_* levels

A device key that is missing (or ``None``) answers NVML_ERROR_NOT_SUPPORTED, as a real driver does.

Failure simulation:
- ``FakePynvml.no_library()``, ``.no_driver()``, ``.mismatch()``: ``nvmlInit`` raises the real code.
- ``fake.fail(index, "nvmlDeviceGetTemperature", code)``: one GPU errors on one query (``index=None``: all).
- ``fake.lose_gpu(index)``: from now on every query on that GPU raises NVML_ERROR_GPU_IS_LOST.
- Recordings are live dicts: ``fake.device(0)["utilization"]["gpu"] = 97`` changes the next sample.
- ``fake.calls`` counts calls per function name (for samplers that should batch or cache).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

# Same numeric values as nvml.h / pynvml.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_NVLINK_MAX_LINKS = 18
NVML_NVLINK_DEVICE_TYPE_GPU = 0
NVML_NVLINK_DEVICE_TYPE_IBMNPU = 1
NVML_NVLINK_DEVICE_TYPE_SWITCH = 2

NVML_TOPOLOGY_INTERNAL = 0
NVML_TOPOLOGY_SINGLE = 10
NVML_TOPOLOGY_MULTIPLE = 20
NVML_TOPOLOGY_HOSTBRIDGE = 30
NVML_TOPOLOGY_NODE = 40
NVML_TOPOLOGY_SYSTEM = 50

# pynvml really has the tuple ``(0,)`` for READ (a stray comma); keep the fake honest about that.
NVML_P2P_CAPS_INDEX_READ = (0,)
NVML_P2P_CAPS_INDEX_WRITE = 1
NVML_P2P_CAPS_INDEX_NVLINK = 2
NVML_P2P_STATUS_OK = 0
NVML_P2P_STATUS_CHIPSET_NOT_SUPPORTED = 1
NVML_P2P_STATUS_GPU_NOT_SUPPORTED = 2
NVML_P2P_STATUS_IOH_TOPOLOGY_NOT_SUPPORTED = 3
NVML_P2P_STATUS_DISABLED_BY_REGKEY = 4
NVML_P2P_STATUS_NOT_SUPPORTED = 5
NVML_P2P_STATUS_UNKNOWN = 6

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """Like pynvml.NVMLError: carries the NVML return code in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


class _Struct:
    """Attribute bag standing in for pynvml's ctypes structures."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"_Struct({self.__dict__})"


class FakeHandle:
    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<FakeHandle {self.index}>"


def _pair_key(a: int, b: int) -> str:
    return f"{min(a, b)}-{max(a, b)}"


class FakePynvml:
    """An object that quacks like the ``pynvml`` module. See the module docstring."""

    NVMLError = NVMLError

    def __init__(self, recording: dict[str, Any] | None = None, *, init_error: int | None = None) -> None:
        self.recording: dict[str, Any] = copy.deepcopy(recording) if recording else empty_recording()
        self.init_error = init_error
        self.initialised = False
        self.lost: set[int] = set()
        self.failures: dict[tuple[int | None, str], int] = {}
        self.calls: Counter[str] = Counter()
        # Expose the constants as attributes like the real module does.
        for name, value in globals().items():
            if name.startswith("NVML_"):
                setattr(self, name, value)

    # -- constructors ----------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> FakePynvml:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def no_library(cls) -> FakePynvml:
        """pynvml imports but libnvidia-ml.so is absent (what a CPU box with nvidia-ml-py looks like)."""
        return cls(init_error=NVML_ERROR_LIBRARY_NOT_FOUND)

    @classmethod
    def no_driver(cls) -> FakePynvml:
        return cls(init_error=NVML_ERROR_DRIVER_NOT_LOADED)

    @classmethod
    def mismatch(cls) -> FakePynvml:
        return cls(init_error=NVML_ERROR_LIB_RM_VERSION_MISMATCH)

    # -- simulation controls ----------------------------------------------
    def device(self, index: int) -> dict[str, Any]:
        return self.recording["devices"][index]

    def fail(self, index: int | None, function: str, code: int = NVML_ERROR_UNKNOWN) -> None:
        """Make ``function`` raise ``code`` for GPU ``index`` (None: for every GPU / a system call)."""
        self.failures[(index, function)] = code

    def lose_gpu(self, index: int) -> None:
        """The GPU falls off the bus ("GPU is lost", Xid 79): every later query on it fails."""
        self.lost.add(index)

    # -- internals -------------------------------------------------------
    def _enter(self, function: str, handle: Any = "system") -> dict[str, Any] | None:
        self.calls[function] += 1
        if not self.initialised and function != "nvmlInit":
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if handle != "system" and not isinstance(handle, FakeHandle):
            # e.g. a caller passing NA after a failed handle lookup
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        index = handle.index if isinstance(handle, FakeHandle) else None
        for key in ((index, function), (None, function)):
            if key in self.failures:
                raise NVMLError(self.failures[key])
        if index is None:
            return None
        if index in self.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return self.device(index)

    @staticmethod
    def _get(dev: dict[str, Any], key: str) -> Any:
        value = dev.get(key)
        if value is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return value

    # -- system ----------------------------------------------------------
    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised = True

    nvmlInitWithFlags = nvmlInit

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised = False

    def nvmlErrorString(self, code: int) -> str:
        return _MESSAGES.get(code, f"NVML Error with code {code}")

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self._get(self.recording, "driver_version")

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return int(self._get(self.recording, "cuda_driver_version"))

    nvmlSystemGetCudaDriverVersion_v2 = nvmlSystemGetCudaDriverVersion

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._enter("nvmlSystemGetNVMLVersion")
        return self._get(self.recording, "nvml_version")

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        self._enter("nvmlSystemGetProcessName")
        for dev in self.recording["devices"]:
            for proc in dev.get("processes") or []:
                if proc.get("pid") == pid and proc.get("name"):
                    return proc["name"]
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    # -- devices ---------------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.recording["devices"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.recording["devices"]):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if index in self.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if (index, "nvmlDeviceGetHandleByIndex") in self.failures:
            raise NVMLError(self.failures[(index, "nvmlDeviceGetHandleByIndex")])
        return FakeHandle(index)

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        return self._get(self._enter("nvmlDeviceGetName", handle), "name")

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        return self._get(self._enter("nvmlDeviceGetUUID", handle), "uuid")

    def nvmlDeviceGetBrand(self, handle: FakeHandle) -> int:
        return self._get(self._enter("nvmlDeviceGetBrand", handle), "brand")

    def nvmlDeviceGetPciInfo(self, handle: FakeHandle) -> _Struct:
        bus = self._get(self._enter("nvmlDeviceGetPciInfo", handle), "pci_bus_id")
        # ctypes char arrays come back as bytes in the real module.
        return _Struct(busId=bus.encode(), busIdLegacy=bus[-12:].encode())

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: Any = None) -> _Struct:
        mem = self._get(self._enter("nvmlDeviceGetMemoryInfo", handle), "memory")
        return _Struct(total=int(mem["total"]), used=int(mem["used"]), free=int(mem["free"]))

    def nvmlDeviceGetCudaComputeCapability(self, handle: FakeHandle) -> tuple[int, int]:
        cc = self._get(self._enter("nvmlDeviceGetCudaComputeCapability", handle), "compute_capability")
        return int(cc[0]), int(cc[1])

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> _Struct:
        util = self._get(self._enter("nvmlDeviceGetUtilizationRates", handle), "utilization")
        return _Struct(gpu=int(util["gpu"]), memory=int(util.get("memory", 0)))

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        return int(self._get(self._enter("nvmlDeviceGetTemperature", handle), "temperature"))

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        return int(self._get(self._enter("nvmlDeviceGetPowerUsage", handle), "power_mw"))

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeHandle) -> int:
        return int(self._get(self._enter("nvmlDeviceGetEnforcedPowerLimit", handle), "power_limit_mw"))

    nvmlDeviceGetPowerManagementLimit = nvmlDeviceGetEnforcedPowerLimit

    def _clock(self, function: str, key: str, handle: FakeHandle, kind: int) -> int:
        clocks = self._get(self._enter(function, handle), key)
        name = {NVML_CLOCK_GRAPHICS: "graphics", NVML_CLOCK_SM: "sm", NVML_CLOCK_MEM: "mem"}.get(kind)
        if name is None or clocks.get(name) is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(clocks[name])

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, kind: int) -> int:
        return self._clock("nvmlDeviceGetClockInfo", "clocks", handle, kind)

    def nvmlDeviceGetMaxClockInfo(self, handle: FakeHandle, kind: int) -> int:
        return self._clock("nvmlDeviceGetMaxClockInfo", "max_clocks", handle, kind)

    def nvmlDeviceGetNumaNodeId(self, handle: FakeHandle) -> int:
        return int(self._get(self._enter("nvmlDeviceGetNumaNodeId", handle), "numa_node"))

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeHandle) -> list[_Struct]:
        dev = self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        assert dev is not None
        return [
            _Struct(pid=int(p["pid"]), usedGpuMemory=p.get("used_memory"), gpuInstanceId=0xFFFFFFFF,
                    computeInstanceId=0xFFFFFFFF)
            for p in dev.get("processes") or []
        ]

    nvmlDeviceGetComputeRunningProcesses_v3 = nvmlDeviceGetComputeRunningProcesses

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeHandle) -> list[_Struct]:
        self._enter("nvmlDeviceGetGraphicsRunningProcesses", handle)
        return []

    # -- topology --------------------------------------------------------
    def nvmlDeviceGetNvLinkState(self, handle: FakeHandle, link: int) -> int:
        dev = self._enter("nvmlDeviceGetNvLinkState", handle)
        assert dev is not None
        for entry in dev.get("nvlink") or []:
            if entry["link"] == link:
                return int(entry.get("state", NVML_FEATURE_ENABLED))
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED if not dev.get("nvlink") else NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle: FakeHandle, link: int) -> _Struct:
        dev = self._enter("nvmlDeviceGetNvLinkRemotePciInfo", handle)
        assert dev is not None
        for entry in dev.get("nvlink") or []:
            if entry["link"] == link and entry.get("remote_bus_id"):
                return _Struct(busId=entry["remote_bus_id"].encode())
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    nvmlDeviceGetNvLinkRemotePciInfo_v2 = nvmlDeviceGetNvLinkRemotePciInfo

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, handle: FakeHandle, link: int) -> int:
        """0 GPU, 2 NVSwitch (``"remote_type": 2`` in a link entry; DGX boxes link GPUs through switches)."""
        dev = self._enter("nvmlDeviceGetNvLinkRemoteDeviceType", handle)
        assert dev is not None
        for entry in dev.get("nvlink") or []:
            if entry["link"] == link:
                return int(entry.get("remote_type", NVML_NVLINK_DEVICE_TYPE_GPU))
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetP2PStatus(self, h1: FakeHandle, h2: FakeHandle, index: Any) -> int:
        self._enter("nvmlDeviceGetP2PStatus", h1)
        self._enter("nvmlDeviceGetP2PStatus", h2)
        if isinstance(index, tuple):
            # The real C binding rejects the tuple NVML_P2P_CAPS_INDEX_READ with a ctypes error.
            raise TypeError("wrong type for p2pIndex (pass 0 for READ, not NVML_P2P_CAPS_INDEX_READ)")
        if h1.index == h2.index:
            return NVML_P2P_STATUS_OK
        name = {0: "read", 1: "write", 2: "nvlink", 3: "atomics", 4: "prop"}.get(int(index))
        entry = (self.recording.get("p2p") or {}).get(_pair_key(h1.index, h2.index))
        if entry is None or name is None or entry.get(name) is None:
            return NVML_P2P_STATUS_NOT_SUPPORTED
        return int(entry[name])

    def nvmlDeviceGetTopologyCommonAncestor(self, h1: FakeHandle, h2: FakeHandle) -> int:
        self._enter("nvmlDeviceGetTopologyCommonAncestor", h1)
        self._enter("nvmlDeviceGetTopologyCommonAncestor", h2)
        if h1.index == h2.index:
            return NVML_TOPOLOGY_INTERNAL
        level = (self.recording.get("topology") or {}).get(_pair_key(h1.index, h2.index))
        if level is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(level)


# -- building recordings in tests -----------------------------------------
GIB = 1024**3


def empty_recording() -> dict[str, Any]:
    return {"format": "nvml-recording/1", "driver_version": "550.54.15", "cuda_driver_version": 12040,
            "nvml_version": "12.550.54.15", "devices": [], "p2p": {}, "topology": {}}


def make_device(index: int, name: str = "NVIDIA A100-SXM4-80GB", *, total_gib: float = 80.0,
                used_gib: float = 0.5, cc: tuple[int, int] = (8, 0), util: int = 0,
                processes: list[dict[str, Any]] | None = None, nvlink_peers: list[str] | None = None,
                numa_node: int = 0) -> dict[str, Any]:
    """One recorded device with plausible values; ``nvlink_peers`` are remote PCI bus ids, one per link."""
    total = int(total_gib * GIB)
    used = int(used_gib * GIB)
    return {
        "index": index,
        "name": name,
        "uuid": f"GPU-00000000-0000-0000-0000-{index:012d}",
        "pci_bus_id": f"00000000:{0x10 + index * 0x10:02X}:00.0",
        "memory": {"total": total, "used": used, "free": total - used},
        "compute_capability": list(cc),
        "utilization": {"gpu": util, "memory": 0},
        "temperature": 35,
        "power_mw": 60000,
        "power_limit_mw": 400000,
        "clocks": {"graphics": 210, "sm": 210, "mem": 1593},
        "max_clocks": {"graphics": 1410, "sm": 1410, "mem": 1593},
        "numa_node": numa_node,
        "brand": 2,
        "processes": processes or [],
        "nvlink": [{"link": i, "state": 1, "remote_bus_id": peer} for i, peer in enumerate(nvlink_peers or [])],
    }


def make_recording(n: int, name: str = "NVIDIA A100-SXM4-80GB", *, topology: int = NVML_TOPOLOGY_SINGLE,
                   p2p: int = NVML_P2P_STATUS_OK, nvlink: bool = False, **device_kw: Any) -> dict[str, Any]:
    """``n`` identical GPUs, every pair at one topology level with one P2P status (``nvlink``: all-to-all)."""
    rec = empty_recording()
    devices = [make_device(i, name, **device_kw) for i in range(n)]
    if nvlink:
        for dev in devices:
            peers = [d["pci_bus_id"] for d in devices if d is not dev]
            dev["nvlink"] = [{"link": i, "state": 1, "remote_bus_id": b} for i, b in enumerate(peers)]
    rec["devices"] = devices
    for a in range(n):
        for b in range(a + 1, n):
            rec["p2p"][_pair_key(a, b)] = {"read": p2p, "write": p2p,
                                           "nvlink": NVML_P2P_STATUS_OK if nvlink else NVML_P2P_STATUS_NOT_SUPPORTED}
            rec["topology"][_pair_key(a, b)] = NVML_TOPOLOGY_INTERNAL if nvlink else topology
    return rec
