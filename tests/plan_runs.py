"""One real training step against the planner's prediction, for the memory tests: each
component a rank holds (parameters, fp32 main gradients, optimizer state, activations saved
for backward at their peak during the step) per rank, measured by the trainer's
`--memory-interval` accounting and predicted by `megamed.training.planner` for the rank's
pipeline stage. Runs inside a process group (see distributed.py)."""
from __future__ import annotations

import pytest
import torch.distributed as dist

from megamed.config import load_config, resolve
from megamed.hardware import GPUS
from megamed.training.planner import plan_layout, stage_memory
from megamed.training.trainer import pretrain

PROFILES = ("tiny", "demo")
COMPONENTS = ("params", "main_grads", "optimizer", "activations")
TOLERANCE = 0.10


def step_memory(profile: str, tp: int, pp: int, zero_stage: int):
    """One step with sequence parallelism; on global rank 0 every rank's measured bytes
    and the planner's for its stage, else None."""
    cfg = load_config(profile, {"parallel": {"tp": tp, "pp": pp, "zero_stage": zero_stage,
                                             "sequence_parallel": True},
                                "train": {"steps": 1, "memory_interval": 1,
                                          "log_interval": 100}})
    records = pretrain(cfg)
    if not records:
        return None
    cfg = resolve(cfg, dist.get_world_size(), "cpu")  # DP and accumulation steps filled in
    stages = stage_memory(cfg, "cpu")
    per_stage = tp * cfg.parallel.dp
    predicted = [vars(stages[rank // per_stage]) for rank in range(len(records[0]["memory"]))]
    return {"measured": records[0]["memory"], "predicted": predicted,
            "busiest_total_gb": max(s.total for s in stages) / 1e9,
            "plan_total_gb": plan_layout(cfg, GPUS["h200"], "cpu").total_gb}


def plan_runs(tp: int, pp: int, zero_stages) -> dict:
    return {(profile, zero): step_memory(profile, tp, pp, zero)
            for profile in PROFILES for zero in zero_stages}


def assert_plan_within_tolerance(runs: dict) -> None:
    for (profile, zero), run in runs.items():
        for rank, (measured, predicted) in enumerate(zip(run["measured"], run["predicted"])):
            for key in COMPONENTS:
                ratio = predicted[key] / measured[key]
                assert abs(ratio - 1) <= TOLERANCE, (
                    f"{profile} ZeRO-{zero} rank {rank} {key}: predicted {predicted[key]:,} "
                    f"B, measured {measured[key]:,.0f} B (ratio {ratio:.3f})")
        # tools/plan.py reports the busiest stage of the same prediction.
        assert run["plan_total_gb"] == pytest.approx(run["busiest_total_gb"])
