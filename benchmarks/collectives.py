"""Collective bandwidth (all-reduce, all-gather, reduce-scatter, p2p) in nccl-tests' terms.

    python benchmarks/collectives.py                      # spawns 2 gloo processes on a CPU
    torchrun --nproc_per_node 8 benchmarks/collectives.py # NCCL over the GPUs of a node
    srun ... torchrun ... benchmarks/collectives.py       # across nodes: accept the fabric

algbw = bytes / time; busbw (what the links carry, comparable across world sizes) =
algbw x 2(n-1)/n for all-reduce and x (n-1)/n for all-gather and reduce-scatter (nccl-tests,
PERFORMANCE.md). The reference, measured in the same run, is a local device copy of the same
bytes: the ceiling of any transfer on one host. Medians over iterations; JSON to
benchmarks/results/collectives.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from megamed.monitoring.plots import chart_table
from megamed.parallel import collectives as C

CHART = dict(x=("op", "bytes"), y=("busbw_gbs", "copy_gbs"), ylabel="GB/s", log=True,
             title="Collective bus bandwidth vs a local copy of the same bytes")

RESULTS = Path(__file__).resolve().parent / "results"
BUS_FACTOR = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
              "reduce_scatter": lambda n: (n - 1) / n, "send_recv": lambda n: 1.0}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _op(name: str, buf: torch.Tensor, world: int, rank: int):
    """One collective on `buf` (its bytes are the message size)."""
    if name == "all_reduce":
        return lambda: dist.all_reduce(buf)
    if name == "all_gather":
        shard = buf.narrow(0, rank * (buf.numel() // world), buf.numel() // world)
        return lambda: C._all_gather_flat(buf, shard)
    if name == "reduce_scatter":
        out = torch.empty(buf.numel() // world, dtype=buf.dtype, device=buf.device)
        return lambda: C._reduce_scatter_flat(out, buf)
    peer = rank ^ 1  # pairs (0,1), (2,3), ...: every rank sends and receives at once

    def send_recv():
        recv = torch.empty_like(buf)
        for req in dist.batch_isend_irecv([dist.P2POp(dist.isend, buf, peer),
                                           dist.P2POp(dist.irecv, recv, peer)]):
            req.wait()
    return send_recv


def timed(fn, device, iters: int) -> float:
    times = []
    for _ in range(iters + 2):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def measure(ops: list[str], sizes: list[int], iters: int, device) -> list[dict]:
    world, rank = dist.get_world_size(), dist.get_rank()
    rows = []
    for size in sizes:
        numel = size // 4 // world * world
        buf = torch.ones(numel, dtype=torch.float32, device=device)
        copy_s = timed(lambda: torch.empty_like(buf).copy_(buf), device, iters)
        for name in ops:
            if name == "send_recv" and world % 2:
                continue
            fn = _op(name, buf, world, rank)
            dist.barrier()
            t = torch.tensor([timed(fn, device, iters)], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)  # a collective is as slow as its slowest rank
            algbw = numel * 4 / t.item()
            rows.append({"op": name, "bytes": numel * 4, "time_s": t.item(),
                         "algbw_gbs": algbw / 1e9, "busbw_gbs": algbw * BUS_FACTOR[name](world) / 1e9,
                         "copy_gbs": numel * 4 / copy_s / 1e9})
    return rows


def report(rows, world, backend, device, out):
    print(f"{'op':<15} {'bytes':>12} {'time ms':>9} {'algbw GB/s':>11} {'busbw GB/s':>11} "
          f"{'copy GB/s':>10} {'bus/copy':>9}")
    for r in rows:
        print(f"{r['op']:<15} {r['bytes']:>12,} {r['time_s'] * 1e3:>9.3f} {r['algbw_gbs']:>11.2f} "
              f"{r['busbw_gbs']:>11.2f} {r['copy_gbs']:>10.2f} "
              f"{r['busbw_gbs'] / r['copy_gbs']:>9.3f}")
    result = {"benchmark": "collectives", "backend": backend, "world_size": world,
              "reference": "local device copy of the same bytes",
              "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                          "device": torch.cuda.get_device_name() if device.type == "cuda"
                          else "cpu", "torch": torch.__version__},
              "rows": rows}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1))
    chart = chart_table(result, path=str(Path(out).with_suffix(".png")), **CHART)
    print(f"wrote {out} and {chart}")


def run(args) -> None:
    backend = args.backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend)
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    sizes = [int(float(s) * 2**20) for s in args.sizes_mb.split(",")]
    rows = measure(args.ops.split(","), sizes, args.iters, device)
    if dist.get_rank() == 0:
        report(rows, dist.get_world_size(), backend, device, args.out)
    dist.destroy_process_group()


def _spawned(rank, world, port, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    run(args)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Collective bus bandwidth.")
    p.add_argument("--backend", choices=["nccl", "gloo"], help="default: nccl with CUDA")
    p.add_argument("--world", type=int, default=2,
                   help="processes to spawn when not launched by torchrun")
    p.add_argument("--ops", default="all_reduce,all_gather,reduce_scatter,send_recv")
    p.add_argument("--sizes-mb", default="1,16,64", help="message sizes in MiB")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", default=str(RESULTS / "collectives.json"))
    args = p.parse_args(argv)
    if "RANK" in os.environ:
        run(args)
        return 0
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_spawned, args=(args.world, port, args), nprocs=args.world)
    return 0


if __name__ == "__main__":
    sys.exit(main())
