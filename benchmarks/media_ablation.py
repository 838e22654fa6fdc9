"""Does the multimodal model read its images and ECGs? The same training run twice on the
synthetic studies, once with the real inputs and once with every input zeros (placeholders
and presence flags kept: a model that sees the same studies without their media).

    python benchmarks/media_ablation.py --profile demo --steps 150     # CPU, one process

On the synthetic studies (megamed/data/synthetic_media.py) each image/ECG study's report
opens with finding tokens that only its input determines; a text-only model cannot beat
ln(classes) nats on them. So the per-kind loss (`loss_by_input`, the trainer's metric) of
image and ECG samples must end clearly lower with the real inputs; text-only samples are
the control (their loss should match). Prints both curves' start and end (mean of the last
10 steps) and each trained model's loss on the finding tokens of held-out studies (the
tokens only the input determines), and writes benchmarks/results/media_ablation.json.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

import megamed.training.trainer as trainer
from megamed import checkpoint
from megamed.config import load_config, resolve
from megamed.data.sampler import BatchLayout
from megamed.data.synthetic_media import StudySource, SyntheticStudies
from megamed.model.build import build_chunks
from megamed.parallel.state import ParallelState

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("text", "image", "ecg")


def train(profile: str, steps: int, blank: bool, save: str, lr=None) -> dict:
    """One run (`blank`: every input zeros): its per-kind losses at the start and the end,
    and its finding-token loss on held-out studies (the model saved to `save`)."""
    trainer.SyntheticStudies = functools.partial(SyntheticStudies, blank_media=blank)
    try:
        train_cfg = {"steps": steps, "log_interval": max(1, steps // 5)}
        cfg = load_config(profile, {"train": {**train_cfg, **({"lr": lr} if lr else {})}})
        records = trainer.pretrain(cfg, save=save)
    finally:
        trainer.SyntheticStudies = SyntheticStudies
    return {"loss_by_input": summary(records), "finding_tokens": findings(cfg, save, blank)}


def summary(records: list[dict], tail: int = 10) -> dict:
    """{kind: {start: first step's loss, end: mean of the last `tail` steps}} (over the
    steps whose batch had that kind)."""
    def mean(rows, kind):
        values = [r["loss_by_input"][kind] for r in rows if kind in r["loss_by_input"]]
        return sum(values) / len(values) if values else float("nan")
    return {kind: {"start": mean(records[:1], kind), "end": mean(records[-tail:], kind)}
            for kind in KINDS}


def findings(cfg, directory: str, blank: bool, batches: int = 8) -> dict:
    """Mean loss of the finding tokens (the first text target of an image/ECG study) on
    held-out studies (sample indices past the run's), with the inputs the run saw."""
    cfg = resolve(cfg, 1, "cpu")
    state = ParallelState.create(1, 1)
    _, payload = checkpoint.load(directory, state, cfg)
    chunk = build_chunks(cfg, state.tp_group, 0, torch.device("cpu"))[0]
    chunk.load_state_dict(payload["model"][0])
    t = cfg.train
    studies = SyntheticStudies(cfg.model, t.seed, blank_media=blank)
    source = StudySource(studies, BatchLayout(t.global_batch, t.global_batch, 1), 0)
    found = {"image": [], "ecg": []}
    with torch.no_grad():
        for step in range(10_000, 10_000 + batches):
            batch = source.micro_batch(step, 0)
            per_token = chunk(batch.tokens, batch.targets, batch.media())
            first = per_token.gather(1, batch.loss_mask.argmax(1, keepdim=True))[:, 0]
            found["image"].append(first[batch.has_image])
            found["ecg"].append(first[batch.has_ecg])
    return {k: torch.cat(v).mean().item() for k, v in found.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="demo", help="a multimodal profile (default demo)")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per run")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the profile's)")
    parser.add_argument("--runs", default="real,zeroed",
                        help="which runs, comma-separated (one per process runs them in "
                             "parallel; each writes media_ablation_<run>.json)")
    args = parser.parse_args()
    names = args.runs.split(",")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(s.getsockname()[1]))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            runs = {name: train(args.profile, args.steps, name == "zeroed", f"{tmp}/{name}",
                                args.lr) for name in names}
    finally:
        dist.destroy_process_group()
    out = RESULTS / ("media_ablation.json" if len(runs) == 2 else f"media_ablation_{names[0]}.json")
    write(out, args, runs)
    if len(runs) == 2:
        print_comparison(args, runs)
    else:
        print(json.dumps(runs, indent=1))
    print(f"wrote {out}")
    return 0


def print_comparison(args, runs: dict) -> None:
    print(f"\n{args.profile}, {args.steps} steps: loss_by_input, start -> end (mean of the "
          f"last 10 steps)\n| input | real media | media zeroed | end difference |\n"
          f"|---|---|---|---|")
    for kind in KINDS:
        r, z = runs["real"]["loss_by_input"][kind], runs["zeroed"]["loss_by_input"][kind]
        print(f"| {kind} | {r['start']:.3f} -> {r['end']:.3f} | {z['start']:.3f} -> "
              f"{z['end']:.3f} | {z['end'] - r['end']:+.3f} |")
    r, z = runs["real"]["finding_tokens"], runs["zeroed"]["finding_tokens"]
    print(f"finding tokens (held out; a text-only model's floor is ln 4 = {math.log(4):.3f}): "
          f"image {r['image']:.3f} real / {z['image']:.3f} zeroed, ECG {r['ecg']:.3f} real / "
          f"{z['ecg']:.3f} zeroed")


def write(out: Path, args, runs: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "media_ablation", "profile": args.profile, "steps": args.steps,
        "lr": args.lr,
        "reference": "the same run with every image/ECG input zeros", "runs": runs,
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "device": "cpu",
                    "torch": torch.__version__, "python": sys.version.split()[0]}}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
