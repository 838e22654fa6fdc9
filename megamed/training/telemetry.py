"""Builds the trainer's sinks from its flags (--metrics-port, --tensorboard, --audit-db)
and turns a step's JSONL record into `StepMetrics`. The trainer sees one `SinkGroup`:
`step` once per optimizer step, `event` on checkpoint load/save, `close` at the end or on
error. Run metrics and the audit log live on global rank 0; every rank serves its own step
timings and GPU gauges on PORT + LOCAL_RANK."""
from __future__ import annotations

import glob
import os
from typing import Optional

import torch
import torch.distributed as dist

from megamed.audit import AuditLog, config_hash
from megamed.config import Config
from megamed.monitoring import SinkGroup, StepMetrics
from megamed.monitoring.nvml import Nvml, NvmlUnavailable
from megamed.monitoring.prometheus import PrometheusExporter
from megamed.monitoring.tensorboard import TensorBoardSink


class AuditSink:
    """Training start/resume/stop and checkpoint load/save as audit records."""

    def __init__(self, url: str, cfg: Config, load: Optional[str]):
        self.log = AuditLog(url)
        self.last_step = None
        shards = sorted(glob.glob(cfg.data.path)) if cfg.data.path else None
        p = cfg.parallel
        self.log.append("training_resume" if load else "training_start",
                        profile=cfg.profile, config_hash=config_hash(cfg.to_dict()),
                        world_size=dist.get_world_size(), layout=f"TP{p.tp}xPP{p.pp}",
                        steps=cfg.train.steps, shards=shards, checkpoint=load,
                        source=None if shards else cfg.data.source)

    def step(self, metrics: StepMetrics) -> None:
        self.last_step = metrics.step

    def event(self, action: str, **details) -> None:
        self.log.append(action, **details)

    def close(self, error: Optional[BaseException] = None) -> None:
        try:
            self.log.append("training_stop", step=self.last_step,
                            status="failed" if error else "completed",
                            error_type=type(error).__name__ if error else None)
        finally:
            self.log.close()


def build_sinks(cfg: Config, metrics_port: int = 0, tensorboard: Optional[str] = None,
                audit_db: Optional[str] = None, load: Optional[str] = None) -> SinkGroup:
    """Raises MonitoringError / AuditError at start-up (busy port, unreachable database)."""
    rank, local_rank = dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0))
    sinks = SinkGroup([])
    try:
        if metrics_port:
            exporter = PrometheusExporter(run_metrics=rank == 0, nvml=_nvml(local_rank),
                                          rank=rank)
            sinks.sinks.append(exporter)
            exporter.serve(metrics_port + local_rank)
        if rank == 0 and tensorboard:
            sinks.sinks.append(TensorBoardSink(tensorboard))
        if rank == 0 and audit_db:
            sinks.sinks.append(AuditSink(audit_db, cfg, load))
    except BaseException:
        sinks.close()
        raise
    return sinks


def step_metrics(record: dict, data_wait_seconds: float) -> StepMetrics:
    """A step's JSONL record (rank 0: full; elsewhere only step and step_time_s)."""
    norm = record.get("grad_norm")
    # A multimodal model's record carries per-part norms ("grad_norm_parts"); a text-only
    # model's decoder is the whole model, so its norm is the global one.
    norms = {}
    if norm is not None:
        norms = {"all": norm, **(record.get("grad_norm_parts") or {"decoder": norm})}
    return StepMetrics(record["step"], record["step_time_s"], data_wait_seconds,
                       record.get("loss"), record.get("lr"), norms,
                       record.get("tokens_per_s"), record.get("mfu"),
                       record.get("samples_skipped", 0), record.get("val_loss"),
                       record.get("val_ppl"))


def _nvml(local_rank: int) -> Optional[Nvml]:
    if not torch.cuda.is_available():
        if local_rank == 0:
            print("monitoring: no CUDA device, so no megamed_gpu_* metrics", flush=True)
        return None
    uuid = "GPU-" + str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
    try:
        return Nvml([uuid])
    except NvmlUnavailable as e:
        if local_rank == 0:
            print(f"monitoring: no megamed_gpu_* metrics: {e}", flush=True)
        return None
