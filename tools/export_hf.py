"""Exports a megamed checkpoint's text decoder as a Hugging Face Llama model folder.

    python tools/export_hf.py --load CKPT --out DIR [--max-shard-size 5GB] [--tokenizer FILE]

Any TP x PP x DP layout and ZeRO stage; DIR gets config.json, model.safetensors (or shards
and model.safetensors.index.json), the tokenizer when the run has one, and encoders/ for a
multimodal profile. A thin CLI over `megamed.checkpoint.hf.export_hf` (the layout and what
is refused: megamed/checkpoint/hf.py). Errors: one line, exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from megamed.checkpoint.hf import DEFAULT_MAX_SHARD, export_hf, run_cli  # noqa: E402


def main(argv=None) -> int:
    a = argparse.ArgumentParser(description="Export a megamed checkpoint's decoder as a "
                                "Hugging Face Llama folder (safetensors + config.json).")
    a.add_argument("--load", required=True, help="checkpoint directory (holding 'latest')")
    a.add_argument("--out", required=True, help="folder for the Hugging Face model")
    a.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD,
                   help="largest safetensors file before the weights are split into shards "
                        "with an index, e.g. 5GB, 500MB, 200MiB (default %(default)s)")
    a.add_argument("--tokenizer", help="sentencepiece model to ship as tokenizer.model "
                   "(default: CKPT/tokenizer.model or the one beside the run's token files, "
                   "when there is one)")
    args = a.parse_args(argv)
    return run_cli(export_hf, args.load, args.out, args.max_shard_size, args.tokenizer)


if __name__ == "__main__":
    sys.exit(main())
