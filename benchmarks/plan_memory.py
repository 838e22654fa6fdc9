"""One TP rank's memory on this device against the planner's figure for the same slice.

    python benchmarks/plan_memory.py                             # GPU: 2 medllm-32b layers, TP 4
    python benchmarks/plan_memory.py --profile tiny --tp 2 --sp  # CPU rehearsal

A single device stands in for rank 0 of a TP group: torch's fake process group (a real
torch.distributed backend whose collectives move no data) gives the run TP x 1 x 1 ranks
of which only rank 0 exists, so every tensor rank 0 allocates has its real shape while the
values are meaningless. The training step is the real one (`pretrain`: bf16, the profile's
sequence parallelism and recomputation, Triton kernels on a GPU), cut to `--layers` layers.

Measured: on a GPU `torch.cuda.max_memory_allocated` over the whole run (initialisation
holds less than a step: one parameter's fp32 full value at a time); on a CPU the bytes the
trainer tracks (buffers, optimizer state, activations saved for backward), by kind.
Predicted:
`megamed.training.planner.stage_memory` for the same config. The allocator's peak also
holds what the plan does not count (the logits and the loss's fp32 copies while it is
computed, gradients on their way into the fp32 buffers, kernel workspaces), so a ratio
predicted / measured a little under 1 is expected on a GPU; the step fails outside
0.75-1.1. JSON to --out (default benchmarks/results/plan_memory.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.testing._internal.distributed.fake_pg  # noqa: F401 (registers "fake")

from megamed.config import load_config, resolve
from megamed.training.planner import stage_memory
from megamed.training.trainer import pretrain

RESULTS = Path(__file__).resolve().parent / "results"
BOUNDS = (0.75, 1.10)


def parse(argv):
    p = argparse.ArgumentParser(description="Peak memory of one TP rank vs the plan.")
    p.add_argument("--profile", default="medllm-32b")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--tp", type=int, help="default: the profile's")
    p.add_argument("--sp", action="store_true", help="force sequence parallelism on")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "plan_memory.json"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    cuda = torch.cuda.is_available()
    base = load_config(args.profile)
    tp = args.tp or base.parallel.tp
    cfg = load_config(args.profile, {
        "model": {"num_layers": args.layers},
        "parallel": {"tp": tp, "pp": 1, "zero_stage": min(base.parallel.zero_stage, 2),
                     "sequence_parallel": args.sp or base.parallel.sequence_parallel},
        "train": {"steps": args.steps, "global_batch": base.train.micro_batch,
                  # GPU: no per-step report, which would reset the allocator's peak.
                  "memory_interval": 0 if cuda else 1, "log_interval": 100}})
    # The decoder's slice, as issue 15 asks; the encoders' terms are checked on the CPU by
    # tests/training/test_plan_accuracy.py (the multimodal demo).
    cfg = cfg.replace(model={"image_encoder": None, "ecg_encoder": None, "eeg_encoder": None})
    dist.init_process_group("fake", store=dist.HashStore(), rank=0, world_size=tp)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    records = pretrain(cfg)
    dist.destroy_process_group()
    cfg = resolve(cfg, tp, "cuda" if cuda else "cpu")  # DP and accumulation steps filled in
    predicted = vars(stage_memory(cfg, "cuda" if cuda else "cpu")[0])
    predicted["total"] = sum(predicted[k] for k in ("params", "main_grads", "optimizer",
                                                     "activations"))
    by_kind = None if cuda else records[-1]["memory"][0]
    measured = torch.cuda.max_memory_allocated() if cuda else by_kind["total"]
    ratio = predicted["total"] / measured
    state = predicted["total"] - predicted["activations"]
    result = {
        "benchmark": "plan_memory", "profile": cfg.profile, "layers": args.layers, "tp": tp,
        "sequence_parallel": cfg.parallel.sequence_parallel, "precision": cfg.train.precision,
        "recompute": cfg.train.recompute, "micro_batch": cfg.train.micro_batch,
        "measured": "cuda max_memory_allocated" if cuda else "tracked bytes (CPU)",
        "measured_bytes": measured, "measured_by_kind": by_kind, "predicted_bytes": predicted,
        "ratio": ratio, "activations_ratio": predicted["activations"] / (measured - state),
        "bounds": BOUNDS, "passed": BOUNDS[0] <= ratio <= BOUNDS[1],
        "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                    "device": torch.cuda.get_device_name() if cuda else "cpu",
                    "torch": torch.__version__, "python": sys.version.split()[0]}}
    print(f"{cfg.profile}, {args.layers} layers, TP {tp} slice (rank 0), "
          f"{cfg.train.precision}, SP {'on' if cfg.parallel.sequence_parallel else 'off'}, "
          f"recompute {cfg.train.recompute}: predicted {predicted['total'] / 2**30:.3f} GiB "
          f"(activations {predicted['activations'] / 2**30:.3f}), measured "
          f"{measured / 2**30:.3f} GiB ({result['measured']}): ratio {ratio:.3f}; planned "
          f"activations / (measured - planned model state) "
          f"{result['activations_ratio']:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
