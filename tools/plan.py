"""Capacity planner: parameters, memory per GPU for every layout, FLOPs per token, time to
train and communication per step (library: megamed/training/planner.py).

    python tools/plan.py --profile medllm-32b --gpus 32 --gpu h200
    python tools/plan.py --profile s-32b --gpus 16 --gpu a100-80gb --tokens 1e12 --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from megamed.config import ConfigError, count_parameters, count_parameters_by_part, load_config
from megamed.hardware import GPUS
from megamed.training.metrics import flops_per_token
from megamed.training.planner import candidate_layouts, plan_layout

GB = 1e9
EPILOG = """Memory per GPU is that of the busiest pipeline stage: parameters, fp32 main
gradients and optimizer state from the real model built on the meta device (the exact
calculator of `python -m megamed.training.memory`) in the profile's precision and ZeRO stage,
and the activations autograd keeps for the micro batches the schedule holds in flight,
in the profile's micro batch, recomputation, sequence parallelism and attention shapes
(SwiGLU, grouped-query heads; flash attention stores no s x s scores).
Communication counts every collective of a step: TP (with SP the [mb, s/t, h] shards and
their backward re-gathers), PP sends, DP gradient reduction and ZeRO parameter gathers.
FLOP convention: 6 per matmul parameter and token, plus causal attention 6 L h s, i.e. the
12 L h s of non-causal attention halved for the mask; this reads about 5% lower than the
common 6N + 12 L h s (megamed.training.metrics.flops_per_token; benchmarks/mfu.py uses it)."""


def parse(argv):
    p = argparse.ArgumentParser(description="Plan a pretraining run: memory per GPU per "
                                "layout, FLOPs per token, time to train, communication.",
                                epilog=EPILOG)
    p.add_argument("--profile", default="medllm-32b", help="model profile (configs/NAME.yaml)")
    p.add_argument("--gpus", type=int, default=32, help="GPUs in the job")
    p.add_argument("--gpu", default="h200", choices=sorted(GPUS), help="GPU model")
    p.add_argument("--tokens", type=float, default=1e12, help="training tokens")
    p.add_argument("--mfu", type=float, default=0.45, help="assumed model FLOPs utilisation")
    p.add_argument("--micro-batch", type=int, help="samples per micro batch (default: profile)")
    p.add_argument("--global-batch", type=int, help="samples per step (default: profile)")
    p.add_argument("--recompute", choices=["none", "selective", "full"],
                   help="activation recomputation (default: profile)")
    p.add_argument("--zero", type=int, choices=[0, 1, 2, 3],
                   help="ZeRO stage (default: profile; 3 only for layouts without PP)")
    p.add_argument("--json", help="also write the plan to this file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    train = {"micro_batch": args.micro_batch, "global_batch": args.global_batch,
             "recompute": args.recompute}
    try:
        cfg = load_config(args.profile, {"train": train, "parallel": {"zero_stage": args.zero}})
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    m, t, gpu = cfg.model, cfg.train, GPUS[args.gpu]
    params, fpt = count_parameters(m), flops_per_token(m)
    tokens_per_s_gpu = gpu.peak_flops * args.mfu / fpt
    days = args.tokens / (tokens_per_s_gpu * args.gpus) / 86400
    print(f"model {args.profile}: {params:,} parameters ({params / 1e9:.1f}B)")
    if m.encoders():
        print("  by part: " + ", ".join(f"{k} {v:,}" for k, v in
                                       count_parameters_by_part(m).items()))
    print(f"model state at 18 bytes/parameter: {18 * params / GB:,.0f} GB before sharding")
    print(f"training FLOPs per token: {fpt / 1e9:.1f} GFLOP (6N alone: {6 * params / 1e9:.1f})")
    print(f"{args.gpus} x {gpu.name} at {args.mfu:.0%} MFU: {tokens_per_s_gpu:,.0f} tokens/s "
          f"per GPU, {tokens_per_s_gpu * args.gpus:,.0f} in all; {args.tokens:.3g} tokens in "
          f"{days:,.1f} days")
    layouts = [plan_layout(c, gpu) for c in candidate_layouts(cfg, args.gpus, gpu.per_node)]
    layouts.sort(key=lambda x: (not x.fits, x.comm_s))
    print(f"\nlayouts ({t.precision}, micro batch {t.micro_batch}, global batch "
          f"{t.global_batch}, {t.recompute} recompute, ZeRO-{cfg.parallel.zero_stage}, "
          f"sequence parallel {'on' if cfg.parallel.sequence_parallel else 'off'}); memory in "
          f"GB per GPU (busiest stage), communication in GB sent per step per GPU:")
    print(f"{'TP':>3} {'PP':>3} {'DP':>3} {'weights':>8} {'grads':>7} {'optim':>7} {'activ':>7} "
          f"{'total':>7} {'fits':>5} {'TP GB':>8} {'PP GB':>7} {'DP GB':>7} {'comm s':>7}")
    for x in layouts:
        print(f"{x.tp:>3} {x.pp:>3} {x.dp:>3} {x.weights_gb:>8.1f} {x.grads_gb:>7.1f} "
              f"{x.optimizer_gb:>7.1f} {x.activations_gb:>7.1f} {x.total_gb:>7.1f} "
              f"{'yes' if x.fits else 'no':>5} {x.tp_comm_gb:>8.1f} {x.pp_comm_gb:>7.2f} "
              f"{x.dp_comm_gb:>7.1f} {x.comm_s:>7.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"profile": args.profile, "parameters": params, "flops_per_token": fpt,
                       "gpu": asdict(gpu), "gpus": args.gpus, "days": days,
                       "layouts": [asdict(x) for x in layouts]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
