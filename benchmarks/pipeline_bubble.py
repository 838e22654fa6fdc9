"""Pipeline bubble: measured idle fraction of each schedule against the theory.

Stages of known, equal compute time (sleep: forward t / V, backward 2t / V per chunk, so a
micro batch costs the same on every stage whatever V) exchange real tensors over gloo with
the real schedules. Idle fraction = 1 - busy / wall, averaged over stages; the theory for
1F1B and interleaved 1F1B is (P - 1) / (V * M + P - 1) (Narayanan et al. 2021, eq. 1-2).

    python benchmarks/pipeline_bubble.py [--forward-ms 25] [--repeats 3]

Writes benchmarks/results/pipeline_bubble.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from megamed.monitoring.plots import chart_table
from megamed.parallel.pipeline import Runner, select_schedule

CHART = dict(x=("pp", "virtual_stages", "micro_batches"), y=("theory", "measured"),
             ylabel="bubble fraction", title="Pipeline bubble: measured vs (P-1)/(V*M+P-1)")

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class SleepRunner(Runner):
    """A Runner whose passes sleep instead of computing; communication is real."""
    forward_s: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        self.busy = 0.0

    def _work(self, seconds: float) -> None:
        start = time.perf_counter()
        time.sleep(seconds)
        self.busy += time.perf_counter() - start

    def forward(self, chunk, micro, x):
        self._work(self.forward_s / self.virtual_stages)
        return torch.zeros(self.shape)

    def backward(self, chunk, micro, x, y, dy):
        self._work(2 * self.forward_s / self.virtual_stages)
        return torch.zeros(self.shape)


def theory(P: int, V: int, M: int) -> float:
    return (P - 1) / (V * M + P - 1)


def measure(P: int, V: int, M: int, forward_s: float, repeats: int,
            statistic=statistics.median) -> float:
    """`statistic` (median by default) over repeats of the idle fraction averaged over stages
    (every rank returns the same value)."""
    rank = dist.get_rank()
    fractions = []
    for _ in range(repeats):
        run = SleepRunner(P, rank, V, shape=(4,), prev_rank=(rank - 1) % P,
                          next_rank=(rank + 1) % P, forward_s=forward_s)
        dist.barrier()
        start = time.perf_counter()
        select_schedule(P, V)(run, M)
        wall = torch.tensor([time.perf_counter() - start])
        dist.all_reduce(wall, op=dist.ReduceOp.MAX)  # the step ends when the last stage does
        idle = torch.tensor([1 - run.busy / wall.item()])
        dist.all_reduce(idle)
        fractions.append(idle.item() / P)
    return statistic(fractions)


def _worker(rank, P, port, configs, forward_s, repeats, statistic, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=P)
    results = [(V, M, measure(P, V, M, forward_s, repeats, statistic)) for V, M in configs]
    if rank == 0:
        queue.put(results)
    dist.destroy_process_group()


def run_pipeline(P: int, configs: list[tuple[int, int]], forward_s: float,
                 repeats: int, statistic=statistics.median) -> list[tuple[int, int, float]]:
    """Spawns P gloo processes and measures every (V, M) in `configs`."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker,
                         args=(r, P, port, configs, forward_s, repeats, statistic, queue))
             for r in range(P)]
    for p in procs:
        p.start()
    results = queue.get(timeout=600)
    for p in procs:
        p.join()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--forward-ms", type=float, default=25.0,
                        help="sleep per micro batch forward on a stage (backward is 2x)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    parser.add_argument("--out", default=str(RESULTS / "pipeline_bubble.json"))
    args = parser.parse_args(argv)
    rows = []
    print(f"{'P':>2} {'V':>2} {'M':>3} {'theory':>8} {'measured':>9} {'ratio':>6}")
    for P in (2, 4):
        configs = [(V, M) for V in (1, 2) for M in (4, 8, 16)]
        for V, M, measured in run_pipeline(P, configs, args.forward_ms / 1e3, args.repeats):
            expected = theory(P, V, M)
            rows.append({"pp": P, "virtual_stages": V, "micro_batches": M, "theory": expected,
                         "measured": measured, "ratio": measured / expected})
            print(f"{P:>2} {V:>2} {M:>3} {expected:>8.3f} {measured:>9.3f} "
                  f"{measured / expected:>6.2f}", flush=True)
    out = {"benchmark": "pipeline_bubble", "forward_ms": args.forward_ms,
           "backward_ms": 2 * args.forward_ms, "repeats": args.repeats,
           "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                       "python": sys.version.split()[0], "torch": torch.__version__},
           "reference": "theory (P-1)/(V*M+P-1)", "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out} and "
          f"{chart_table(out, path=str(Path(args.out).with_suffix('.png')), **CHART)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
