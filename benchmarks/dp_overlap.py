"""How much of the data-parallel gradient reduction hides behind backward.

    python benchmarks/dp_overlap.py                    # 2 gloo processes on this machine
    python benchmarks/dp_overlap.py --world 4 --bucket-mb 1 4 --profile demo

Each process builds the profile's model (DP = world), wraps it in the bucketed gradient
buffers of parallel/data.py and times, per iteration (the modes
interleaved so drift hits all alike; the fastest of the timed iterations, since other
processes on a shared machine only ever add time):

  backward          forward excluded; gradients land in the fp32 buffers, nothing reduced
  reduction         the whole reduction alone, after a backward (all buckets, then wait)
  serial            backward, then the reduction (--no-overlap-grad-reduce): the reference
  overlapped        backward with each full bucket reduced while backward continues, plus
                    the wait for the last ones (what training does)

hidden = (serial - overlapped) / reduction: the share of the reduction time that no longer
adds to the step. The overlapped time is also split into its backward part and the wait
left after it: a small exposed wait with a backward slowed by as much means the buckets
did reduce during backward but the communication took its time from the same cores. ZeRO-1
rows all-reduce, ZeRO-2 rows reduce-scatter. On a CPU, gloo's communication threads need
cores that backward is using (with one compute thread per process and no idle core nothing
can be hidden); NCCL on GPUs moves the bytes with its own kernels and copy engines. JSON to
benchmarks/results/dp_overlap.json with the machine and versions.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from megamed.config import load_config
from megamed.model.build import build_chunks
from megamed.monitoring.plots import chart_table
from megamed.parallel.data import DataParallelGrads
from megamed.parallel.state import ParallelState

CHART = dict(x=("zero_stage", "bucket_mb"), y=("serial_s", "overlapped_s", "backward_s"),
             ylabel="seconds per step", title="DP gradient reduction: serial vs overlapped")

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("backward", "reduction", "serial", "overlapped")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(grads: DataParallelGrads, model, tokens, mode: str) -> tuple[float, float]:
    """Seconds of one `mode` (see the module docstring): (all of it, its backward part)."""
    grads.zero_grad()
    loss = model(tokens[:, :-1], tokens[:, 1:]).mean()
    grads.overlap_grad_reduce = mode == "overlapped"
    if mode in ("serial", "overlapped"):
        grads.last_backward(0)  # the last micro batch: buckets may reduce as they fill
    if mode == "reduction":
        loss.backward()
    dist.barrier()  # every rank starts together, so the collectives do not wait on skew
    start = time.perf_counter()
    if mode != "reduction":
        loss.backward()
    backward_done = time.perf_counter()
    if mode != "backward":
        grads.finish_grad_sync()
    return time.perf_counter() - start, backward_done - start


def _rows_for(args, state: ParallelState) -> list[dict]:
    base = load_config(args.profile, {"train": {"micro_batch": args.micro_batch}})
    m = base.model
    tokens = torch.randint(0, m.vocab_size, (args.micro_batch, m.seq_length + 1),
                           generator=torch.Generator().manual_seed(0))
    rows = []
    for zero_stage in (1, 2):
        for bucket_mb in args.bucket_mb:
            cfg = base.replace(parallel={"dp": state.dp, "zero_stage": zero_stage,
                                         "bucket_mb": bucket_mb})
            model, = build_chunks(cfg, state.tp_group, state.pp_rank, "cpu",
                                  seed=cfg.train.seed)
            grads = DataParallelGrads([model], state, cfg.parallel)
            times = {mode: [] for mode in MODES}
            for i in range(args.warmup + args.iters):
                for mode in MODES[i % len(MODES):] + MODES[:i % len(MODES)]:
                    t = _measure(grads, model, tokens, mode)
                    if i >= args.warmup:
                        times[mode].append(t)
            best = {mode: min(ts) for mode, ts in times.items()}
            rows.append({"zero_stage": zero_stage, "bucket_mb": bucket_mb,
                         "buckets": len(grads.buckets),
                         "gradient_mb": sum(b.grad.numel() for b in grads.buckets) * 4 / 2**20,
                         **{f"{k}_s": v[0] for k, v in best.items()},
                         # Overlapped: how long backward itself took with the reductions
                         # running beside it, and the wait left after it.
                         "overlapped_backward_s": best["overlapped"][1],
                         "exposed_wait_s": best["overlapped"][0] - best["overlapped"][1],
                         "hidden": (best["serial"][0] - best["overlapped"][0]) /
                         best["reduction"][0]})
    return rows


def _worker(rank: int, world: int, port: int, args, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=300))
    try:
        rows = _rows_for(args, ParallelState.create(1, 1))
        if rank == 0:
            Path(out).write_text(json.dumps(rows))
    finally:
        dist.destroy_process_group()


def format_table(rows: list[dict]) -> str:
    lines = [f"{'ZeRO':>4} {'bucket MiB':>10} {'buckets':>7} {'backward':>8} {'reduction':>9} "
             f"{'serial':>6} {'overlapped':>10} {'(its backward':>13} {'+ exposed)':>10} "
             f"{'hidden':>6}   (ms)"]
    for r in rows:
        ms = {k: 1e3 * r[f"{k}_s"] for k in ("backward", "reduction", "serial", "overlapped",
                                             "overlapped_backward", "exposed_wait")}
        lines.append(f"{r['zero_stage']:>4} {r['bucket_mb']:>10g} {r['buckets']:>7} "
                     f"{ms['backward']:>8.1f} {ms['reduction']:>9.1f} {ms['serial']:>6.1f} "
                     f"{ms['overlapped']:>10.1f} {ms['overlapped_backward']:>13.1f} "
                     f"{ms['exposed_wait']:>10.1f} {r['hidden']:>6.0%}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Share of the DP gradient reduction hidden "
                                "behind backward (bucketed, overlapped) on gloo processes.")
    p.add_argument("--world", type=int, default=2, help="DP processes to spawn")
    p.add_argument("--profile", default="demo", help="model profile (configs/NAME.yaml)")
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--bucket-mb", type=float, nargs="+", default=[1.0, 4.0])
    p.add_argument("--iters", type=int, default=12, help="timed iterations per mode")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--out", default=str(RESULTS / "dp_overlap.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows_path = os.path.join(tmp, "rows.json")
        mp.spawn(_worker, args=(args.world, _free_port(), args, rows_path), nprocs=args.world)
        rows = json.loads(Path(rows_path).read_text())
    print(f"DP {args.world} (gloo), profile {args.profile}, micro batch {args.micro_batch}; "
          f"fastest of {args.iters} iterations")
    print(format_table(rows))
    result = {"benchmark": "dp_overlap", "backend": "gloo", "world_size": args.world,
              "profile": args.profile, "micro_batch": args.micro_batch,
              "reference": "serial: backward, then the whole reduction",
              "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                          "threads_per_process": args.threads, "device": "cpu",
                          "torch": torch.__version__, "python": platform.python_version()},
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    chart_table(result, path=str(Path(args.out).with_suffix(".png")), **CHART)
    return 0


if __name__ == "__main__":
    sys.exit(main())
