"""Command-line flags of `examples/pretrain_32b.py`, each declared once in `FLAGS`.

A flag either overrides one profile value (`key`: "section.name") or is a run option that
is not part of the config (`key` None: --save, --load, --metrics-jsonl, ...). The parser and
its --help are generated from the table; a flag left out keeps the profile's value.
Parse errors raise `ConfigError` (one line, like every other configuration error) instead
of argparse's usage-and-exit.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from megamed.config import FREEZE_CHOICES, Config, ConfigError, load_config


@dataclass(frozen=True)
class Flag:
    name: str                      # "--tp"
    key: Optional[str]             # "parallel.tp"; None for a run option
    help: str
    type: Any = None               # int | float | str; None: str
    choices: Optional[tuple] = None
    action: Optional[str] = None   # "switch" (store_true) | "toggle" (--x / --no-x)

    @property
    def dest(self) -> str:
        return self.name[2:].replace("-", "_")


def _groups() -> dict[str, tuple[Flag, ...]]:
    F = Flag
    return {
        "layout": (
            F("--tp", "parallel.tp", "tensor-parallel size (inside a node)", int),
            F("--pp", "parallel.pp", "pipeline-parallel size", int),
            F("--virtual-stages", "parallel.virtual_stages", "model chunks per pipeline stage "
              "(interleaved 1F1B)", int),
            F("--dp", "parallel.dp", "data-parallel size; checked against the world size "
              "(normally left out and derived)", int),
            F("--dist-backend", "parallel.backend", "torch.distributed backend; auto is nccl "
              "with CUDA, else gloo", choices=("auto", "nccl", "gloo")),
            F("--dist-timeout", "parallel.timeout_s", "seconds before a stuck collective or "
              "pipeline exchange fails (the error names the rank and the step)", float),
            F("--print-schedule", None, "print the order of forward/backward passes on every "
              "pipeline stage before training", action="switch"),
        ),
        "training": (
            F("--steps", "train.steps", "optimizer steps to run (in total, when resuming)", int),
            F("--seed", "train.seed", "seeds initialisation, data order and dropout", int),
            F("--global-batch", "train.global_batch", "samples per optimizer step", int),
            F("--micro-batch", "train.micro_batch", "samples per forward/backward pass", int),
            F("--grad-accum-steps", "train.grad_accum_steps", "micro batches per step and DP "
              "rank; derived when absent, must satisfy global = micro x accum x DP when "
              "given", int),
            F("--lr", "train.lr", "peak learning rate", float),
            F("--min-lr", "train.min_lr", "learning rate at the end of the cosine decay", float),
            F("--warmup-steps", "train.warmup_steps", "steps of linear warm-up", int),
            F("--weight-decay", "train.weight_decay", "AdamW decay (not on norms and biases)",
              float),
            F("--clip-grad", "train.clip_grad", "clip the global gradient norm to this (0 "
              "disables)", float),
            F("--attention-backend", "model.attention_backend", "attention kernel (auto: "
              "triton on CUDA, torch on CPU)", choices=("auto", "torch", "triton")),
            F("--norm-backend", "model.norm_backend", "LayerNorm/RMSNorm kernel (apex needs "
              "NVIDIA apex installed)", choices=("auto", "torch", "triton", "apex")),
        ),
        "memory and precision": (
            F("--precision", "train.precision", "parameter and activation dtype; gradients "
              "are accumulated and the optimizer keeps master weights in fp32 either way; "
              "fp16 adds dynamic loss scaling and needs a GPU",
              choices=("fp32", "bf16", "fp16")),
            F("--loss-scale", "train.loss_scale", "fp16: initial dynamic loss scale (halved "
              "on inf/nan, doubled after --loss-scale-window good steps)", float),
            F("--loss-scale-window", "train.loss_scale_window", "fp16: good steps before the "
              "loss scale doubles", int),
            F("--zero-stage", "parallel.zero_stage", "distributed optimizer: 0 off; 1 "
              "optimizer state and fp32 master weights sharded over DP; 2 also gradients "
              "(reduce-scatter); 3 also parameters, gathered block by block (PP 1 only)", int,
              choices=(0, 1, 2, 3)),
            F("--bucket-mb", "parallel.bucket_mb", "gradient bucket size in MiB of fp32 "
              "gradients; a full bucket's DP reduction overlaps the rest of backward", float),
            F("--sequence-parallel", "parallel.sequence_parallel", "with TP, run norms and "
              "dropout on 1/TP of the sequence (all-gather / reduce-scatter instead of "
              "all-reduce)", action="toggle"),
            F("--recompute", "train.recompute", "activation recomputation: selective re-runs "
              "the attention core, full re-runs whole blocks (groups of --recompute-every)",
              choices=("none", "selective", "full")),
            F("--recompute-every", "train.recompute_every", "with --recompute full: blocks per "
              "recomputed group (only each group's input is kept)", int),
            F("--overlap-grad-reduce", "parallel.overlap_grad_reduce", "reduce full gradient "
              "buckets during backward (off: all after backward)", action="toggle"),
            F("--overlap-param-gather", "parallel.overlap_param_gather", "ZeRO-1/2: all-gather "
              "updated parameters behind the next forward (each layer waits for its bucket)",
              action="toggle"),
            F("--memory-interval", "train.memory_interval", "log every rank's peak memory "
              "every N steps (0: never)", int),
        ),
        "faults (pre-emption, NaN, hangs)": (
            F("--max-nonfinite-steps", "train.max_nonfinite_steps", "a step with a non-finite "
              "loss or gradient norm (or fp16 loss-scale underflow) makes no update; stop the "
              "run after this many in a row, naming the first non-finite gradient", int),
            F("--step-timeout-s", "train.step_timeout_s", "hang watchdog: when one step "
              "(with its logging and checkpoint) runs longer than this, every rank writes its "
              "Python stacks and the collective it waits in to stderr and exits with status "
              "124 (0: off)", float),
        ),
        "multimodal": (
            F("--freeze", "train.freeze", "training stage of a model with encoders: none "
              "(everything trains), encoders (frozen encoders, trained projectors and "
              "decoder), all-but-projectors (alignment: only the projectors train); frozen "
              "parameters get no gradient and no optimizer state", choices=FREEZE_CHOICES),
            F("--loss-weight-image", "train.loss_weight_image", "weight of the text of "
              "samples with an image in the loss (text-only samples weigh 1)", float),
            F("--loss-weight-ecg", "train.loss_weight_ecg", "the same for samples with an "
              "ECG", float),
            F("--loss-weight-eeg", "train.loss_weight_eeg", "the same for samples with an "
              "EEG", float),
        ),
        "data and output": (
            F("--data", "data.path", "glob of token files (.npy / .bin); default: the built-in "
              "synthetic stream (the demo corpus for the demo profile)"),
            F("--data-shards", "data.shards", "folder of WebDataset shards with the "
              "manifest.json of tools/make_shards.py"),
            F("--tokenizer", "data.tokenizer", "sentencepiece model for --data-shards; default: "
              "the one the manifest names"),
            F("--data-source", "data.source", "where samples come from; derived from "
              "--data / --data-shards; demo: the demo corpus built once into $MEGAMED_CACHE "
              "(default ~/.cache/megamed), the demo profile's default",
              choices=("synthetic", "tokens", "shards", "demo")),
            F("--loader-workers", "data.loader_workers", "shard reader processes per rank (0: "
              "read in the training process)", int),
            F("--loader-prefetch", "data.loader_prefetch", "micro batches in flight per shard "
              "reader process", int),
            F("--max-skip-fraction", "data.max_skip_fraction", "fail the run once this share of "
              "the samples read was unreadable (each skip is logged and replaced)", float),
            F("--save", None, "directory to write checkpoints to"),
            F("--save-interval", "train.save_interval", "save every N steps (0: at the end "
              "only)", int),
            F("--save-interval-minutes", "train.save_interval_minutes", "also save when this "
              "many minutes have passed since the last save, whichever comes first (0: off)",
              float),
            F("--keep-last", "train.keep_last", "keep only the newest K checkpoints in --save "
              "(0: keep all)", int),
            F("--keep-best", "train.keep_best", "with --keep-last: also keep the M checkpoints "
              "of lowest validation loss", int),
            F("--async-save", "train.async_save", "write checkpoints in a background thread "
              "while training goes on (--no-async-save: the step waits for the write)",
              action="toggle"),
            F("--load", None, "checkpoint directory to resume from (falls back to the previous "
              "checkpoint when the newest does not verify); 'auto': the --save directory, "
              "from scratch when it has none. --save DIR alone also resumes from DIR"),
            F("--metrics-jsonl", None, "append one JSON object per optimizer step here"),
            F("--log-interval", "train.log_interval", "print a progress line every N steps",
              int),
        ),
        "validation": (
            F("--eval-interval", "train.eval_interval", "every N steps, the loss and "
              "perplexity on held-out data (val_loss, val_ppl in the progress line and the "
              "metrics JSONL); 0: never", int),
            F("--eval-iters", "train.eval_iters", "global batches of held-out samples per "
              "validation (the same samples each time)", int),
            F("--eval-fraction", "data.eval_fraction", "share of the --data samples held out "
              "of training for validation (the same samples for every seed and layout)",
              float),
            F("--eval-data", "data.eval_path", "glob of token files (.npy / .bin) kept for "
              "validation, instead of --eval-fraction"),
        ),
        "operations (monitoring and audit)": (
            F("--metrics-port", None, "serve Prometheus metrics on PORT + local rank (rank 0: "
              "run metrics; every rank: its step timings and GPU); 0 or absent: off", int),
            F("--tensorboard", None, "write the run metrics as TensorBoard scalars to this "
              "directory (rank 0)"),
            F("--audit-db", None, "append training start/stop/resume and checkpoint save/load "
              "to this audit log: a SQLite path or postgresql://user:password@host:port/db"),
        ),
    }


FLAG_GROUPS = _groups()
FLAGS = tuple(f for flags in FLAG_GROUPS.values() for f in flags)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ConfigError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        description="Pretrain a megamed decoder. Launch with torchrun; DP = world size / "
                    "(TP x PP). Flags override the values of --profile.",
        epilog="A flag left out takes the profile's value (configs/PROFILE.yaml); the "
               "bracket after each help names that value.")
    p.add_argument("--profile", default=None, help="configs/NAME.yaml or a path to a YAML "
                   "file; default: 'demo' without CUDA, 'medllm-32b' with it")
    for title, flags in FLAG_GROUPS.items():
        group = p.add_argument_group(title)
        for f in flags:
            help_text = f.help + (f" [{f.key}]" if f.key else "")
            if f.action == "switch":
                group.add_argument(f.name, action="store_true", help=help_text)
            elif f.action == "toggle":
                group.add_argument(f.name, action=argparse.BooleanOptionalAction, default=None,
                                   help=help_text)
            else:
                group.add_argument(f.name, type=f.type, choices=f.choices, help=help_text)
    return p


def default_profile() -> tuple[str, Optional[str]]:
    """The profile to use when none is given, and a note to print about it."""
    if torch.cuda.is_available():
        return "medllm-32b", None
    return "demo", ("note: no CUDA device found; running the small 'demo' profile on the CPU "
                    "on the demo corpus (real DICOM and ECG files; pass --profile to choose "
                    "another, --data-source synthetic for the synthetic studies)")


def overrides_of(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} of the flags given (None: left out)."""
    overrides: dict[str, dict[str, Any]] = {}
    for f in FLAGS:
        value = getattr(args, f.dest)
        if f.key and value is not None:
            section, key = f.key.split(".")
            overrides.setdefault(section, {})[key] = value
    data = overrides.setdefault("data", {})
    if args.data_source is None:
        if args.data or args.data_shards:
            data["source"] = "tokens" if args.data else "shards"
        elif args.profile == "demo":  # the newcomer's first run reads real medical files
            data["source"] = "demo"
    return overrides


def parse_config(argv: Optional[Sequence[str]] = None) -> tuple[Config, argparse.Namespace,
                                                                  Optional[str]]:
    """Parses flags into an unresolved Config (see `config.resolve`); returns (config, raw
    args, note about defaults or None)."""
    args = build_parser().parse_args(argv)
    note = None
    if args.profile is None:
        args.profile, note = default_profile()
    return load_config(args.profile, overrides_of(args)), args, note
