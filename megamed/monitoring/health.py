"""Node health check (`tools/health_check.py`): GPUs through NVML, an all-reduce smoke test,
and the storage a run writes checkpoints to. Each check gives a `Check` with status ok,
fail or absent (no GPU on a CPU machine is absent, not a failure); the report fails if any
check fails.

Thresholds come from `GPU_LIMITS`, one row per GPU model of the hardware profiles (H200 for
M-32B, A100 80GB for S-32B): the hottest a GPU may run, and the lowest maximum SM clock it
may report (a GPU whose clocks are capped below its spec slows the whole synchronous job).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from megamed.monitoring.nvml import GpuReading, Nvml, NvmlUnavailable

# model substring -> (max temperature C, min max-SM-clock MHz); the datasheet boost clocks
# are 1980 (H100/H200) and 1410 (A100) MHz; the temperature limit leaves room below the
# ~87-90 C slowdown thresholds.
GPU_LIMITS = {"H200": (85, 1900), "H100": (85, 1900), "A100": (85, 1350), "L40S": (85, 2400)}
DEFAULT_LIMITS = (85, 0)


@dataclass
class Check:
    name: str
    status: str  # ok | fail | absent
    detail: str
    values: dict = field(default_factory=dict)


@dataclass
class HealthReport:
    host: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def to_dict(self) -> dict:
        return {"host": self.host, "ok": self.ok, "checks": [asdict(c) for c in self.checks]}

    def text(self) -> str:
        lines = [f"health check on {self.host}: {'PASS' if self.ok else 'FAIL'}"]
        lines += [f"  [{c.status.upper():>6}] {c.name}: {c.detail}" for c in self.checks]
        return "\n".join(lines)


def gpu_problems(r: GpuReading) -> list[str]:
    """What is wrong with one GPU, judged against its model's row of GPU_LIMITS."""
    max_temp, min_clock = next((v for k, v in GPU_LIMITS.items() if k in r.name),
                               DEFAULT_LIMITS)
    problems = []
    if r.ecc_uncorrected:
        problems.append(f"{r.ecc_uncorrected} uncorrected ECC errors")
    if r.temperature_celsius is not None and r.temperature_celsius > max_temp:
        problems.append(f"temperature {r.temperature_celsius:.0f} C > {max_temp} C")
    if r.max_sm_clock_mhz is not None and r.max_sm_clock_mhz < min_clock:
        problems.append(f"max SM clock {r.max_sm_clock_mhz} MHz < {min_clock} MHz")
    if r.slowdowns:
        problems.append("clocks slowed down: " + ", ".join(r.slowdowns))
    return problems


def check_gpus(expected: Optional[int] = None) -> list[Check]:
    try:
        nvml = Nvml()
    except NvmlUnavailable as e:
        status = "fail" if expected else "absent"
        return [Check("gpus", status, f"no GPU telemetry ({e})")]
    try:
        readings = nvml.read()
    finally:
        nvml.close()
    checks = []
    if expected is not None and len(readings) != expected:
        checks.append(Check("gpu count", "fail", f"{len(readings)} GPUs visible, expected "
                                                 f"{expected}"))
    for r in readings:
        problems = gpu_problems(r)
        detail = "; ".join(problems) if problems else (
            f"{r.name}, {r.temperature_celsius} C, {r.power_watts} W, SM {r.sm_clock_mhz}/"
            f"{r.max_sm_clock_mhz} MHz, ECC uncorrected {r.ecc_uncorrected}")
        checks.append(Check(f"gpu {r.index}", "fail" if problems else "ok", detail, asdict(r)))
    return checks


def check_all_reduce(timeout_s: float = 120.0) -> Check:
    """Every visible GPU (NCCL) or 2 CPU processes (gloo) all-reduce a tensor of ones; each
    must get the world size back. Uses torch.distributed directly: this tests the backend
    itself, below megamed's own collectives."""
    import torch
    import torch.multiprocessing as mp
    gpus = torch.cuda.device_count()
    backend, world = ("nccl", gpus) if gpus else ("gloo", 2)
    with tempfile.TemporaryDirectory() as out, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        # Spawn, never fork: a child forked from a process whose torch thread pools already
        # run (a trainer, a test session) can deadlock in them; CUDA cannot be forked into.
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_all_reduce_rank, args=(r, world, backend, port, out))
                 for r in range(world)]
        started = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join(max(1.0, timeout_s - (time.perf_counter() - started)))
        hung = [r for r, p in enumerate(procs) if p.is_alive()]
        for p in procs:
            if p.is_alive():
                p.kill()
        results = [Path(out, f"{r}.txt").read_text() if Path(out, f"{r}.txt").exists()
                   else f"rank {r}: exited with code {procs[r].exitcode}" for r in range(world)]
    failed = [t for t in results if not t.startswith("ok")]
    name = f"all-reduce ({backend}, {world} processes)"
    if hung:
        return Check(name, "fail", f"ranks {hung} hung for {timeout_s:.0f} s")
    if failed:
        return Check(name, "fail", "; ".join(failed))
    seconds = max(float(t.split()[1]) for t in results)
    return Check(name, "ok", f"every rank got {world}.0 back; 64 MiB all-reduce "
                             f"{seconds * 1e3:.1f} ms", {"seconds": seconds, "world": world})


def _all_reduce_rank(rank: int, world: int, backend: str, port: int, out: str) -> None:
    import datetime

    import torch
    import torch.distributed as dist
    try:
        device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
        if backend == "nccl":
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world, timeout=datetime.timedelta(seconds=60))
        x = torch.ones(16 * 2**20, device=device)  # 64 MiB of fp32
        dist.all_reduce(x)  # warm-up: the first call sets up the communicator
        x.fill_(1.0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        dist.all_reduce(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        wrong = int((x != world).sum())
        text = f"ok {seconds}" if not wrong else f"rank {rank}: {wrong} wrong elements"
        dist.destroy_process_group()
    except Exception as e:  # noqa: BLE001 - reported to the parent as the check's reason
        text = f"rank {rank}: {type(e).__name__}: {e}"
    Path(out, f"{rank}.txt").write_text(text)


def check_storage(path: str, size_mb: int = 64, min_free_gb: float = 1.0) -> Check:
    """Writes size_mb to a file under path (fsync), reads it back and compares checksums;
    reports both throughputs and the free space."""
    name = f"storage {path}"
    root = Path(path)
    if not root.is_dir():
        return Check(name, "fail", "not an existing directory")
    free_gb = shutil.disk_usage(root).free / 1e9
    block = os.urandom(1 << 20)
    try:
        with tempfile.NamedTemporaryFile(dir=root, prefix=".megamed-health-") as f:
            started = time.perf_counter()
            digest = hashlib.sha256()
            for _ in range(size_mb):
                f.write(block)
                digest.update(block)
            f.flush()
            os.fsync(f.fileno())
            write_s = time.perf_counter() - started
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # read the disk
            started = time.perf_counter()
            with open(f.name, "rb") as back:
                readback = hashlib.sha256()
                while chunk := back.read(1 << 22):
                    readback.update(chunk)
            read_s = time.perf_counter() - started
    except OSError as e:
        return Check(name, "fail", f"cannot write and read a test file: {e.strerror or e}",
                     {"free_gb": free_gb})
    values = {"write_mb_s": size_mb / write_s, "read_mb_s": size_mb / read_s,
              "free_gb": free_gb}
    detail = (f"write {values['write_mb_s']:.0f} MB/s, read {values['read_mb_s']:.0f} MB/s, "
              f"{free_gb:.1f} GB free")
    if readback.digest() != digest.digest():
        return Check(name, "fail", "data read back differs from what was written", values)
    if free_gb < min_free_gb:
        return Check(name, "fail", f"only {free_gb:.1f} GB free < {min_free_gb} GB", values)
    return Check(name, "ok", detail, values)


def run_health_check(path: str = ".", only: Optional[list[str]] = None,
                     expected_gpus: Optional[int] = None, size_mb: int = 64,
                     min_free_gb: float = 1.0) -> HealthReport:
    only = only or ["gpu", "allreduce", "storage"]
    checks = []
    if "gpu" in only:
        checks += check_gpus(expected_gpus)
    if "allreduce" in only:
        checks.append(check_all_reduce())
    if "storage" in only:
        checks.append(check_storage(path, size_mb, min_free_gb))
    return HealthReport(socket.gethostname(), checks)
