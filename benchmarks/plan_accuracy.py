"""How close the planner (tools/plan.py, megamed/training/planner.py) comes to a real step.

    python benchmarks/plan_accuracy.py            # about a minute on 2 cores (gloo)

Runs one training step of each layout below on this machine's CPU (gloo processes) with
`--memory-interval 1`, which records every rank's bytes by kind: the parameter and fp32
main-gradient buffers, the optimizer state, and the activations autograd saved for
backward at their peak during the step (saved-tensor hooks). The planner predicts the same
four for each rank from the profile alone. Printed and written to
benchmarks/results/plan_accuracy.json: predicted / measured per component and in total, for
the first pipeline stage (rank 0) and, with PP, the last. Every ratio should lie in
0.9-1.1 (tests/training/test_plan_accuracy.py fails outside it).

`medllm-mini` is medllm-32b scaled down (hidden 320, 20 query / 4 KV heads, SwiGLU FFN
1728 = 5.4 h, sequence 256, 2 layers) in its own settings: bf16, sequence parallelism,
selective recomputation, ZeRO-1.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from megamed.config import load_config, resolve
from megamed.training.planner import stage_memory
from megamed.training.trainer import pretrain

RESULTS = Path(__file__).resolve().parent / "results"
COMPONENTS = ("params", "main_grads", "optimizer", "activations")
MINI = {"num_layers": 2, "hidden_size": 320, "num_heads": 20, "num_kv_heads": 4,
        "ffn_hidden_size": 1728, "vocab_size": 2048, "seq_length": 256}
# name, profile, overrides, processes
RUNS = [
    ("demo TP2 DP2", "demo", {"parallel": {"tp": 2, "zero_stage": 1}}, 4),
    ("tiny TP2 PP2 DP2", "tiny", {"parallel": {"tp": 2, "pp": 2, "zero_stage": 1}}, 8),
    ("medllm-mini bf16 SP TP2 DP2", "medllm-32b", {
        "model": MINI, "parallel": {"tp": 2, "pp": 1, "bucket_mb": 2},
        "train": {"global_batch": 4}}, 4),
    ("medllm-mini bf16 SP TP4", "medllm-32b", {
        "model": MINI, "parallel": {"tp": 4, "pp": 1, "bucket_mb": 2},
        "train": {"global_batch": 2}}, 4),
]


def measure(profile: str, overrides: dict) -> dict:
    """One step; per rank the measured and the predicted bytes of each component."""
    train = {"steps": 1, "memory_interval": 1, "log_interval": 100,
             **overrides.get("train", {})}
    cfg = load_config(profile, {**overrides, "train": train})
    if "model" in overrides:  # medllm-mini: the decoder scaled down, without the encoders
        cfg = cfg.replace(model={"image_encoder": None, "ecg_encoder": None,
                                 "eeg_encoder": None})
    records = pretrain(cfg)
    if not records:
        return {}
    cfg = resolve(cfg, dist.get_world_size(), "cpu")  # DP and accumulation steps filled in
    stages = stage_memory(cfg, "cpu")
    per_stage = cfg.parallel.tp * cfg.parallel.dp
    rows = []
    for rank, measured in enumerate(records[0]["memory"]):
        predicted = vars(stages[rank // per_stage])
        rows.append({"rank": rank, "pp_rank": rank // per_stage,
                     "measured": {k: measured[k] for k in COMPONENTS},
                     "predicted": {k: predicted[k] for k in COMPONENTS}})
    return {"layout": f"TP {cfg.parallel.tp} x PP {cfg.parallel.pp} x DP {cfg.parallel.dp}",
            "zero_stage": cfg.parallel.zero_stage, "precision": cfg.train.precision,
            "sequence_parallel": cfg.parallel.sequence_parallel,
            "recompute": cfg.train.recompute, "ranks": rows}


def _worker(rank, world, port, out, profile, overrides):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=300))
    result = measure(profile, overrides)
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    dist.destroy_process_group()


def run(profile: str, overrides: dict, world: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        mp.spawn(_worker, args=(world, port, str(out), profile, overrides), nprocs=world)
        return json.loads(out.read_text())


def ratios(row: dict) -> dict:
    out = {k: row["predicted"][k] / row["measured"][k] for k in COMPONENTS}
    out["total"] = sum(row["predicted"].values()) / sum(row["measured"].values())
    return out


def main() -> int:
    results = []
    for name, profile, overrides, world in RUNS:
        result = run(profile, overrides, world)
        last = max(r["pp_rank"] for r in result["ranks"])
        for row in result["ranks"]:
            if row["rank"] == 0 or (last and row["pp_rank"] == last and
                                    row["rank"] % (world // (last + 1)) == 0):
                label = name + (f" (stage {row['pp_rank']})" if last else "")
                results.append({"run": label, **{k: v for k, v in result.items()
                                                 if k != "ranks"},
                                "measured": row["measured"], "predicted": row["predicted"],
                                "ratio": ratios(row)})
    print(f"| run | weights | grads | optimizer | activations | total |\n|---|---|---|---|---|---|")
    for r in results:
        q = r["ratio"]
        print(f"| {r['run']} | {q['params']:.2f} | {q['main_grads']:.2f} | "
              f"{q['optimizer']:.2f} | {q['activations']:.3f} | {q['total']:.3f} |")
    worst = max(abs(v - 1) for r in results for v in r["ratio"].values())
    print(f"\nlargest deviation: {worst:.2%} (predicted / measured, per component)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "plan_accuracy.json").write_text(json.dumps({
        "benchmark": "plan_accuracy", "reference": "one real step per layout, bytes per rank "
        "by kind (--memory-interval 1: buffers, optimizer state, saved-tensor hooks)",
        "runs": results, "largest_deviation": worst,
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "device": "cpu",
                    "torch": torch.__version__, "python": sys.version.split()[0]}}, indent=1))
    print(f"wrote {RESULTS / 'plan_accuracy.json'}")
    return 0 if worst <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
