"""Saving: each rank writes its files, then rank 0 the manifest and `latest` (format.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from megamed.checkpoint.format import (manifest, model_file, shard_file, step_dir_name,
                                       write_file, write_manifest)
from megamed.config import Config
from megamed.parallel import collectives as C
from megamed.parallel.state import ParallelState


def save(directory: str, step: int, state: ParallelState, payload: dict[str, Any],
         optimizer: dict[str, Any], cfg: Config) -> Path:
    """Writes this rank's files (the model file on DP rank 0, its optimizer shard on every
    DP rank when sharded) and, once all are on disk, the manifest and `latest` (rank 0).
    `payload`: {"step", "model", "rng", "torch_rng"}; `optimizer`: this rank's state."""
    root = Path(directory)
    step_dir = root / step_dir_name(step)
    sharded = cfg.parallel.zero_stage > 0
    if state.dp_rank == 0:
        step_dir.mkdir(parents=True, exist_ok=True)
        write_file(step_dir / model_file(state.tp_rank, state.pp_rank),
                   payload if sharded else dict(payload, optimizer=optimizer))
    C.barrier()
    if sharded:
        write_file(step_dir / shard_file(state.tp_rank, state.pp_rank, state.dp_rank),
                   {"step": step, "optimizer": optimizer})
    C.barrier()
    if state.rank == 0:
        write_manifest(root, step_dir, manifest(step, state.tp, state.pp, state.dp, cfg))
    C.barrier()
    return step_dir
