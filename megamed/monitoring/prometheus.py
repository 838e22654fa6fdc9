"""Prometheus exporter (prometheus_client) for `--metrics-port PORT`.

Every rank serves on PORT + its local rank (ranks on one host cannot share a port), so a
node with 8 GPUs exposes PORT .. PORT+7; `monitoring/prometheus.yml` scrapes that layout.
Global rank 0 exports the run metrics (loss, learning rate, grad norms, throughput, MFU,
step, skipped samples, validation loss and perplexity); every rank exports its own step and data-wait timings and the
`megamed_gpu_*` gauges of its GPU, read from NVML when Prometheus scrapes.
"""
from __future__ import annotations

import errno
import threading
from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from megamed.monitoring.nvml import THROTTLE_REASONS, Nvml
from megamed.monitoring.sinks import MonitoringError, StepMetrics

# Step times of a 32B run are seconds to tens of seconds; the tiny CPU profiles take ms.
STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
DATA_WAIT_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)

# name -> (help, labels, value of GpuReading)
GPU_GAUGES = {
    "megamed_gpu_utilization_percent": ("GPU busy time over the last sample period (%)",
                                        (), lambda r: r.utilization_percent),
    "megamed_gpu_memory_used_bytes": ("GPU memory in use (bytes)", (),
                                      lambda r: r.memory_used_bytes),
    "megamed_gpu_memory_total_bytes": ("GPU memory in total (bytes)", (),
                                       lambda r: r.memory_total_bytes),
    "megamed_gpu_temperature_celsius": ("GPU core temperature", (),
                                        lambda r: r.temperature_celsius),
    "megamed_gpu_power_watts": ("GPU board power draw", (), lambda r: r.power_watts),
    "megamed_gpu_ecc_errors": ("ECC errors since the driver loaded", ("type",),
                               lambda r: {"corrected": r.ecc_corrected,
                                          "uncorrected": r.ecc_uncorrected}),
    "megamed_gpu_clock_mhz": ("Current clock", ("clock",),
                              lambda r: {"sm": r.sm_clock_mhz, "memory": r.memory_clock_mhz,
                                         "sm_max": r.max_sm_clock_mhz}),
    "megamed_gpu_throttle_active": ("1 while a clock-event (throttle) reason is active",
                                    ("reason",),
                                    lambda r: {k: float(k in r.throttle_reasons)
                                               for k in THROTTLE_REASONS}),
}


class GpuCollector:
    """Reads NVML at scrape time. `describe` needs no GPU, so the metric names are known
    (and checked against the dashboard) on any machine."""

    def __init__(self, nvml: Optional[Nvml], rank: int):
        self.nvml, self.rank = nvml, str(rank)

    def describe(self):
        return [GaugeMetricFamily(name, text, labels=("gpu", "rank") + extra)
                for name, (text, extra, _) in GPU_GAUGES.items()]

    def collect(self):
        readings = self.nvml.read() if self.nvml else []
        for name, (text, extra, value_of) in GPU_GAUGES.items():
            family = GaugeMetricFamily(name, text, labels=("gpu", "rank") + extra)
            for r in readings:
                value = value_of(r)
                items = value.items() if isinstance(value, dict) else [((), value)]
                for label, v in items:
                    if v is not None:
                        labels = [str(r.index), self.rank] + ([label] if extra else [])
                        family.add_metric(labels, float(v))
            yield family


class SnapshotRegistry(CollectorRegistry):
    """A scrape sees the run metrics of one step, never half of two: `PrometheusExporter.step`
    and `collect` hold the same lock (held for microseconds per step)."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def collect(self):
        with self.lock:
            families = list(super().collect())
        yield from families


class PrometheusExporter:
    """The registry of one rank and, once `serve` is called, its HTTP endpoint."""

    def __init__(self, run_metrics: bool = True, nvml: Optional[Nvml] = None, rank: int = 0):
        self.registry = r = SnapshotRegistry()
        self.run_metrics = run_metrics
        self.step_seconds = Histogram("megamed_step_seconds", "Wall time of one optimizer "
                                      "step on this rank", buckets=STEP_BUCKETS, registry=r)
        self.data_wait = Histogram("megamed_data_wait_seconds", "Time one step spent waiting "
                                   "for input batches on this rank", buckets=DATA_WAIT_BUCKETS,
                                   registry=r)
        if run_metrics:
            self.loss = Gauge("megamed_loss", "Training loss (mean over DP)", registry=r)
            self.learning_rate = Gauge("megamed_learning_rate", "Learning rate", registry=r)
            self.grad_norm = Gauge("megamed_grad_norm", "Gradient L2 norm before clipping",
                                   ["part"], registry=r)
            self.tokens_per_second = Gauge("megamed_tokens_per_second", "Training throughput "
                                           "of the whole job", registry=r)
            self.mfu = Gauge("megamed_mfu", "Model FLOPs utilisation (0..1; NaN without a "
                             "known GPU peak)", registry=r)
            self.mfu.set(float("nan"))
            self.skipped = Counter("megamed_samples_skipped", "Samples skipped as unreadable",
                                   registry=r)
            self.val_loss = Gauge("megamed_val_loss", "Loss on held-out data at the last "
                                  "validation (--eval-interval)", registry=r)
            self.val_ppl = Gauge("megamed_val_ppl", "Perplexity on held-out data at the "
                                 "last validation", registry=r)
            self.val_loss.set(float("nan"))  # NaN until the first validation
            self.val_ppl.set(float("nan"))
            self.step_number = Gauge("megamed_step", "Last completed optimizer step",
                                     registry=r)
        r.register(GpuCollector(nvml, rank))
        self.nvml, self.server = nvml, None

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        try:
            self.server, _ = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as e:
            reason = "already in use" if e.errno == errno.EADDRINUSE else e.strerror or str(e)
            raise MonitoringError(f"metrics port {addr}:{port} cannot be opened ({reason}); "
                                  f"pick a free --metrics-port (rank r serves on PORT + its "
                                  f"local rank)") from None

    def step(self, m: StepMetrics) -> None:
        with self.registry.lock:
            self._update(m)

    def _update(self, m: StepMetrics) -> None:
        self.step_seconds.observe(m.step_seconds)
        self.data_wait.observe(m.data_wait_seconds)
        if not (self.run_metrics and m.has_run_metrics):
            return
        self.step_number.set(m.step)
        self.loss.set(m.loss)
        if m.learning_rate is not None:
            self.learning_rate.set(m.learning_rate)
        for part, norm in m.grad_norms.items():
            self.grad_norm.labels(part=part).set(norm)
        if m.tokens_per_second is not None:
            self.tokens_per_second.set(m.tokens_per_second)
        if m.mfu is not None:
            self.mfu.set(m.mfu)
        if m.samples_skipped:
            self.skipped.inc(m.samples_skipped)
        if m.val_loss is not None:
            self.val_loss.set(m.val_loss)
            self.val_ppl.set(m.val_ppl)

    def event(self, action: str, **details) -> None:
        pass

    def close(self, error: Optional[BaseException] = None) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.nvml is not None:
            self.nvml.close()
            self.nvml = None


def exported_names(exporter: PrometheusExporter) -> set[str]:
    """Every series name the exporter can produce (`_bucket`, `_total`, ... included), from
    its registry: what dashboards and alerts may query. The GPU families are listed even
    without a GPU (empty)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                                 "_created")}
    names = set()
    for family in exporter.registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names
