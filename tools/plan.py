"""Capacity planner: parameters, memory per GPU for every layout, FLOPs per token, time to
train and communication per step, from the model's shape alone.

    python tools/plan.py --profile medllm-32b --gpus 32 --gpu h200
    python tools/plan.py --profile medllm-32b --gpus 16 --gpu a100-80gb --tokens 1e12 --json out.json

Memory model (bytes per parameter, mixed-precision Adam): bf16 weights 2, fp32 main grads 4,
fp32 master weights 4, two fp32 moments 8 = 18 (the seed plan's 448 GB for 32B forgot the
master weights). ZeRO-1 divides the 12 optimizer bytes by DP. Activations per layer and
micro batch follow Korthikanti et al. 2022 (table 2): s*b*h*(34 + 5*a*s/h) bytes without
recomputation, 34*s*b*h/t with TP + sequence parallelism + selective recomputation,
2*s*b*h with full recomputation; under 1F1B the first stage keeps P micro batches of its
L/P layers, i.e. L layers' worth.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

from megamed.config import (ModelConfig, count_parameters, count_parameters_by_part, load_config,
                            media_parameters_per_rank)
from megamed.training.metrics import flops_per_token

GB = 1e9


@dataclass(frozen=True)
class GPU:
    name: str
    memory_gb: float
    peak_tflops: float       # dense bf16
    intra_node_gbs: float    # NVLink, per GPU, one direction
    inter_node_gbs: float    # network per node, one direction
    per_node: int = 8


GPUS = {
    "h200": GPU("H200 141GB", 141, 989, 450, 100),      # 4 x 200G IB per node (profile M-32B)
    "h100": GPU("H100 80GB", 80, 989, 450, 100),
    "a100-80gb": GPU("A100 80GB", 80, 312, 300, 25),    # 2 x 100G RoCE per node (S-32B)
}


@dataclass
class Layout:
    tp: int
    pp: int
    dp: int
    weights_gb: float
    grads_gb: float
    optimizer_gb: float
    activations_gb: float
    total_gb: float
    fits: bool
    tp_comm_gb: float
    pp_comm_gb: float
    dp_comm_gb: float
    comm_s: float


def stage_parameters(m: ModelConfig, tp: int, pp: int) -> float:
    """Parameters on the busiest GPU: L/P layers plus the embedding and the encoders
    (first stage), divided by TP."""
    decoder = count_parameters_by_part(m, tp)["decoder"]
    vocab = m.padded_vocab_size(tp) * m.hidden_size
    embeddings = vocab * (1 if m.tie_embeddings else 2)
    layers = decoder - embeddings
    # + encoders and projectors: first stage
    return (layers / pp + (vocab if pp > 1 else embeddings)) / tp + \
        media_parameters_per_rank(m, tp)


def activation_bytes(m: ModelConfig, tp: int, micro_batch: int, recompute: str) -> float:
    """Activations kept for backward on the first stage (L layers' worth under 1F1B)."""
    s, b, h, a = m.seq_length, micro_batch, m.hidden_size, m.num_heads
    per_layer = {"none": s * b * h * (34 + 5 * a * s / h) / tp,
                 "selective": 34 * s * b * h / tp,
                 "full": 2 * s * b * h}[recompute]
    return per_layer * m.num_layers


def plan_layout(m: ModelConfig, gpu: GPU, gpus: int, tp: int, pp: int, micro_batch: int,
                global_batch: int, recompute: str, zero: int) -> Layout:
    dp = gpus // (tp * pp)
    params = stage_parameters(m, tp, pp)
    weights, grads = 2 * params, 4 * params
    optimizer = 12 * params / (dp if zero >= 1 else 1)
    activations = activation_bytes(m, tp, micro_batch, recompute)
    total = weights + grads + optimizer + activations
    micro_batches = global_batch // (micro_batch * dp)
    act = m.seq_length * micro_batch * m.hidden_size * 2  # one bf16 activation
    ring = lambda n: 2 * (n - 1) / n  # noqa: E731 (bytes moved per byte, ring all-reduce)
    # TP: 2 all-reduces forward + 2 backward per layer and micro batch (reduce-scatter +
    # all-gather under SP move the same bytes).
    tp_comm = 4 * (m.num_layers / pp) * micro_batches * ring(tp) * act if tp > 1 else 0.0
    pp_comm = 2 * micro_batches * act if pp > 1 else 0.0
    dp_comm = ring(dp) * grads if dp > 1 else 0.0  # fp32 grads: reduce-scatter + all-gather
    per_node = gpu.per_node
    dp_bw = gpu.inter_node_gbs / min(per_node, tp * dp) if tp * dp > per_node \
        else gpu.intra_node_gbs
    tp_bw = gpu.intra_node_gbs if tp <= per_node else gpu.inter_node_gbs / per_node
    pp_bw = gpu.inter_node_gbs / per_node if tp * dp * pp > per_node else gpu.intra_node_gbs
    comm_s = tp_comm / (tp_bw * GB) + pp_comm / (pp_bw * GB) + dp_comm / (dp_bw * GB)
    return Layout(tp, pp, dp, weights / GB, grads / GB, optimizer / GB, activations / GB,
                  total / GB, total < 0.9 * gpu.memory_gb * GB, tp_comm / GB, pp_comm / GB,
                  dp_comm / GB, comm_s)


def candidate_layouts(m: ModelConfig, gpus: int, per_node: int, global_batch: int,
                      micro_batch: int) -> list[tuple[int, int]]:
    out = []
    for tp in (1, 2, 4, 8):
        if tp > per_node or m.num_heads % tp or m.num_kv_heads % tp or gpus % tp:
            continue
        for pp in range(1, m.num_layers + 1):
            if gpus % (tp * pp) or m.num_layers % pp:
                continue
            dp = gpus // (tp * pp)
            if global_batch % (micro_batch * dp) or global_batch // (micro_batch * dp) < pp:
                continue
            out.append((tp, pp))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Plan a pretraining run: memory per GPU per "
                                "layout, FLOPs per token, time to train, communication.")
    p.add_argument("--profile", default="medllm-32b", help="model profile (configs/NAME.yaml)")
    p.add_argument("--gpus", type=int, default=32, help="GPUs in the job")
    p.add_argument("--gpu", default="h200", choices=sorted(GPUS), help="GPU model")
    p.add_argument("--tokens", type=float, default=1e12, help="training tokens")
    p.add_argument("--mfu", type=float, default=0.45, help="assumed model FLOPs utilisation")
    p.add_argument("--micro-batch", type=int, default=1, help="samples per micro batch")
    p.add_argument("--global-batch", type=int, help="samples per step (default: profile)")
    p.add_argument("--recompute", default="selective", choices=["none", "selective", "full"])
    p.add_argument("--zero", type=int, default=1, choices=[0, 1], help="ZeRO stage")
    p.add_argument("--json", help="also write the plan to this file")
    args = p.parse_args(argv)

    cfg = load_config(args.profile)
    m, gpu = cfg.model, GPUS[args.gpu]
    global_batch = args.global_batch or cfg.train.global_batch
    params = count_parameters(m)
    fpt = flops_per_token(m)
    tokens_per_s_gpu = gpu.peak_tflops * 1e12 * args.mfu / fpt
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
    layouts = [plan_layout(m, gpu, args.gpus, tp, pp, args.micro_batch, global_batch,
                           args.recompute, args.zero)
               for tp, pp in candidate_layouts(m, args.gpus, gpu.per_node, global_batch,
                                               args.micro_batch)]
    layouts.sort(key=lambda x: (not x.fits, x.comm_s))
    print(f"\nlayouts (micro batch {args.micro_batch}, global batch {global_batch}, "
          f"{args.recompute} recompute, ZeRO-{args.zero}); memory in GB per GPU, "
          f"communication in GB per step per GPU:")
    print(f"{'TP':>3} {'PP':>3} {'DP':>3} {'weights':>8} {'grads':>7} {'optim':>7} {'activ':>7} "
          f"{'total':>7} {'fits':>5} {'TP GB':>7} {'PP GB':>7} {'DP GB':>7} {'comm s':>7}")
    for x in layouts:
        print(f"{x.tp:>3} {x.pp:>3} {x.dp:>3} {x.weights_gb:>8.1f} {x.grads_gb:>7.1f} "
              f"{x.optimizer_gb:>7.1f} {x.activations_gb:>7.1f} {x.total_gb:>7.1f} "
              f"{'yes' if x.fits else 'no':>5} {x.tp_comm_gb:>7.1f} {x.pp_comm_gb:>7.2f} "
              f"{x.dp_comm_gb:>7.1f} {x.comm_s:>7.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"profile": args.profile, "parameters": params, "flops_per_token": fpt,
                       "gpu": asdict(gpu), "gpus": args.gpus, "days": days,
                       "layouts": [asdict(x) for x in layouts]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
