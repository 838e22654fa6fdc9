"""Checkpoints: one file per (TP rank, PP rank) written by DP rank 0, plus a JSON manifest.

    DIR/latest                        the newest complete step, written last
    DIR/step_0000100/meta.json        step, layout, config
    DIR/step_0000100/tp00_pp00.pt     model chunk(s), optimizer state, RNG streams

Resuming needs the same TP x PP layout (tools/convert_checkpoint.py reshards). The data
order is a function of the step, so a resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from megamed.parallel.state import ParallelState


class CheckpointError(RuntimeError):
    def __init__(self, path, reason: str):
        super().__init__(f"checkpoint {path}: {reason}")
        self.path, self.reason = path, reason


def _shard_name(state: ParallelState) -> str:
    return f"tp{state.tp_rank:02d}_pp{state.pp_rank:02d}.pt"


def save(directory: str, step: int, state: ParallelState, payload: dict[str, Any],
         config: dict) -> Path:
    """Writes this rank's shard (DP rank 0 only) and, once all shards are on disk, the
    manifest and the `latest` pointer (global rank 0)."""
    step_dir = Path(directory) / f"step_{step:07d}"
    if state.dp_rank == 0:
        step_dir.mkdir(parents=True, exist_ok=True)
        tmp = step_dir / (_shard_name(state) + ".tmp")
        torch.save(payload, tmp)
        tmp.rename(step_dir / _shard_name(state))  # never leave a half-written shard
    dist.barrier()
    if state.rank == 0:
        meta = {"step": step, "tp": state.tp, "pp": state.pp, "dp": state.dp, "config": config}
        (step_dir / "meta.json").write_text(json.dumps(meta, indent=1))
        (Path(directory) / "latest").write_text(step_dir.name + "\n")
    dist.barrier()
    return step_dir


def load(directory: str, state: ParallelState) -> tuple[int, dict[str, Any]]:
    """Reads this rank's shard of the newest checkpoint; returns (step, payload)."""
    root = Path(directory)
    latest = root / "latest"
    if not latest.exists():
        raise CheckpointError(root, "no 'latest' file: not a megamed checkpoint directory, "
                                    "or no save finished")
    step_dir = root / latest.read_text().strip()
    meta_path = step_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(meta_path, f"unreadable manifest ({e})") from None
    if (meta.get("tp"), meta.get("pp")) != (state.tp, state.pp):
        raise CheckpointError(step_dir, f"saved with TP {meta.get('tp')} x PP {meta.get('pp')}, "
                                        f"this run is TP {state.tp} x PP {state.pp}; reshard it "
                                        f"with tools/convert_checkpoint.py or match the layout")
    shard = step_dir / _shard_name(state)
    try:
        payload = torch.load(shard, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(shard, "shard missing") from None
    except Exception as e:  # torch.load raises many types for a damaged file
        raise CheckpointError(shard, f"unreadable shard ({type(e).__name__}: {e})") from None
    if payload.get("step") != meta["step"]:
        raise CheckpointError(shard, f"shard is for step {payload.get('step')}, manifest says "
                                     f"{meta['step']}")
    return meta["step"], payload
