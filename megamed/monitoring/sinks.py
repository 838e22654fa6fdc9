"""The one interface between the training loop and everything that watches it.

A sink has `step(StepMetrics)`, `event(action, **details)` (run start/stop/resume,
checkpoint save/load: what the audit log records) and `close(error=None)`. The trainer
builds one `SinkGroup` at start, calls `step` once per optimizer step and closes it at the
end or on error. Sinks must be cheap per call: Prometheus sets a few gauges, TensorBoard
queues events for its writer thread, NVML is only read when Prometheus scrapes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

# Model parts whose gradient norm can be reported (label `part` of megamed_grad_norm).
# Today the model is the decoder only; the multimodal encoders and projector add theirs.
GRAD_NORM_PARTS = ("all", "decoder", "image_encoder", "waveform_encoder", "projector")


class MonitoringError(RuntimeError):
    """A sink that cannot start (busy metrics port, unwritable TensorBoard folder)."""


@dataclass
class StepMetrics:
    """One optimizer step as this rank saw it. Run-wide values (loss, lr, grad norms,
    throughput) are known on global rank 0 only and None elsewhere."""
    step: int
    step_seconds: float
    data_wait_seconds: float = 0.0
    loss: Optional[float] = None
    learning_rate: Optional[float] = None
    grad_norms: dict[str, float] = field(default_factory=dict)  # part -> L2 norm
    tokens_per_second: Optional[float] = None
    mfu: Optional[float] = None
    samples_skipped: int = 0  # skipped (unreadable) samples in this step
    val_loss: Optional[float] = None  # on the steps that validated (--eval-interval)
    val_ppl: Optional[float] = None

    def __post_init__(self):
        unknown = set(self.grad_norms) - set(GRAD_NORM_PARTS)
        if unknown:
            raise ValueError(f"grad norm parts {sorted(unknown)} are not among "
                             f"{GRAD_NORM_PARTS} (the megamed_grad_norm label contract)")

    @property
    def has_run_metrics(self) -> bool:
        return self.loss is not None


class Sink(Protocol):
    def step(self, metrics: StepMetrics) -> None: ...
    def event(self, action: str, **details) -> None: ...
    def close(self, error: Optional[BaseException] = None) -> None: ...


class SinkGroup:
    """Fans every call out to its sinks; closes all of them even if one fails."""

    def __init__(self, sinks: list):
        self.sinks = list(sinks)

    def step(self, metrics: StepMetrics) -> None:
        for sink in self.sinks:
            sink.step(metrics)

    def event(self, action: str, **details) -> None:
        for sink in self.sinks:
            sink.event(action, **details)

    def close(self, error: Optional[BaseException] = None) -> None:
        failures = []
        for sink in self.sinks:
            try:
                sink.close(error)
            except Exception as e:  # noqa: BLE001 - the others still have to close
                failures.append(e)
        self.sinks = []
        if failures:
            raise failures[0]


class DataWait:
    """Seconds spent inside the data function during one step (the data-wait histogram):
    `fn = wait.timed(fn)`, then read `wait.seconds`."""

    def __init__(self):
        self.seconds = 0.0

    def timed(self, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
        return wrapper
