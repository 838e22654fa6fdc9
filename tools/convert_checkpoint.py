"""Reshards a megamed checkpoint to another TP x PP x DP layout (ZeRO stage, bucket size,
virtual stages), so a run can resume on a different cluster.

    python tools/convert_checkpoint.py SRC DST --tp T --pp P --dp D [--zero-stage Z]
                                       [--bucket-mb MB] [--virtual-stages V]

A thin CLI over `megamed.checkpoint.reshard` (what it does and refuses: megamed/checkpoint/
reshard.py; the files: megamed/checkpoint/format.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from megamed.checkpoint import CheckpointError, reshard  # noqa: E402
from megamed.config import ConfigError  # noqa: E402


def main(argv=None) -> int:
    a = argparse.ArgumentParser(description="Reshard a megamed checkpoint to another TP x PP x "
                                "DP layout (ZeRO stage, bucket size, virtual stages).")
    a.add_argument("src", help="checkpoint directory (holding 'latest')")
    a.add_argument("dst", help="directory for the converted checkpoint")
    a.add_argument("--tp", type=int, required=True)
    a.add_argument("--pp", type=int, required=True)
    a.add_argument("--dp", type=int, required=True)
    a.add_argument("--zero-stage", type=int, help="default: the source's")
    a.add_argument("--bucket-mb", type=float, help="default: the source's")
    a.add_argument("--virtual-stages", type=int, help="default: the source's")
    args = a.parse_args(argv)
    try:
        reshard(args.src, args.dst, args.tp, args.pp, args.dp, args.zero_stage, args.bucket_mb,
                args.virtual_stages)
    except (CheckpointError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
