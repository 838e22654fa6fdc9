"""Model FLOPs utilisation of the real training loop on the devices present.

    python benchmarks/mfu.py --profile medllm-32b                 # one GPU: 8 of its 64 layers
    torchrun --nproc_per_node 8 benchmarks/mfu.py --profile medllm-32b --tp 8 --layers 16
    python benchmarks/mfu.py                                      # CPU: demo profile

Runs `pretrain` (the same code as examples/pretrain_32b.py) for a few steps on synthetic
data and reports the median tokens/s after warm-up, MFU = tokens/s x FLOPs per token /
(peak FLOP/s x devices), and, as the reference measured in the same run, the FLOP/s of a
large matmul on this device: the practical ceiling (a large cuBLAS bf16 GEMM reaches about
80% of an H200's 989 TFLOP/s peak). Without a GPU, MFU is undefined (null) and the ratio to
the measured matmul is the number to read. A model too large for the devices is cut to
`--layers` layers: MFU is a per-layer property, so the cut changes little but the memory.

FLOP convention (megamed/model/flops.py: flops_per_token, shared with tools/plan.py): 6 per
matmul parameter and token plus 6 L h s for causal attention, i.e. non-causal attention's
12 L h s halved for the mask, without the embedding lookup. It reads about 5% lower than the
common 6N + 12 L h s (PaLM appendix B), so MFU here is about 5% below an MFU computed that
way; peak FLOP/s come from megamed/hardware.py (dense bf16).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from megamed.config import load_config, resolve
from megamed.monitoring.plots import chart_table
from megamed.parallel.state import init_distributed
from megamed.training.metrics import flops_by_part, flops_per_token, peak_flops
from megamed.training.trainer import pretrain

CHART = dict(x=("profile", "devices", "precision"), ylabel="FLOP/s per device",
             y=("model_flops_per_s_per_device", "reference_matmul_flops_per_s"),
             title="Model FLOP/s vs a large matmul on the same device")

RESULTS = Path(__file__).resolve().parent / "results"


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 10) -> float:
    """Median FLOP/s of an n x n x n matmul: the device's practical ceiling."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for _ in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times[2:])


def parse(argv):
    p = argparse.ArgumentParser(description="Measure model FLOPs utilisation.")
    p.add_argument("--profile", default=None,
                   help="model profile; default medllm-32b on a GPU, demo on a CPU")
    p.add_argument("--layers", type=int, help="cut the model to this many layers (default: "
                   "all on a CPU, 8 on one GPU for models over 10B parameters)")
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--global-batch", type=int, help="default: micro batch x DP x (2 x PP)")
    p.add_argument("--steps", type=int, default=8, help="steps to time (plus warm-up)")
    p.add_argument("--warmup", type=int, default=3, help="steps excluded from the median")
    p.add_argument("--attention-backend", default="auto")
    p.add_argument("--norm-backend", default="auto")
    p.add_argument("--out", default=str(RESULTS / "mfu.json"))
    return p.parse_args(argv)


def build_config(args, world: int, cuda: bool):
    profile = args.profile or ("medllm-32b" if cuda else "demo")
    base = load_config(profile).model
    layers = args.layers or (8 if cuda and base.num_layers * base.hidden_size**2 * 12 > 10e9
                             else base.num_layers)
    dp = world // (args.tp * args.pp)
    micro_batches = 2 * args.pp if args.pp > 1 else 1
    global_batch = args.global_batch or args.micro_batch * dp * micro_batches
    return load_config(profile, {
        "model": {"num_layers": layers, "attention_backend": args.attention_backend,
                  "norm_backend": args.norm_backend},
        "parallel": {"tp": args.tp, "pp": args.pp},
        "train": {"steps": args.steps + args.warmup, "global_batch": global_batch,
                  "micro_batch": args.micro_batch, "warmup_steps": 1,
                  "precision": "bf16" if cuda else "fp32", "log_interval": 1}})


def main(argv=None) -> int:
    args = parse(argv)
    cuda = torch.cuda.is_available()
    init_distributed()
    world = dist.get_world_size()
    cfg = resolve(build_config(args, world, cuda), world)  # fills in DP for the report
    records = pretrain(cfg)
    device = torch.device("cuda") if cuda else torch.device("cpu")
    if dist.get_rank() == 0:
        tokens_per_s = statistics.median(r["tokens_per_s"] for r in records[args.warmup:])
        fpt = flops_per_token(cfg.model)
        dtype = torch.bfloat16 if cuda else torch.float32
        ceiling = matmul_flops(device, dtype, 8192 if cuda else 1024)
        achieved = tokens_per_s * fpt / world
        peak = peak_flops()
        result = {
            "benchmark": "mfu", "profile": cfg.profile, "layers": cfg.model.num_layers,
            "tp": cfg.parallel.tp, "pp": cfg.parallel.pp, "dp": cfg.parallel.dp,
            "devices": world, "micro_batch": cfg.train.micro_batch,
            "global_batch": cfg.train.global_batch, "seq_length": cfg.model.seq_length,
            "precision": cfg.train.precision, "tokens_per_s": tokens_per_s,
            "flops_per_token": fpt, "flops_per_token_by_part": flops_by_part(cfg.model),
            "model_flops_per_s_per_device": achieved,
            "mfu": achieved / peak if peak else None, "peak_flops": peak,
            "reference_matmul_flops_per_s": ceiling,
            "fraction_of_matmul": achieved / ceiling,
            "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                        "device": torch.cuda.get_device_name() if cuda else "cpu",
                        "torch": torch.__version__, "python": sys.version.split()[0]}}
        mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "n/a (no GPU)"
        print(f"\n{cfg.profile} ({cfg.model.num_layers} layers) on {world} x "
              f"{result['machine']['device']}: {tokens_per_s:,.0f} tokens/s, "
              f"{achieved / 1e12:.3f} TFLOP/s per device, MFU {mfu}; reference matmul "
              f"{ceiling / 1e12:.3f} TFLOP/s, model at {result['fraction_of_matmul']:.1%} of it")
        print("FLOPs per token by part: " + ", ".join(
            f"{k} {v / 1e6:,.2f} MFLOP ({v / fpt:.1%})"
            for k, v in result["flops_per_token_by_part"].items()))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
        chart_table(result, path=str(Path(args.out).with_suffix(".png")), **CHART)
        print(f"wrote {args.out}")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
