"""Does the multimodal model read its images and ECGs? The same training run twice on the
synthetic studies, once with the real inputs and once with every input zeros (placeholders
and presence flags kept: a model that sees the same studies without their media).

    python benchmarks/media_ablation.py --profile demo --steps 150     # CPU, one process

On the synthetic studies (megamed/data/synthetic_media.py) each image/ECG study's report
opens with finding tokens that only its input determines; a text-only model cannot beat
ln(classes) nats on them. So the per-kind loss (`loss_by_input`, the trainer's metric) of
image and ECG samples must end clearly lower with the real inputs; text-only samples are
the control (their loss should match). Prints both curves' start and end (mean of the last
10 steps) and writes benchmarks/results/media_ablation.json.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import megamed.training.trainer as trainer
from megamed.config import load_config
from megamed.data.synthetic_media import SyntheticStudies

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("text", "image", "ecg")


def train(profile: str, steps: int, blank: bool) -> list[dict]:
    """One run's per-step records; `blank` feeds zeros for every input."""
    trainer.SyntheticStudies = functools.partial(SyntheticStudies, blank_media=blank)
    try:
        cfg = load_config(profile, {"train": {"steps": steps, "log_interval": max(1, steps // 5)}})
        return trainer.pretrain(cfg)
    finally:
        trainer.SyntheticStudies = SyntheticStudies


def summary(records: list[dict], tail: int = 10) -> dict:
    first, last = records[0]["loss_by_input"], records[-tail:]
    return {kind: {"start": first[kind],
                   "end": sum(r["loss_by_input"][kind] for r in last) / len(last)}
            for kind in KINDS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="demo", help="a multimodal profile (default demo)")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per run")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(s.getsockname()[1]))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        runs = {"real": summary(train(args.profile, args.steps, False)),
                "zeroed": summary(train(args.profile, args.steps, True))}
    finally:
        dist.destroy_process_group()
    print(f"\n{args.profile}, {args.steps} steps: loss_by_input, start -> end (mean of the "
          f"last 10 steps)\n| input | real media | media zeroed | end difference |\n"
          f"|---|---|---|---|")
    for kind in KINDS:
        r, z = runs["real"][kind], runs["zeroed"][kind]
        print(f"| {kind} | {r['start']:.3f} -> {r['end']:.3f} | {z['start']:.3f} -> "
              f"{z['end']:.3f} | {z['end'] - r['end']:+.3f} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "media_ablation.json"
    out.write_text(json.dumps({
        "benchmark": "media_ablation", "profile": args.profile, "steps": args.steps,
        "reference": "the same run with every image/ECG input zeros", "runs": runs,
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "device": "cpu",
                    "torch": torch.__version__, "python": sys.version.split()[0]}}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
