"""Loading a checkpoint saved on this run's layout (another layout: reshard.py first).

`check_compatible` refuses a checkpoint of another model, profile or layout
(`CheckpointMismatch`, naming the difference); `read_rank_files` reads and verifies this
rank's files of one step (a `CheckpointError` for a missing, truncated or corrupt file);
`load` does both for the step `latest` names (training/checkpointing.py adds the fallback
to older steps and the agreement between ranks)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from megamed.checkpoint.format import (CheckpointMismatch, model_file, optimizer_layout,
                                       read_file, read_manifest, shard_file)
from megamed.config import Config
from megamed.parallel.state import ParallelState

# Model settings that choose kernels or regularisation, not the weights' shapes or meaning.
RUNTIME_MODEL_KEYS = ("attention_backend", "norm_backend", "hidden_dropout",
                      "attention_dropout")


def _differences(saved: dict, ours: dict, prefix: str) -> list[str]:
    out = []
    for key in sorted(set(saved) | set(ours)):
        a, b = saved.get(key), ours.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: checkpoint {_short(a)}, this run {_short(b)}")
    return out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_compatible(step_dir: Path, meta: dict[str, Any], state: ParallelState,
                     cfg: Config) -> None:
    """Raises CheckpointMismatch naming what differs between the checkpoint and this run."""
    saved = meta.get("config", {})
    model = {k: v for k, v in saved.get("model", {}).items() if k not in RUNTIME_MODEL_KEYS}
    ours = {k: v for k, v in json.loads(json.dumps(cfg.to_dict()["model"])).items()  # as saved
            if k not in RUNTIME_MODEL_KEYS}
    diff = _differences(model, ours, "model.")
    if diff:
        raise CheckpointMismatch(step_dir, "saved for another model: " + "; ".join(diff[:4]) +
                                 ("; ..." if len(diff) > 4 else ""))
    if saved.get("profile") != cfg.profile:
        raise CheckpointMismatch(step_dir, f"saved with profile {saved.get('profile')!r}, this "
                                           f"run uses profile {cfg.profile!r}")
    if (meta.get("tp"), meta.get("pp")) != (state.tp, state.pp):
        raise CheckpointMismatch(step_dir, f"saved with TP {meta.get('tp')} x PP "
                                           f"{meta.get('pp')}, this run is TP {state.tp} x PP "
                                           f"{state.pp}; resume with the layout it was saved "
                                           f"with, or reshard it with "
                                           f"tools/convert_checkpoint.py")
    layout = optimizer_layout(cfg)
    if meta.get("optimizer") != layout:
        raise CheckpointMismatch(step_dir, f"optimizer state saved as {meta.get('optimizer')}, "
                                           f"this run needs {layout}; resume with the same "
                                           f"--zero-stage, --bucket-mb and (when sharded) DP "
                                           f"size, or reshard it with "
                                           f"tools/convert_checkpoint.py")


def read_rank_files(step_dir: Path, meta: dict[str, Any], state: ParallelState,
                    cfg: Config) -> dict[str, Any]:
    """This rank's payload of step `step_dir`, checksums verified, with the optimizer state
    (this rank's shard when sharded) under "optimizer"."""
    step = meta["step"]
    payload = read_file(step_dir / model_file(state.tp_rank, state.pp_rank), step, meta)
    if optimizer_layout(cfg)["partition"] != "none":
        shard = step_dir / shard_file(state.tp_rank, state.pp_rank, state.dp_rank)
        payload["optimizer"] = read_file(shard, step, meta)["optimizer"]
    return payload


def load(directory: str, state: ParallelState, cfg: Config) -> tuple[int, dict[str, Any]]:
    """Reads this rank's files of the step `latest` names; returns (step, payload)."""
    step_dir, meta = read_manifest(Path(directory))
    check_compatible(step_dir, meta, state, cfg)
    return meta["step"], read_rank_files(step_dir, meta, state, cfg)
