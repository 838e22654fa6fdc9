"""`--tensorboard DIR`: the run metrics of global rank 0 as TensorBoard scalars, with the
Prometheus names less the `megamed_` prefix (loss, learning_rate, grad_norm/PART,
tokens_per_second, mfu, step_seconds, data_wait_seconds, samples_skipped_total, and on
validation steps val_loss, val_ppl).
SummaryWriter queues events for its own writer thread, so `step` costs microseconds."""
from __future__ import annotations

from typing import Optional

from megamed.monitoring.sinks import MonitoringError, StepMetrics


class TensorBoardSink:
    def __init__(self, directory: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise MonitoringError(f"--tensorboard needs the 'tensorboard' package ({e})") from None
        try:
            self.writer = SummaryWriter(log_dir=directory)
        except OSError as e:
            raise MonitoringError(f"--tensorboard {directory}: cannot write there "
                                  f"({e.strerror or e})") from None
        self.skipped = 0

    def step(self, m: StepMetrics) -> None:
        if not m.has_run_metrics:
            return
        w, s = self.writer, m.step
        self.skipped += m.samples_skipped
        scalars = {"loss": m.loss, "learning_rate": m.learning_rate,
                   "tokens_per_second": m.tokens_per_second, "mfu": m.mfu,
                   "step_seconds": m.step_seconds, "data_wait_seconds": m.data_wait_seconds,
                   "samples_skipped_total": self.skipped, "val_loss": m.val_loss,
                   "val_ppl": m.val_ppl}
        scalars.update({f"grad_norm/{part}": v for part, v in m.grad_norms.items()})
        for tag, value in scalars.items():
            if value is not None:
                w.add_scalar(tag, value, s)

    def event(self, action: str, **details) -> None:
        pass

    def close(self, error: Optional[BaseException] = None) -> None:
        self.writer.close()
