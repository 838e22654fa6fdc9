"""GPU telemetry through NVML (nvidia-ml-py's `pynvml`): one `GpuReading` per device.

Used by the Prometheus exporter (read at scrape time, never in the training step) and by
the health check. A machine without an NVIDIA driver gets `NvmlUnavailable` with the reason;
callers report that in one line and carry on without GPU metrics.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# Clock-event ("throttle") reason bits, nvml.h nvmlClocksEventReason*. Idle and the
# applications-clock setting are not slow-downs; the others are.
THROTTLE_REASONS = {
    "gpu_idle": 0x1, "applications_clocks_setting": 0x2, "sw_power_cap": 0x4,
    "hw_slowdown": 0x8, "sync_boost": 0x10, "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40, "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
}
BENIGN_THROTTLE_REASONS = {"gpu_idle", "applications_clocks_setting", "display_clock_setting"}


class NvmlUnavailable(RuntimeError):
    """No NVML library, no driver or no GPU: the reason is the message."""


@dataclass
class GpuReading:
    index: int
    name: str
    uuid: str
    utilization_percent: Optional[float] = None
    memory_used_bytes: Optional[int] = None
    memory_total_bytes: Optional[int] = None
    temperature_celsius: Optional[float] = None
    power_watts: Optional[float] = None
    ecc_corrected: Optional[int] = None     # volatile (since driver load) error counts
    ecc_uncorrected: Optional[int] = None
    sm_clock_mhz: Optional[int] = None
    memory_clock_mhz: Optional[int] = None
    max_sm_clock_mhz: Optional[int] = None
    throttle_reasons: list[str] = field(default_factory=list)  # active reasons

    @property
    def slowdowns(self) -> list[str]:
        return [r for r in self.throttle_reasons if r not in BENIGN_THROTTLE_REASONS]


class Nvml:
    """An initialised NVML session over some or all GPUs (`uuids`: those only)."""

    def __init__(self, uuids: Optional[list[str]] = None):
        try:
            import pynvml
        except ImportError as e:
            raise NvmlUnavailable(f"nvidia-ml-py is not installed ({e})") from None
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as e:
            raise NvmlUnavailable(f"NVML cannot start: {e}") from None
        if count == 0:
            pynvml.nvmlShutdown()
            raise NvmlUnavailable("NVML sees no GPU")
        self.nvml = pynvml
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self.devices = [(i, h) for i, h in enumerate(handles)
                        if uuids is None or _text(pynvml.nvmlDeviceGetUUID(h)) in uuids]
        if not self.devices:
            pynvml.nvmlShutdown()
            raise NvmlUnavailable(f"NVML sees none of the GPUs {uuids}")

    def read(self) -> list[GpuReading]:
        return [self._read(i, h) for i, h in self.devices]

    def close(self) -> None:
        self.nvml.nvmlShutdown()

    def _read(self, index: int, handle) -> GpuReading:
        n = self.nvml
        r = GpuReading(index, _text(n.nvmlDeviceGetName(handle)),
                       _text(n.nvmlDeviceGetUUID(handle)))
        # A query a GPU model does not support (power on some boards, ECC on consumer
        # cards) leaves its field None instead of failing the whole reading.
        r.utilization_percent = self._try(lambda: n.nvmlDeviceGetUtilizationRates(handle).gpu)
        memory = self._try(lambda: n.nvmlDeviceGetMemoryInfo(handle))
        if memory is not None:
            r.memory_used_bytes, r.memory_total_bytes = memory.used, memory.total
        r.temperature_celsius = self._try(
            lambda: n.nvmlDeviceGetTemperature(handle, n.NVML_TEMPERATURE_GPU))
        power = self._try(lambda: n.nvmlDeviceGetPowerUsage(handle))
        r.power_watts = power / 1000.0 if power is not None else None
        for attr, kind in (("ecc_corrected", n.NVML_MEMORY_ERROR_TYPE_CORRECTED),
                           ("ecc_uncorrected", n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)):
            setattr(r, attr, self._try(lambda kind=kind: n.nvmlDeviceGetTotalEccErrors(
                handle, kind, n.NVML_VOLATILE_ECC)))
        r.sm_clock_mhz = self._try(lambda: n.nvmlDeviceGetClockInfo(handle, n.NVML_CLOCK_SM))
        r.memory_clock_mhz = self._try(lambda: n.nvmlDeviceGetClockInfo(handle, n.NVML_CLOCK_MEM))
        r.max_sm_clock_mhz = self._try(lambda: n.nvmlDeviceGetMaxClockInfo(handle, n.NVML_CLOCK_SM))
        mask = self._try(lambda: n.nvmlDeviceGetCurrentClocksThrottleReasons(handle))
        if mask is not None:
            r.throttle_reasons = [k for k, bit in THROTTLE_REASONS.items() if mask & bit]
        return r

    def _try(self, query):
        try:
            return query()
        except self.nvml.NVMLError:
            return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
