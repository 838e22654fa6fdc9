"""The on-disk format of a checkpoint: file names, the manifest, and reading and writing
one file. Written by save.py, read by load.py, rewritten for another layout by reshard.py.

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
which meta.json records and `load` checks; `reshard` converts between layouts. The data
order is a function of the step, so a resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from megamed.config import Config

LATEST, MANIFEST = "latest", "meta.json"


class CheckpointError(RuntimeError):
    def __init__(self, path, reason: str):
        super().__init__(f"checkpoint {path}: {reason}")
        self.path, self.reason = path, reason


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def model_file(tp_rank: int, pp_rank: int) -> str:
    return f"tp{tp_rank:02d}_pp{pp_rank:02d}.pt"


def shard_file(tp_rank: int, pp_rank: int, dp_rank: int) -> str:
    return f"tp{tp_rank:02d}_pp{pp_rank:02d}_dp{dp_rank:02d}.pt"


def optimizer_layout(cfg: Config) -> dict[str, Any]:
    """What the optimizer shards' shapes depend on. ZeRO-1 and 2 share one layout (the
    same shards, reduced differently); unsharded state does not depend on DP."""
    p = cfg.parallel
    partition = {0: "none", 1: "buckets", 2: "buckets", 3: "blocks"}[p.zero_stage]
    return {"partition": partition, "dp": p.dp if p.zero_stage else 1,
            "bucket_mb": None if p.zero_stage == 3 else p.bucket_mb}


def manifest(step: int, tp: int, pp: int, dp: int, cfg: Config) -> dict[str, Any]:
    return {"step": step, "tp": tp, "pp": pp, "dp": dp, "optimizer": optimizer_layout(cfg),
            "config": cfg.to_dict()}


def write_file(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.rename(path)  # never leave a half-written file


def read_file(path: Path, step: int) -> dict[str, Any]:
    """A model or shard file, checked to belong to `step`."""
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


def write_manifest(root: Path, step_dir: Path, meta: dict[str, Any]) -> None:
    """The manifest, then `latest` (last: it marks the step complete)."""
    (step_dir / MANIFEST).write_text(json.dumps(meta, indent=1))
    (root / LATEST).write_text(step_dir.name + "\n")


def read_manifest(root: Path) -> tuple[Path, dict[str, Any]]:
    """The newest complete step of checkpoint directory `root`: (its directory, meta.json)."""
    latest = root / LATEST
    if not latest.exists():
        raise CheckpointError(root, "no 'latest' file: not a megamed checkpoint directory, "
                                    "or no save finished")
    step_dir = root / latest.read_text().strip()
    meta_path = step_dir / MANIFEST
    try:
        return step_dir, json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(meta_path, f"unreadable manifest ({e})") from None

