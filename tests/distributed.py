"""Runs a function in N gloo processes on free localhost ports.

`run_distributed(fn, world_size, *args)` starts `world_size` processes, initialises a gloo
process group in each, calls `fn(*args)` and returns the per-rank results in rank order.
A child's exception is re-raised here with its rank and traceback.

The processes are forked from a fork server that imported torch and the trainer once
(multiprocessing's "forkserver" start method): every call still gets fresh processes, as
with "spawn" (nothing a test patches in one child reaches another, nor the server, which
only forks), without paying the imports per process, seconds each on a loaded 2-core
machine. A child gets this process's environment and its stdout and stderr as they are
at the call (a fork server's children would otherwise get those it started with: pytest's
capture of the first test that used it).
"""
from __future__ import annotations

import datetime
import os
import pickle
import socket
import tempfile
import traceback
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp
from multiprocessing import reduction


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Imported once in the fork server; each child is a fork of it. Only imports: the server
# must run no torch operation (a forked OpenMP pool would hang the children).
PRELOAD = ["torch", "torch.distributed", "megamed.training.trainer"]
TIMEOUT = datetime.timedelta(seconds=120)


def _context():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class _Stdio:
    """This process's stdout and stderr, pickled as descriptors the child inherits."""

    def __reduce__(self):
        return tuple, ([reduction.DupFd(1), reduction.DupFd(2)],)


def _worker(rank, world_size, port, out_dir, fn, args, environ, stdio):
    os.environ.clear()
    os.environ.update(environ)
    for target, inherited in zip((1, 2), stdio):
        fd = inherited.detach()
        os.dup2(fd, target)
        os.close(fd)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    # One thread per process: the tests run several processes on a 2-core machine.
    import torch
    torch.set_num_threads(1)
    path = Path(out_dir) / f"rank{rank}.pkl"
    try:
        store = dist.TCPStore("127.0.0.1", port, world_size, is_master=False, timeout=TIMEOUT)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size,
                                timeout=TIMEOUT)
        # Before and after `fn`: no rank closes its sockets while another still sets up its
        # connections to it (of the world or of a group `fn` made last), which fails the
        # slower rank with "Connection closed by peer" in connectFullMesh.
        dist.barrier()
        result = fn(*args)
        if dist.is_initialized():  # the entry point destroys its process group itself
            dist.barrier()
        with open(path, "wb") as f:
            pickle.dump(("ok", result), f)
    except BaseException:
        with open(path, "wb") as f:
            pickle.dump(("error", traceback.format_exc()), f)
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


class ChildError(RuntimeError):
    pass


def run_distributed(fn, world_size: int, *args) -> list:
    # The rendezvous store lives here, on a port the kernel picks as it binds: no other
    # test or test suite on the machine can take the port between choice and use.
    store = dist.TCPStore("127.0.0.1", 0, world_size, is_master=True, timeout=TIMEOUT,
                          wait_for_workers=False)
    with tempfile.TemporaryDirectory() as out_dir:
        ctx = _context()
        port = store.port
        environ = dict(os.environ)
        procs = [ctx.Process(target=_worker,
                             args=(r, world_size, port, out_dir, fn, args, environ, _Stdio()))
                 for r in range(world_size)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=600)
        results, errors = [], []
        for r, p in enumerate(procs):
            if p.is_alive():
                p.kill()
            path = Path(out_dir) / f"rank{r}.pkl"
            if not path.exists():
                errors.append(f"rank {r}: exited with code {p.exitcode} and no result")
                continue
            status, value = pickle.loads(path.read_bytes())
            if status == "error":
                errors.append(f"rank {r} raised:\n{value}")
            results.append(value)
        if errors:
            raise ChildError("\n".join(errors))
        return results
