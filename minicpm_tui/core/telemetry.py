"""GPU sampler for the monitor: utilisation, memory, temperature, power, clocks and this run's own memory.

Everything goes through :class:`minicpm_tui.core.nvml.Nvml`, which never raises. The sampler adds two
promises on top: it never raises either (a sample is data, possibly with ``error`` set), and a GPU that
falls off the bus mid-run is reported in its reading, not fatal. With no NVML at all every sample says
"no GPU data" and carries the reason. History is bounded (``deque(maxlen=...)``) so a monitor can stay
open for days at flat memory.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from minicpm_tui.core.nvml import NA, Nvml

MIB = 1024 * 1024
NO_GPU_DATA = "no GPU data"
_GPU_IS_LOST = 15  # NVML_ERROR_GPU_IS_LOST


def _num(value: Any, scale: float = 1.0) -> float | None:
    """NVML value -> float, NA/None -> None."""
    if value is NA or value is None:
        return None
    try:
        return float(value) / scale
    except (TypeError, ValueError):
        return None


@dataclass
class GpuReading:
    """One GPU at one instant. ``None`` means NVML could not say; ``error`` says why the GPU is gone."""

    index: int
    name: str = ""
    utilization_pct: float | None = None
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    run_memory_mib: float | None = None  # memory held by this run's processes on this GPU
    run_pids: list[int] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GpuSample:
    """All GPUs at one instant, or the reason there is nothing (``status`` != "ok")."""

    time: float
    status: str
    message: str = ""
    gpus: list[GpuReading] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "status": self.status, "message": self.message,
                "gpus": [g.to_dict() for g in self.gpus]}

    def summary(self) -> str:
        """One compact line for the plain monitor."""
        if not self.ok:
            return self.message or NO_GPU_DATA
        parts = []
        for g in self.gpus:
            if g.error:
                parts.append(f"gpu{g.index} {g.error}")
                continue
            util = f"{g.utilization_pct:.0f}%" if g.utilization_pct is not None else "?%"
            mem = (f"{g.memory_used_mib / 1024:.1f}/{g.memory_total_mib / 1024:.0f}G"
                   if g.memory_used_mib is not None and g.memory_total_mib is not None else "?G")
            bits = [f"gpu{g.index} {util} {mem}"]
            if g.run_memory_mib:
                bits.append(f"run {g.run_memory_mib / 1024:.1f}G")
            if g.temperature_c is not None:
                bits.append(f"{g.temperature_c:.0f}C")
            if g.power_w is not None:
                bits.append(f"{g.power_w:.0f}W")
            parts.append(" ".join(bits))
        return " | ".join(parts) if parts else "no GPUs"


class GpuSampler:
    """Samples NVML every ``interval`` seconds (``start()``) or on demand (``sample()``).

    ``pids`` is a callable returning the pids of this run's processes (re-read each sample, since a
    torchrun job forks workers after the monitor starts); their NVML-reported memory is summed into
    ``run_memory_mib``. ``indices`` restricts the GPUs shown (the run's CUDA_VISIBLE_DEVICES).
    """

    def __init__(self, nvml: Nvml | None = None, *, interval: float = 2.0, history: int = 300,
                 indices: Iterable[int] | None = None,
                 pids: Callable[[], Iterable[int]] | None = None) -> None:
        self.nvml = nvml if nvml is not None else Nvml()
        self.interval = max(0.1, float(interval))
        self.history: dict[int, deque[GpuReading]] = {}
        self._history_len = max(1, int(history))
        self.indices = list(indices) if indices is not None else None
        self.pids = pids
        self.latest: GpuSample | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- one sample ------------------------------------------------------
    def sample(self) -> GpuSample:
        """Take one sample. Never raises."""
        try:
            sample = self._sample()
        except Exception as exc:  # a bug or an exotic driver: shown, never fatal
            sample = GpuSample(time.time(), "error", f"{NO_GPU_DATA} (sampler error: {type(exc).__name__}: {exc})")
        with self._lock:
            self.latest = sample
            for reading in sample.gpus:
                self.history.setdefault(reading.index, deque(maxlen=self._history_len)).append(reading)
        return sample

    def _sample(self) -> GpuSample:
        now = time.time()
        nvml = self.nvml
        if not nvml.start():
            hint = f": {nvml.hint}" if nvml.hint else ""
            return GpuSample(now, nvml.status, f"{NO_GPU_DATA} ({nvml.status}{hint})")
        count = nvml.device_count()
        if count == 0:
            return GpuSample(now, "no_gpu", f"{NO_GPU_DATA} (NVML sees no GPU)")
        wanted = self.indices if self.indices is not None else list(range(count))
        run_pids: set[int] = set()
        if self.pids is not None:
            try:
                run_pids = {int(p) for p in self.pids()}
            except Exception:
                run_pids = set()
        gpus = [self._read(i, run_pids) for i in wanted if 0 <= i < count]
        return GpuSample(now, "ok", "", gpus)

    def _read(self, index: int, run_pids: set[int]) -> GpuReading:
        nvml = self.nvml
        nvml.errors.clear()
        handle = nvml.handle(index)
        reading = GpuReading(index=index)
        if handle is NA:
            reading.error = self._lost_text(nvml.errors.get("nvmlDeviceGetHandleByIndex", "no handle"))
            return reading
        name = nvml.call("nvmlDeviceGetName", handle)
        reading.name = str(name) if name is not NA else ""
        util = nvml.call("nvmlDeviceGetUtilizationRates", handle)
        reading.utilization_pct = _num(getattr(util, "gpu", NA))
        mem = nvml.call("nvmlDeviceGetMemoryInfo", handle)
        reading.memory_used_mib = _num(getattr(mem, "used", NA), MIB)
        reading.memory_total_mib = _num(getattr(mem, "total", NA), MIB)
        reading.temperature_c = _num(nvml.call("nvmlDeviceGetTemperature", handle,
                                               nvml.constant("NVML_TEMPERATURE_GPU", 0)))
        reading.power_w = _num(nvml.call("nvmlDeviceGetPowerUsage", handle), 1000.0)
        reading.power_limit_w = _num(nvml.call("nvmlDeviceGetEnforcedPowerLimit", handle), 1000.0)
        reading.sm_clock_mhz = _num(nvml.call("nvmlDeviceGetClockInfo", handle, nvml.constant("NVML_CLOCK_SM", 1)))
        reading.mem_clock_mhz = _num(nvml.call("nvmlDeviceGetClockInfo", handle,
                                               nvml.constant("NVML_CLOCK_MEM", 2)))
        if run_pids:
            procs = nvml.call("nvmlDeviceGetComputeRunningProcesses", handle, default=[])
            total = 0.0
            for proc in procs or []:
                pid = getattr(proc, "pid", None)
                if pid in run_pids:
                    reading.run_pids.append(int(pid))
                    used = _num(getattr(proc, "usedGpuMemory", None), MIB)
                    total += used or 0.0
            reading.run_memory_mib = total if reading.run_pids else 0.0
        lost = [text for text in nvml.errors.values() if self._is_lost(text)]
        if lost:
            reading.error = self._lost_text(lost[0])
        return reading

    @staticmethod
    def _is_lost(text: str) -> bool:
        return "lost" in text.lower() or f"code {_GPU_IS_LOST}" in text

    def _lost_text(self, text: str) -> str:
        if self._is_lost(text):
            return "GPU lost (fell off the bus? check `dmesg` for Xid 79 / `nvidia-smi`)"
        return f"GPU unreadable ({text})"

    # -- background sampling --------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def series(self, index: int, attr: str) -> list[float]:
        """A bounded series of one attribute for a sparkline (missing values skipped)."""
        with self._lock:
            values = [getattr(r, attr) for r in self.history.get(index, ())]
        return [v for v in values if isinstance(v, (int, float))]
