"""What fault handling (training/fault.py) adds to every training step, against the step.

    python benchmarks/fault_overhead.py             # 2 gloo processes on a CPU
    torchrun --nproc_per_node 8 benchmarks/fault_overhead.py

Per step the guard arms and disarms the hang watchdog (with faulthandler's backstop) and
max-reduces the pre-emption flag over the world (8 bytes, then a host read), and every
blocking collective notes what it waits in. Measured here in the same processes: the step
boundary with the watchdog on and off, the note around a collective (the decorated
`all_reduce` of one element against the undecorated function), and as the reference a
tiny-profile training step. Medians; JSON to benchmarks/results/fault_overhead.json.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from megamed.config import load_config
from megamed.parallel import collectives as C
from megamed.parallel.state import ParallelState
from megamed.training.fault import FaultGuard
from megamed.training.trainer import local_device, pretrain

RESULTS = Path(__file__).resolve().parent / "results"
REPEATS = 200


def _paired_median_us(a, b, repeats: int = REPEATS) -> tuple[float, float]:
    """Medians of `a(i)` and `b(i)`, called alternately so that the machine's load drifts
    over both alike (after a warm-up of each)."""
    a(0), b(0)
    times = ([], [])
    for i in range(1, repeats + 1):
        for fn, out in ((a, times[0]), (b, times[1])):
            start = time.perf_counter()
            fn(i)
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1e6, statistics.median(times[1]) * 1e6


def _boundary(guard: FaultGuard):
    def boundary(i):
        guard.step_started(i + 1)
        guard.step_finished(i + 1)
    return boundary


def measure() -> dict:
    device = local_device()
    state = ParallelState.create(1, 1)
    cfg = load_config("tiny", {"train": {"steps": 8, "log_interval": 100}})
    with FaultGuard(cfg.train) as off, \
            FaultGuard(cfg.replace(train={"step_timeout_s": 600.0}).train) as on:
        for guard in (off, on):
            guard.bind(state, [], None, device)
        on_us, off_us = _paired_median_us(_boundary(on), _boundary(off))
    x = torch.ones(1, device=device)
    undecorated = C.all_reduce.__wrapped__
    noted_us, plain_us = _paired_median_us(lambda i: C.all_reduce(x, state.dp_group),
                                           lambda i: undecorated(x, state.dp_group))
    result = {"boundary_watchdog_on_us": on_us, "boundary_watchdog_off_us": off_us,
              "all_reduce_1_noted_us": noted_us, "all_reduce_1_plain_us": plain_us}
    records = pretrain(cfg)  # the reference: the tiny profile's step, same processes
    if dist.get_rank() == 0:
        step = statistics.median(r["step_time_s"] for r in records[2:]) * 1e6
        result["tiny_step_us"] = step
        result["boundary_share_of_step"] = on_us / step
    return result


def _report(result: dict, world: int) -> None:
    for key, value in result.items():
        print(f"{key:28s} {value:12.4f}" if "share" in key else f"{key:28s} {value:12.1f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "fault_overhead.json"
    out.write_text(json.dumps({
        "machine": platform.node(), "processor": platform.processor(),
        "cpus": os.cpu_count(), "torch": torch.__version__, "world_size": world,
        "backend": dist.get_backend(), "repeats": REPEATS,
        "reference": "tiny-profile training step (tiny_step_us), same processes",
        "result": result}, indent=2) + "\n")
    print(f"wrote {out}")


def _spawned(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    _run(world)


def _run(world: int) -> None:
    try:
        result = measure()
        if dist.get_rank() == 0:
            _report(result, world)
    finally:
        dist.destroy_process_group()


def main() -> int:
    if "RANK" in os.environ:  # under torchrun
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        _run(dist.get_world_size())
        return 0
    with socket.socket() as s:  # a free port for the spawned group
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_spawned, args=(2, port), nprocs=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
