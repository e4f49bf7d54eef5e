"""The one NVML wrapper. Nothing in it raises into its callers.

Every NVML call goes through :meth:`Nvml.call`, which returns :data:`NA` (falsy, prints "N/A")
when the library, the driver or a single query fails. Starting NVML classifies what went wrong
into a status with a hint a person can act on. Tests inject a fake at the call surface
(``Nvml(module=fake)``) and nowhere above it; the fake mimics ``pynvml`` from nvidia-ml-py.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any


class _NotAvailable:
    """A value NVML could not give: falsy, compares equal only to itself, renders as N/A."""

    _instance: _NotAvailable | None = None

    def __new__(cls) -> _NotAvailable:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "N/A"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format("N/A", spec.rstrip("dfegs%") if spec else "")


NA: Any = _NotAvailable()

# NVML return codes (nvml.h); used when the module does not expose them.
_CODE_DRIVER_NOT_LOADED = 9
_CODE_LIBRARY_NOT_FOUND = 12
_CODE_LIB_RM_VERSION_MISMATCH = 18

STATUS_OK = "ok"
STATUS_NO_LIBRARY = "no_library"  # nvidia-ml-py missing or libnvidia-ml.so not found
STATUS_NO_DRIVER = "no_driver"  # library present, kernel driver not loaded
STATUS_MISMATCH = "driver_mismatch"  # driver/library version mismatch (updated driver, no reboot)
STATUS_NO_GPU = "no_gpu"  # NVML works, zero devices visible
STATUS_ERROR = "error"

HINTS = {
    STATUS_NO_LIBRARY: "no NVIDIA driver library (libnvidia-ml.so) here; on a GPU box install the NVIDIA "
    "driver, elsewhere plan with a hardware preset or a saved probe (--hardware)",
    STATUS_NO_DRIVER: "the NVIDIA kernel driver is not loaded; check `nvidia-smi` and `lsmod | grep nvidia`",
    STATUS_MISMATCH: "the NVIDIA driver and its library differ in version (driver updated without a reboot?); "
    "reboot or reload the nvidia kernel modules",
    STATUS_NO_GPU: "NVML sees no NVIDIA GPU (check CUDA_VISIBLE_DEVICES and the container's device access)",
    STATUS_ERROR: "NVML failed to start; run `nvidia-smi` to see why",
}


def _error_code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


class Nvml:
    """Lazily started, thread-safe NVML access. ``status`` and ``hint`` say why data is missing."""

    def __init__(self, module: Any = None) -> None:
        self._module = module
        self._lock = threading.Lock()
        self._started = False
        self.status: str = STATUS_ERROR
        self.hint: str = ""
        self.detail: str = ""
        self.errors: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------
    def start(self) -> bool:
        """Initialise NVML once. True when queries can be made."""
        with self._lock:
            if self._started:
                return self.status in (STATUS_OK, STATUS_NO_GPU)
            self._started = True
            if self._module is None:
                try:
                    import pynvml  # nvidia-ml-py

                    self._module = pynvml
                except Exception as exc:  # ImportError, or a broken install
                    self._set(STATUS_NO_LIBRARY, f"cannot import pynvml (nvidia-ml-py): {exc}")
                    return False
            try:
                self._module.nvmlInit()
            except Exception as exc:
                self._set(self._classify(exc), f"{type(exc).__name__}: {exc}")
                return False
            count = self.call("nvmlDeviceGetCount", default=0)
            self._set(STATUS_OK if count else STATUS_NO_GPU, "")
            return True

    def shutdown(self) -> None:
        with self._lock:
            if self._started and self.status in (STATUS_OK, STATUS_NO_GPU):
                with contextlib.suppress(Exception):
                    self._module.nvmlShutdown()
            self._started = False

    def _classify(self, exc: BaseException) -> str:
        code = _error_code(exc)
        mod = self._module
        not_found = getattr(mod, "NVML_ERROR_LIBRARY_NOT_FOUND", _CODE_LIBRARY_NOT_FOUND)
        no_driver = getattr(mod, "NVML_ERROR_DRIVER_NOT_LOADED", _CODE_DRIVER_NOT_LOADED)
        mismatch = getattr(mod, "NVML_ERROR_LIB_RM_VERSION_MISMATCH", _CODE_LIB_RM_VERSION_MISMATCH)
        if code == not_found:
            return STATUS_NO_LIBRARY
        if code == no_driver:
            return STATUS_NO_DRIVER
        if code == mismatch:
            return STATUS_MISMATCH
        return STATUS_ERROR

    def _set(self, status: str, detail: str) -> None:
        self.status = status
        self.detail = detail
        self.hint = HINTS.get(status, "")

    @property
    def available(self) -> bool:
        return self.start() and self.status == STATUS_OK

    # -- queries ---------------------------------------------------------
    def call(self, name: str, *args: Any, default: Any = NA) -> Any:
        """Call ``pynvml.<name>(*args)``; on any failure return ``default`` and remember why."""
        mod = self._module
        if mod is None:
            return default
        try:
            result = getattr(mod, name)(*args)
        except Exception as exc:
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            return default
        if isinstance(result, bytes):
            result = result.decode("utf-8", "replace")
        return result

    def constant(self, name: str, default: Any = None) -> Any:
        return getattr(self._module, name, default) if self._module is not None else default

    def device_count(self) -> int:
        if not self.start():
            return 0
        count = self.call("nvmlDeviceGetCount", default=0)
        return int(count) if count else 0

    def handle(self, index: int) -> Any:
        return self.call("nvmlDeviceGetHandleByIndex", index)
