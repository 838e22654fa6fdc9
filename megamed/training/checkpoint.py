"""Checkpoints: the model per (TP rank, PP rank) written by DP rank 0, the optimizer state
with it or, when the optimizer is sharded over DP, one file per DP rank; plus a manifest.

    DIR/latest                           the newest complete step, written last
    DIR/step_0000100/meta.json           step, layout, optimizer layout, config
    DIR/step_0000100/tp00_pp00.pt        model chunk(s), RNG streams; the optimizer state
                                         when it is not sharded (ZeRO-0)
    DIR/step_0000100/tp00_pp00_dp03.pt   ZeRO >= 1: DP rank 3's optimizer shard

A model file holds {"step", "model": [chunk state_dict, ...], "rng", "torch_rng"} (and
"optimizer" at ZeRO-0); a shard file {"step", "optimizer"}. The optimizer state (see
training/optimizer.py) is {"steps", "numels", "loss_scaler", "shards": [{"master",
"exp_avg", "exp_avg_sq"}]}: flat fp32 tensors, one per gradient bucket (its DP shard at
ZeRO 1/2) or per block (ZeRO-3), in buffer order. Model files are layout-free within a
TP x PP layout; optimizer shards are not, so resuming needs the same TP x PP, and the same
optimizer layout (`optimizer_layout`: ZeRO partitioning, DP size when sharded, bucket size),
which meta.json records and `load` checks. The data order is a function of the step, so a
resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch

from megamed.config import Config
from megamed.parallel import collectives as C
from megamed.parallel.state import ParallelState


class CheckpointError(RuntimeError):
    def __init__(self, path, reason: str):
        super().__init__(f"checkpoint {path}: {reason}")
        self.path, self.reason = path, reason


def optimizer_layout(cfg: Config) -> dict[str, Any]:
    """What the optimizer shards' shapes depend on. ZeRO-1 and 2 share one layout (the
    same shards, reduced differently); unsharded state does not depend on DP."""
    p = cfg.parallel
    partition = {0: "none", 1: "buckets", 2: "buckets", 3: "blocks"}[p.zero_stage]
    return {"partition": partition, "dp": p.dp if p.zero_stage else 1,
            "bucket_mb": None if p.zero_stage == 3 else p.bucket_mb}


def _shard_name(state: ParallelState, dp_rank: Optional[int] = None) -> str:
    dp = "" if dp_rank is None else f"_dp{dp_rank:02d}"
    return f"tp{state.tp_rank:02d}_pp{state.pp_rank:02d}{dp}.pt"


def _write(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.rename(path)  # never leave a half-written file


def save(directory: str, step: int, state: ParallelState, payload: dict[str, Any],
         optimizer: dict[str, Any], layout: dict[str, Any], config: dict) -> Path:
    """Writes this rank's files (the model file on DP rank 0, its optimizer shard on every
    DP rank when sharded) and, once all are on disk, the manifest and `latest` (rank 0)."""
    step_dir = Path(directory) / f"step_{step:07d}"
    sharded = layout["partition"] != "none"
    if state.dp_rank == 0:
        step_dir.mkdir(parents=True, exist_ok=True)
        _write(step_dir / _shard_name(state), payload if sharded else
               dict(payload, optimizer=optimizer))
    C.barrier()
    if sharded:
        _write(step_dir / _shard_name(state, state.dp_rank), {"step": step,
                                                              "optimizer": optimizer})
    C.barrier()
    if state.rank == 0:
        meta = {"step": step, "tp": state.tp, "pp": state.pp, "dp": state.dp,
                "optimizer": layout, "config": config}
        (step_dir / "meta.json").write_text(json.dumps(meta, indent=1))
        (Path(directory) / "latest").write_text(step_dir.name + "\n")
    C.barrier()
    return step_dir


def _read(path: Path, step: int) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(path, "shard missing") from None
    except Exception as e:  # torch.load raises many types for a damaged file
        raise CheckpointError(path, f"unreadable shard ({type(e).__name__}: {e})") from None
    if payload.get("step") != step:
        raise CheckpointError(path, f"shard is for step {payload.get('step')}, manifest says "
                                    f"{step}")
    return payload


def load(directory: str, state: ParallelState,
         layout: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Reads this rank's files of the newest checkpoint; returns (step, payload) with the
    optimizer state (this rank's shard when sharded) under "optimizer"."""
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
                                        f"this run is TP {state.tp} x PP {state.pp}; resume with "
                                        f"the layout it was saved with, or reshard it with "
                                        f"tools/convert_checkpoint.py")
    if meta.get("optimizer") != layout:
        raise CheckpointError(step_dir, f"optimizer state saved as {meta.get('optimizer')}, "
                                        f"this run needs {layout}; resume with the same "
                                        f"--zero-stage, --bucket-mb and (when sharded) DP size, "
                                        f"or reshard it with tools/convert_checkpoint.py")
    payload = _read(step_dir / _shard_name(state), meta["step"])
    if layout["partition"] != "none":
        payload["optimizer"] = _read(step_dir / _shard_name(state, state.dp_rank),
                                     meta["step"])["optimizer"]
    return meta["step"], payload
