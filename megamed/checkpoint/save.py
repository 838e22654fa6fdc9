"""Saving: each rank writes its files into the step's temporary folder (`write_rank_files`,
safe to run in a background thread: no collectives), then, once every rank has finished,
rank 0 publishes the step (format.publish: manifest with checksums, rename, `latest`).
`save` does it all synchronously; training/checkpointing.py overlaps the writing with
training."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from megamed.checkpoint.format import (manifest, model_file, publish, shard_file,
                                       step_dir_name, tmp_dir, write_file)
from megamed.config import Config
from megamed.parallel import collectives as C
from megamed.parallel.state import ParallelState


def write_rank_files(directory: str, step: int, state: ParallelState, payload: dict[str, Any],
                     optimizer: dict[str, Any], cfg: Config) -> Path:
    """This rank's files (the model file on DP rank 0, its optimizer shard on every DP rank
    when sharded), fsynced, with their checksums beside them. `payload`: {"step", "model",
    "rng", "torch_rng", ...}; `optimizer`: this rank's state. Raises OSError as it comes."""
    work = tmp_dir(Path(directory), step)
    work.mkdir(parents=True, exist_ok=True)
    sharded = cfg.parallel.zero_stage > 0
    if state.dp_rank == 0:
        write_file(work / model_file(state.tp_rank, state.pp_rank),
                   payload if sharded else dict(payload, optimizer=optimizer), state.rank)
    if sharded:
        write_file(work / shard_file(state.tp_rank, state.pp_rank, state.dp_rank),
                   {"step": step, "optimizer": optimizer}, state.rank)
    return work


def publish_step(directory: str, step: int, state: ParallelState, cfg: Config,
                 extra: dict[str, Any]) -> Path:
    """Rank 0, after every rank's `write_rank_files`: the manifest (with `extra`, e.g.
    {"val_loss": ...}) and the atomic publication. Returns DIR/step_N."""
    meta = dict(manifest(step, state.tp, state.pp, state.dp, cfg), **extra)
    return publish(Path(directory), tmp_dir(Path(directory), step), meta)


def save(directory: str, step: int, state: ParallelState, payload: dict[str, Any],
         optimizer: dict[str, Any], cfg: Config) -> Path:
    """Synchronous save: every rank writes, then rank 0 publishes; returns DIR/step_N."""
    write_rank_files(directory, step, state, payload, optimizer, cfg)
    C.barrier()
    if state.rank == 0:
        publish_step(directory, step, state, cfg, {"val_loss": None})
    C.barrier()
    return Path(directory) / step_dir_name(step)
