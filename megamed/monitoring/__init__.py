"""Operations telemetry, off the training hot path: the trainer hands one `StepMetrics` per
optimizer step to a `SinkGroup` (Prometheus, TensorBoard, ...); NVML is read only when
Prometheus scrapes. A leaf package: it imports nothing else from megamed."""
from megamed.monitoring.sinks import DataWait, MonitoringError, SinkGroup, StepMetrics

__all__ = ["DataWait", "MonitoringError", "SinkGroup", "StepMetrics"]
