"""Imports a Hugging Face Llama model folder as a megamed checkpoint for `--load`.

    python tools/import_hf.py --hf DIR --save CKPT --tp T --pp P [--dp D] [--profile NAME]
                              [--zero-stage Z] [--bucket-mb MB]

Writes CKPT/step_0000000 at TP x PP (x DP) with fresh optimizer state; the model comes from
DIR/config.json (and DIR/encoders/), training settings from --profile. Resume it with the
same layout, --zero-stage and --bucket-mb (those of the profile unless given). A thin CLI
over `megamed.checkpoint.hf.import_hf`. Errors: one line, exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from megamed.checkpoint.hf import import_hf, run_cli  # noqa: E402


def main(argv=None) -> int:
    a = argparse.ArgumentParser(description="Import a Hugging Face Llama folder as a megamed "
                                "checkpoint (step 0, fresh optimizer state).")
    a.add_argument("--hf", required=True, help="Hugging Face model folder (config.json, "
                   "model.safetensors or its index)")
    a.add_argument("--save", required=True, help="new checkpoint directory")
    a.add_argument("--tp", type=int, required=True, help="tensor-parallel size to write")
    a.add_argument("--pp", type=int, required=True, help="pipeline-parallel size to write")
    a.add_argument("--dp", type=int, default=1, help="data-parallel size (matters only "
                   "with --zero-stage >= 1; default %(default)s)")
    a.add_argument("--profile", help="profile whose training and parallel settings the "
                   "checkpoint records (the model comes from config.json); default: the "
                   "built-in defaults")
    a.add_argument("--zero-stage", type=int, help="default: the profile's")
    a.add_argument("--bucket-mb", type=float, help="default: the profile's")
    args = a.parse_args(argv)
    return run_cli(import_hf, args.hf, args.save, args.tp, args.pp, args.dp, args.profile,
                   args.zero_stage, args.bucket_mb)


if __name__ == "__main__":
    sys.exit(main())
