"""Command-line flags of `examples/pretrain_32b.py`; each overrides one profile value."""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

import torch

from megamed.config import Config, load_config

# flag -> (section, key); None values leave the profile's value in place.
OVERRIDES = {
    "tp": ("parallel", "tp"), "pp": ("parallel", "pp"), "dp": ("parallel", "dp"),
    "virtual_stages": ("parallel", "virtual_stages"),
    "dist_backend": ("parallel", "backend"), "dist_timeout": ("parallel", "timeout_s"),
    "steps": ("train", "steps"), "seed": ("train", "seed"),
    "global_batch": ("train", "global_batch"), "micro_batch": ("train", "micro_batch"),
    "grad_accum_steps": ("train", "grad_accum_steps"), "lr": ("train", "lr"),
    "min_lr": ("train", "min_lr"), "warmup_steps": ("train", "warmup_steps"),
    "weight_decay": ("train", "weight_decay"), "clip_grad": ("train", "clip_grad"),
    "precision": ("train", "precision"), "log_interval": ("train", "log_interval"),
    "save_interval": ("train", "save_interval"),
    "zero_stage": ("parallel", "zero_stage"), "bucket_mb": ("parallel", "bucket_mb"),
    "sequence_parallel": ("parallel", "sequence_parallel"),
    "overlap_grad_reduce": ("parallel", "overlap_grad_reduce"),
    "overlap_param_gather": ("parallel", "overlap_param_gather"),
    "recompute": ("train", "recompute"), "recompute_every": ("train", "recompute_every"),
    "loss_scale": ("train", "loss_scale"), "loss_scale_window": ("train", "loss_scale_window"),
    "memory_interval": ("train", "memory_interval"),
    "attention_backend": ("model", "attention_backend"),
    "norm_backend": ("model", "norm_backend"),
    "data": ("data", "path"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Pretrain a megamed decoder. Launch with torchrun; DP = world size / "
                    "(TP x PP). Flags override the values of --profile.",
        epilog="A flag left out takes the profile's value (configs/PROFILE.yaml).")
    a = p.add_argument
    a("--profile", default=None, help="configs/NAME.yaml or a path to a YAML file; default: "
      "'demo' without CUDA, 'medllm-32b' with it")
    g = p.add_argument_group("layout")
    g.add_argument("--tp", type=int, help="tensor-parallel size (inside a node)")
    g.add_argument("--pp", type=int, help="pipeline-parallel size")
    g.add_argument("--virtual-stages", type=int, help="model chunks per pipeline stage "
                   "(interleaved 1F1B)")
    g.add_argument("--dp", type=int, help="data-parallel size; checked against the world size "
                   "(normally left out and derived)")
    g.add_argument("--dist-backend", choices=["auto", "nccl", "gloo"],
                   help="torch.distributed backend; auto is nccl with CUDA, else gloo")
    g.add_argument("--dist-timeout", type=float, help="seconds before a stuck collective or "
                   "pipeline exchange fails (the error names the rank and the step)")
    g.add_argument("--print-schedule", action="store_true", help="print the order of "
                   "forward/backward passes on every pipeline stage before training")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, help="optimizer steps to run (in total, when resuming)")
    g.add_argument("--seed", type=int, help="seeds initialisation, data order and dropout")
    g.add_argument("--global-batch", type=int, help="samples per optimizer step")
    g.add_argument("--micro-batch", type=int, help="samples per forward/backward pass")
    g.add_argument("--grad-accum-steps", type=int, help="micro batches per step and DP rank; "
                   "derived when absent, must satisfy global = micro x accum x DP when given")
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine decay")
    g.add_argument("--warmup-steps", type=int, help="steps of linear warm-up")
    g.add_argument("--weight-decay", type=float, help="AdamW decay (not on norms and biases)")
    g.add_argument("--clip-grad", type=float, help="clip the global gradient norm to this "
                   "(0 disables)")
    g.add_argument("--attention-backend", choices=["auto", "torch", "triton"],
                   help="attention kernel (auto: triton on CUDA, torch on CPU)")
    g.add_argument("--norm-backend", choices=["auto", "torch", "triton", "apex"],
                   help="LayerNorm/RMSNorm kernel (apex needs NVIDIA apex installed)")
    g = p.add_argument_group("memory and precision")
    g.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                   help="parameter and activation dtype; gradients are accumulated and the "
                   "optimizer keeps master weights in fp32 either way; fp16 adds dynamic "
                   "loss scaling and needs a GPU")
    g.add_argument("--loss-scale", type=float, help="fp16: initial dynamic loss scale "
                   "(halved on inf/nan, doubled after --loss-scale-window good steps)")
    g.add_argument("--loss-scale-window", type=int, help="fp16: good steps before the loss "
                   "scale doubles")
    g.add_argument("--zero-stage", type=int, choices=[0, 1, 2, 3],
                   help="distributed optimizer: 0 off; 1 optimizer state and fp32 master "
                   "weights sharded over DP; 2 also gradients (reduce-scatter); 3 also "
                   "parameters, gathered block by block (PP 1 only)")
    g.add_argument("--bucket-mb", type=float, help="gradient bucket size in MiB of fp32 "
                   "gradients; a full bucket's DP reduction overlaps the rest of backward")
    g.add_argument("--sequence-parallel", action=argparse.BooleanOptionalAction,
                   default=None, help="with TP, run norms and dropout on 1/TP of the "
                   "sequence (all-gather / reduce-scatter instead of all-reduce)")
    g.add_argument("--recompute", choices=["none", "selective", "full"],
                   help="activation recomputation: selective re-runs the attention core, "
                   "full re-runs whole blocks (groups of --recompute-every)")
    g.add_argument("--recompute-every", type=int, help="with --recompute full: blocks per "
                   "recomputed group (only each group's input is kept)")
    g.add_argument("--overlap-grad-reduce", action=argparse.BooleanOptionalAction,
                   default=None, help="reduce full gradient buckets during backward "
                   "(off: all after backward)")
    g.add_argument("--overlap-param-gather", action=argparse.BooleanOptionalAction,
                   default=None, help="ZeRO-1/2: all-gather updated parameters behind the "
                   "next forward (each layer waits for its bucket)")
    g.add_argument("--memory-interval", type=int, help="log every rank's peak memory every "
                   "N steps (0: never)")
    g = p.add_argument_group("data and output")
    g.add_argument("--data", help="glob of token files (.npy / .bin); default: the built-in "
                   "synthetic stream")
    g.add_argument("--save", help="directory to write checkpoints to")
    g.add_argument("--save-interval", type=int, help="save every N steps (0: at the end only)")
    g.add_argument("--load", help="checkpoint directory to resume from")
    g.add_argument("--metrics-jsonl", help="append one JSON object per optimizer step here")
    g.add_argument("--log-interval", type=int, help="print a progress line every N steps")
    g = p.add_argument_group("operations (monitoring and audit)")
    g.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on "
                   "PORT + local rank (rank 0: run metrics; every rank: its step timings and "
                   "GPU); 0: off")
    g.add_argument("--tensorboard", metavar="DIR", help="write the run metrics as "
                   "TensorBoard scalars to DIR (rank 0)")
    g.add_argument("--audit-db", metavar="DB", help="append training start/stop/resume and "
                   "checkpoint save/load to this audit log: a SQLite path or "
                   "postgresql://user:password@host:port/db")
    return p


def default_profile() -> tuple[str, Optional[str]]:
    """The profile to use when none is given, and a note to print about it."""
    if torch.cuda.is_available():
        return "medllm-32b", None
    return "demo", ("note: no CUDA device found; running the small 'demo' profile on the CPU "
                    "with the built-in synthetic data (pass --profile to choose another)")


def parse_config(argv: Optional[Sequence[str]] = None) -> tuple[Config, argparse.Namespace,
                                                                  Optional[str]]:
    """Parses flags into a Config; returns (config, raw args, note about defaults or None)."""
    args = build_parser().parse_args(argv)
    note = None
    if args.profile is None:
        args.profile, note = default_profile()
    overrides: dict[str, dict] = {}
    for flag, (section, key) in OVERRIDES.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    if args.data:
        overrides.setdefault("data", {})["source"] = "tokens"
    return load_config(args.profile, overrides), args, note
