"""What a checkpoint costs the training loop, and how fast one comes back.

    python benchmarks/checkpoint.py                    # demo + a ~67M-parameter decoder
    python benchmarks/checkpoint.py --repeats 5 --sizes demo

One process (a gloo world of one) builds each model with its optimizer exactly as the
trainer does (training/trainer.py) and, per repeat, times through training/checkpointing.py:

  blocked_s       a background save: the time the step waits (gather and copy to CPU)
  total_s         the same save until published (written, fsynced, checksummed, renamed)
  sync_s          a synchronous save of the same state (--no-async-save): what the step
                  would wait without the background thread
  load_s          resume: pick the newest step, read and sha256-verify the files, unpickle
  copy_s          shutil.copy of the same files to another folder (no fsync; the reference
                  for the bytes moved), and copy_fsync_s with an fsync of each copy

with the bytes written and the number of files; GB/s = bytes / time. Medians over the
repeats. The files are read back from the page cache (just written), so load_s measures
verification and unpickling rather than the disk. JSON to benchmarks/results/checkpoint.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from megamed.config import count_parameters, load_config, resolve  # noqa: E402
from megamed.model.build import build_chunks  # noqa: E402
from megamed.parallel.data import data_parallel  # noqa: E402
from megamed.parallel.random import seed_streams  # noqa: E402
from megamed.parallel.state import ParallelState, init_distributed  # noqa: E402
from megamed.training.checkpointing import Checkpointer  # noqa: E402
from megamed.training.optimizer import build_optimizer  # noqa: E402
from megamed.training.trainer import checkpoint_state  # noqa: E402

SIZES = {
    "demo": ("demo", {}),
    "decoder-67m": ("tiny", {"num_layers": 6, "hidden_size": 768, "num_heads": 12,
                             "num_kv_heads": 4, "ffn_hidden_size": 2048,
                             "vocab_size": 16000, "seq_length": 128}),
}


def build(profile: str, model: dict, async_save: bool):
    cfg = resolve(load_config(profile, {"model": model, "train": {"async_save": async_save}}),
                  1, "cpu")
    state = ParallelState.create(1, 1)
    rng = seed_streams(cfg.train.seed, 0, 0)
    chunks = build_chunks(cfg, state.tp_group, 0, torch.device("cpu"), rng, seed=1)
    grads = data_parallel(chunks, state, cfg.parallel)
    optimizer = build_optimizer(grads, cfg.train, state, cfg.parallel.zero_stage)
    return cfg, state, (lambda step: checkpoint_state(step, state, chunks, grads, optimizer,
                                                      rng))


def step_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name != "meta.json")


def copy_files(files: list[Path], dst: Path, fsync: bool) -> float:
    dst.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for f in files:
        target = dst / f.name
        shutil.copy(f, target)
        if fsync:
            with open(target, "rb+") as g:
                os.fsync(g.fileno())
    return time.perf_counter() - started


def measure(name: str, profile: str, model: dict, repeats: int, work: Path) -> dict:
    cfg, state, collect = build(profile, model, True)
    _, _, collect_sync = build(profile, model, False)
    rows = {k: [] for k in ("blocked_s", "total_s", "sync_s", "load_s", "copy_s",
                            "copy_fsync_s")}
    for r in range(repeats):
        root = work / f"{name}_{r}"
        background = Checkpointer(cfg, state, save=str(root))
        started = time.perf_counter()
        background.save(1, collect)
        rows["blocked_s"].append(time.perf_counter() - started)
        background.wait()
        rows["total_s"].append(time.perf_counter() - started)
        sync = Checkpointer(cfg.replace(train={"async_save": False}), state,
                            save=str(work / f"{name}_sync_{r}"))
        started = time.perf_counter()
        sync.save(1, collect_sync)
        rows["sync_s"].append(time.perf_counter() - started)
        started = time.perf_counter()
        step, _ = Checkpointer(cfg, state, load=str(root)).resume()
        rows["load_s"].append(time.perf_counter() - started)
        files = step_files(root / "step_0000001")
        rows["copy_s"].append(copy_files(files, work / f"copy_{name}_{r}", False))
        rows["copy_fsync_s"].append(copy_files(files, work / f"copyf_{name}_{r}", True))
        nbytes, nfiles = sum(f.stat().st_size for f in files), len(files) + 1  # + meta.json
        for d in (root, work / f"{name}_sync_{r}", work / f"copy_{name}_{r}",
                  work / f"copyf_{name}_{r}"):
            shutil.rmtree(d)
    med = {k: statistics.median(v) for k, v in rows.items()}
    row = {"size": name, "parameters": count_parameters(cfg.model, 1), "bytes": nbytes,
           "files": nfiles, "repeats": repeats, **{k: round(v, 4) for k, v in med.items()},
           "samples": {k: [round(x, 4) for x in v] for k, v in rows.items()}}
    for k in ("total_s", "sync_s", "load_s", "copy_s", "copy_fsync_s"):
        row[k.replace("_s", "_gb_per_s")] = round(nbytes / med[k] / 1e9, 3)
    row["blocked_vs_sync"] = round(med["blocked_s"] / med["sync_s"], 3)
    print(f"{name}: {row['parameters']:,} parameters, {nbytes / 1e6:.1f} MB in {nfiles} files "
          f"| step blocked {med['blocked_s']:.3f} s (background save, published after "
          f"{med['total_s']:.3f} s) vs synchronous {med['sync_s']:.3f} s "
          f"({row['blocked_vs_sync']:.0%}) | load {med['load_s']:.3f} s "
          f"({row['load_gb_per_s']} GB/s) | shutil.copy {row['copy_gb_per_s']} GB/s, "
          f"+fsync {row['copy_fsync_gb_per_s']} GB/s, save {row['sync_gb_per_s']} GB/s",
          flush=True)
    return row


def main(argv=None) -> int:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    a.add_argument("--repeats", type=int, default=3)
    a.add_argument("--dir", help="where to write (default: a temporary folder)")
    a.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "checkpoint.json"))
    args = a.parse_args(argv)
    torch.set_num_threads(1)
    init_distributed("gloo")
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        rows = [measure(s, *SIZES[s], args.repeats, Path(work)) for s in args.sizes]
    dist.destroy_process_group()
    result = {"benchmark": "checkpoint", "date": datetime.datetime.now(datetime.timezone.utc)
              .isoformat(timespec="seconds"), "host": socket.gethostname(),
              "machine": platform.machine(), "cpus": os.cpu_count(),
              "torch": torch.__version__, "statistic": "median", "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
