"""Memory accounting: what each rank holds, measured during training and predicted from the
real model built on the `meta` device (no memory, no processes).

During training (`--memory-interval N`), every N steps each rank reports its peak: on a GPU
torch.cuda's allocator statistics; on a CPU the bytes of the tensors we own (parameters,
fp32 main-gradient buffers, optimizer state) plus the activations autograd saved for
backward, tracked with saved-tensor hooks while the pipeline's forwards run (the micro
batches in flight, i.e. what the schedule holds).

    python -m megamed.training.memory --profile medllm-32b            # its layout and ZeRO stage
    python -m megamed.training.memory --profile medllm-32b --zero-stage 3 --pp 1 --tp 8

prints the per-rank parameter, gradient and optimizer-state sizes of every pipeline stage,
computed with the same bucket arithmetic as the training run (parallel/data.py).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from megamed.config import Config, ConfigError, bucket_elements, load_config, resolve
from megamed.model.build import meta_chunks
from megamed.parallel import collectives as C
from megamed.parallel.data import (ONE_BUCKET, buffer_groups, parameter_kinds, plan_buffer,
                                   zero3_units)

GB = 1e9


class SavedActivations:
    """Bytes of the tensors autograd keeps for backward, current and peak (CPU twin of the
    allocator's activation share). Parameters are not counted (they are counted once, in
    the parameter buffers); tensors sharing a storage are counted once, and a saved tensor
    is taken to be freed once backward has unpacked it (true without retain_graph)."""

    def __init__(self):
        self.current = self.peak = 0
        self._live: dict[int, list[int]] = {}  # storage address -> [references, bytes]

    def _pack(self, t: torch.Tensor):
        if isinstance(t, nn.Parameter) or isinstance(t._base, nn.Parameter) or t.is_meta:
            return t
        key = t.untyped_storage().data_ptr()
        entry = self._live.setdefault(key, [0, t.untyped_storage().nbytes()])
        if entry[0] == 0:
            self.current += entry[1]
            self.peak = max(self.peak, self.current)
        entry[0] += 1
        return (t, key)

    def _unpack(self, packed):
        if not isinstance(packed, tuple):
            return packed
        t, key = packed
        entry = self._live.get(key)
        if entry is not None:
            entry[0] -= 1
            if entry[0] == 0:
                self.current -= entry[1]
                del self._live[key]
        return t

    def track(self):
        """Context manager: count what the forward passes inside it save."""
        return torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def reset_peak(self) -> None:
        self.peak = self.current


def rank_memory(grads, optimizer, activations: Optional[SavedActivations],
                device: torch.device) -> dict[str, float]:
    """This rank's bytes by kind since the last call (peaks are reset)."""
    held = grads.memory_bytes()
    report = {"params": held["params"], "main_grads": held["main_grads"],
              "optimizer": optimizer.state_bytes(),
              "activations": activations.peak if activations else 0}
    report["total"] = sum(report.values())
    if device.type == "cuda":
        report["cuda_peak_allocated"] = torch.cuda.max_memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    if activations:
        activations.reset_peak()
    return report


def gather_memory(report: dict[str, float], device: torch.device) -> list[dict[str, float]]:
    """Every rank's report, on every rank (one all-gather over the world)."""
    keys = sorted(report)
    mine = torch.tensor([[float(report[k]) for k in keys]], dtype=torch.float64, device=device)
    every = C.all_gather(mine, dist.group.WORLD, 0).cpu()
    return [dict(zip(keys, row.tolist())) for row in every]


def format_memory(step: int, reports: list[dict[str, float]]) -> str:
    key = "cuda_peak_allocated" if "cuda_peak_allocated" in reports[0] else "total"
    peaks = [r[key] / 2**20 for r in reports]
    return (f"memory at step {step} ({'CUDA peak allocated' if key != 'total' else 'tracked'}"
            f", MiB per rank): " + " ".join(f"{p:.1f}" for p in peaks) +
            f" | max {max(peaks):.1f}, of which params {reports[0]['params'] / 2**20:.1f}, "
            f"main grads {reports[0]['main_grads'] / 2**20:.1f}, optimizer "
            f"{reports[0]['optimizer'] / 2**20:.1f}, activations "
            f"{reports[0]['activations'] / 2**20:.1f} on rank 0")


# -- prediction from the meta-built model ----------------------------------------------------

def optimizer_state_per_rank(cfg: Config) -> list[dict[str, int]]:
    """Per pipeline stage, the elements one rank holds (every TP and DP rank of a stage
    holds the same): `params` (in the parameter dtype; ZeRO-3: the shard, without the block
    or two gathered at a time), `gathered` (ZeRO-3: the most gathered at once, the stage's
    own unit and two blocks, as `ShardedParameters` prefetches one block ahead; else 0),
    `main_grads`, `master` (fp32 master weights kept apart from the parameters; none in
    fp32) and `exp_avg` = `exp_avg_sq`, from the real model's chunks and the training run's
    bucket and padding arithmetic (`buckets`: how many, for padding bounds; `unsharded`: the
    parameters before ZeRO-3 sharding, padded). `cfg` must be validated."""
    p = cfg.parallel
    rows = []
    for pp_rank in range(p.pp):
        row = {"pp_rank": pp_rank, "params": 0, "main_grads": 0, "master": 0, "exp_avg": 0,
               "buckets": 0, "unsharded": 0, "gathered": 0}
        for chunk in meta_chunks(cfg, pp_rank):
            groups = zero3_units(chunk) if p.zero_stage == 3 else buffer_groups(chunk)
            units = [_add_group(row, params, chunk, cfg) for params in groups]
            if p.zero_stage == 3:
                blocks = units[1:]
                row["gathered"] += units[0] + max(
                    [sum(blocks[i:i + 2]) for i in range(len(blocks))], default=0)
        row["exp_avg_sq"] = row["exp_avg"]
        rows.append(row)
    return rows


def _add_group(row: dict, params: list, chunk, cfg: Config) -> int:
    """Adds one buffer (ZeRO 0-2) or unit (ZeRO-3) to `row`; returns its padded size."""
    p = cfg.parallel
    kinds = parameter_kinds(params, chunk, p.sequence_parallel and p.tp > 1)
    numels = [q.numel() for q in params]
    if p.zero_stage == 3:
        buckets = plan_buffer(numels, kinds, ONE_BUCKET, p.dp)[1]
        held = shard = buckets[-1].end // p.dp
    else:
        shards = p.dp if p.zero_stage else 1
        buckets = plan_buffer(numels, kinds, bucket_elements(p.bucket_mb), shards)[1]
        held, shard = buckets[-1].end, buckets[-1].end // shards
    row["buckets"] += len(buckets)
    row["unsharded"] += buckets[-1].end
    row["params"] += held
    row["main_grads"] += held
    row["exp_avg"] += shard
    if params[0].dtype != torch.float32:
        row["master"] += shard
    return buckets[-1].end


def format_optimizer_state(cfg: Config, rows: list[dict[str, int]]) -> str:
    p, t = cfg.parallel, cfg.train
    size = {"fp32": 4, "bf16": 2, "fp16": 2}[t.precision]
    units = "one shard per block" if p.zero_stage == 3 else f"{p.bucket_mb:g} MiB buckets"
    lines = [f"{cfg.profile}: TP {p.tp} x PP {p.pp} x DP {p.dp}, ZeRO-{p.zero_stage}, "
             f"{t.precision} parameters, {units}; GB per rank (elements in parentheses)",
             f"{'stage':>5} {'params':>22} {'main grads':>22} {'master':>22} "
             f"{'exp_avg':>22} {'exp_avg_sq':>22} {'total GB':>9}"]
    for r in rows:
        gb = {k: r[k] * (size if k == "params" else 4) / GB
              for k in ("params", "main_grads", "master", "exp_avg", "exp_avg_sq")}
        cells = " ".join(f"{gb[k]:>7.2f} ({r[k]:>13,})" for k in gb)
        lines.append(f"{r['pp_rank']:>5} {cells} {sum(gb.values()):>9.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    a = argparse.ArgumentParser(description="Per-rank parameter, gradient and optimizer-state "
                                "sizes of a layout, from the model built on the meta device.")
    a.add_argument("--profile", default="medllm-32b")
    a.add_argument("--tp", type=int)
    a.add_argument("--pp", type=int)
    a.add_argument("--dp", type=int, default=4)
    a.add_argument("--zero-stage", type=int, choices=[0, 1, 2, 3])
    a.add_argument("--bucket-mb", type=float)
    args = a.parse_args(argv)
    parallel = {"tp": args.tp, "pp": args.pp, "zero_stage": args.zero_stage,
                "bucket_mb": args.bucket_mb}
    try:
        cfg = load_config(args.profile, {"parallel": parallel})
        cfg = resolve(cfg, cfg.parallel.tp * cfg.parallel.pp * args.dp, device_type="cuda")
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    print(format_optimizer_state(cfg, optimizer_state_per_rank(cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
