"""Loading a checkpoint saved on this run's layout (another layout: reshard.py first)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from megamed.checkpoint.format import (CheckpointError, model_file, optimizer_layout,
                                       read_file, read_manifest, shard_file)
from megamed.config import Config
from megamed.parallel.state import ParallelState


def load(directory: str, state: ParallelState, cfg: Config) -> tuple[int, dict[str, Any]]:
    """Reads this rank's files of the newest checkpoint; returns (step, payload) with the
    optimizer state (this rank's shard when sharded) under "optimizer"."""
    step_dir, meta = read_manifest(Path(directory))
    layout = optimizer_layout(cfg)
    if (meta.get("tp"), meta.get("pp")) != (state.tp, state.pp):
        raise CheckpointError(step_dir, f"saved with TP {meta.get('tp')} x PP {meta.get('pp')}, "
                                        f"this run is TP {state.tp} x PP {state.pp}; resume with "
                                        f"the layout it was saved with, or reshard it with "
                                        f"tools/convert_checkpoint.py")
    if meta.get("optimizer") != layout:
        raise CheckpointError(step_dir, f"optimizer state saved as {meta.get('optimizer')}, "
                                        f"this run needs {layout}; resume with the same "
                                        f"--zero-stage, --bucket-mb and (when sharded) DP size, "
                                        f"or reshard it with tools/convert_checkpoint.py")
    payload = read_file(step_dir / model_file(state.tp_rank, state.pp_rank), meta["step"])
    if layout["partition"] != "none":
        payload["optimizer"] = read_file(step_dir / shard_file(state.tp_rank, state.pp_rank,
                                                               state.dp_rank),
                                         meta["step"])["optimizer"]
    return meta["step"], payload
