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
    "attention_backend": ("model", "attention_backend"),
    "norm_backend": ("model", "norm_backend"),
    "data": ("data", "path"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Pretrain a megamed decoder. Launch with torchrun; DP = world size / "
                    "(TP x PP). Flags override the values of --profile.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
    g.add_argument("--precision", choices=["fp32", "bf16"], help="compute precision")
    g.add_argument("--attention-backend", choices=["auto", "torch", "triton"],
                   help="attention kernel (auto: triton on CUDA, torch on CPU)")
    g.add_argument("--norm-backend", choices=["auto", "torch", "triton", "apex"],
                   help="LayerNorm/RMSNorm kernel (apex needs NVIDIA apex installed)")
    g = p.add_argument_group("data and output")
    g.add_argument("--data", help="glob of token files (.npy / .bin); default: the built-in "
                   "synthetic stream")
    g.add_argument("--save", help="directory to write checkpoints to")
    g.add_argument("--save-interval", type=int, help="save every N steps (0: at the end only)")
    g.add_argument("--load", help="checkpoint directory to resume from")
    g.add_argument("--metrics-jsonl", help="append one JSON object per optimizer step here")
    g.add_argument("--log-interval", type=int, help="print a progress line every N steps")
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
