"""Every collective of the codebase, as paired autograd functions (forward op, backward op).

Megatron-Core's `tensor_parallel/mappings.py` is the model: a reader can point to the line
where each collective happens, and a backend quirk (gloo vs NCCL) has one place to be handled.

    function                      forward                  backward
    copy_to_region                identity                 all-reduce
    reduce_from_region            all-reduce               identity
    scatter_to_region(dim)        keep my slice            all-gather
    gather_from_region(dim)       all-gather               keep my slice
    reduce_scatter_to_region(dim) reduce-scatter           all-gather
    all_gather_from_region(dim)   all-gather               reduce-scatter

All are no-ops on a group of size 1, so a TP=1 model is exactly its torch twin.

Flat asynchronous collectives for data parallelism (bucketed gradient reduction, ZeRO
parameter gathers) return a `Pending` whose `wait()` completes them; `ShapeGroup` stands in
for a group when one rank's model is built on the `meta` device to count its memory.

Point-to-point: `exchange` is the pipeline's one batched send/receive with both neighbours
(activations forward, gradients backward); `barrier` orders the checkpoint writers.

Every blocking call notes what it waits in (`blocked_in`), so that the hang watchdog
(training/fault.py) can say which collective a stuck rank is waiting for.
"""
from __future__ import annotations

import functools
import threading
import time

import torch
import torch.distributed as dist

Group = dist.ProcessGroup

# torch 2.13 renamed the flat-tensor collectives (`*_single`) and deprecates the old names;
# the GPU images still ship torch 2.11, which has only the old ones. Same signatures.
_all_gather_flat = getattr(dist, "all_gather_single", dist.all_gather_into_tensor)
_reduce_scatter_flat = getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)


class ShapeGroup:
    """A process-group stand-in with only a size and this rank's position in it: enough to
    build one rank's model (shapes) on the `meta` device without processes. Any collective
    on it fails, as nothing can be communicated."""

    def __init__(self, size: int, rank: int = 0):
        self.size, self.rank = size, rank


def group_size(group: Group) -> int:
    return group.size if isinstance(group, ShapeGroup) else dist.get_world_size(group)


def group_rank(group: Group) -> int:
    return group.rank if isinstance(group, ShapeGroup) else dist.get_rank(group)


# -- what each thread is blocked in (for the hang watchdog) ---------------------------------

# thread id -> (operation, group, tensor shape, dtype, monotonic start). A dict store and a
# pop per blocking call: cheap next to any collective. Not a thread-local, because the
# watchdog reads it from its own thread.
_blocked: dict[int, tuple] = {}


class _Blocking:
    """`with _Blocking(op, group, x):` marks this thread as waiting in `op` until it returns."""
    __slots__ = ("thread",)

    def __init__(self, op: str, group, x: torch.Tensor = None):
        self.thread = threading.get_ident()
        _blocked[self.thread] = (op, group, None if x is None else tuple(x.shape),
                                 None if x is None else x.dtype, time.monotonic())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _blocked.pop(self.thread, None)


def _blocking(fn):
    """Decorator for the synchronous collectives `fn(x, group, ...)`."""
    @functools.wraps(fn)
    def wrapper(x, group, *args, **kwargs):
        with _Blocking(fn.__name__, group, x):
            return fn(x, group, *args, **kwargs)
    return wrapper


def _describe_group(group) -> str:
    if isinstance(group, ShapeGroup):
        return f"a shape-only group of {group.size}"
    try:
        return f"ranks {dist.get_process_group_ranks(group or dist.group.WORLD)}"
    except (RuntimeError, ValueError):  # destroyed meanwhile, or not a group of this process
        return "an unknown group"


def blocked_in() -> list[str]:
    """One line per thread of this process that is inside a blocking collective now:
    "all_reduce of (1,) torch.int64 over ranks [0, 1] for 3.1 s (thread MainThread)"."""
    names = {t.ident: t.name for t in threading.enumerate()}
    now, lines = time.monotonic(), []
    for thread, (op, group, shape, dtype, since) in list(_blocked.items()):
        tensor = "" if shape is None else f" of {shape} {dtype}"
        lines.append(f"{op}{tensor} over {_describe_group(group)} for {now - since:.1f} s "
                     f"(thread {names.get(thread, thread)})")
    return lines


# -- raw (non-autograd) operations ---------------------------------------------------------

@_blocking
def all_reduce(x: torch.Tensor, group: Group, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (`op`: sum | max | avg); returns `x`."""
    if group_size(group) > 1:
        reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}.get(op)
        if op == "avg":
            # gloo has no ReduceOp.AVG; sum then divide is exact enough and backend-neutral.
            dist.all_reduce(x, group=group)
            x.div_(group_size(group))
        else:
            dist.all_reduce(x, op=reduce_op, group=group)
    return x


@_blocking
def all_gather(x: torch.Tensor, group: Group, dim: int) -> torch.Tensor:
    """Concatenates every rank's `x` along `dim`."""
    n = group_size(group)
    if n == 1:
        return x
    x = x.movedim(dim, 0).contiguous()
    out = torch.empty((n * x.shape[0],) + x.shape[1:], dtype=x.dtype, device=x.device)
    _all_gather_flat(out, x, group=group)
    return out.movedim(0, dim)


@_blocking
def reduce_scatter(x: torch.Tensor, group: Group, dim: int) -> torch.Tensor:
    """Sums `x` over ranks and keeps this rank's 1/n slice along `dim`."""
    n = group_size(group)
    if n == 1:
        return x
    if x.shape[dim] % n:
        raise ValueError(f"reduce-scatter: dim {dim} of size {x.shape[dim]} not divisible by {n}")
    x = x.movedim(dim, 0).contiguous()
    out = torch.empty((x.shape[0] // n,) + x.shape[1:], dtype=x.dtype, device=x.device)
    _reduce_scatter_flat(out, x, group=group)
    return out.movedim(0, dim)


def split(x: torch.Tensor, group: Group, dim: int) -> torch.Tensor:
    """This rank's contiguous 1/n slice of `x` along `dim`."""
    n = group_size(group)
    if n == 1:
        return x
    if x.shape[dim] % n:
        raise ValueError(f"split: dim {dim} of size {x.shape[dim]} not divisible by {n}")
    return x.chunk(n, dim=dim)[group_rank(group)].contiguous()


# -- asynchronous flat collectives (data parallelism) ----------------------------------------

class Pending:
    """A collective in flight. `wait()` blocks until it is done and then runs the copy a
    backend needed (see `reduce_scatter_async`); waiting twice is a no-op. `op`, `group`
    and `x` say what it is while waiting (`blocked_in`)."""

    def __init__(self, work=None, then=None, op: str = "", group=None, x=None):
        self.work, self.then = work, then
        self.op, self.group, self.x = op, group, x

    def wait(self) -> None:
        if self.work is not None:
            with _Blocking(f"{self.op} (asynchronous)", self.group, self.x):
                self.work.wait()
            self.work = None
        if self.then is not None:
            self.then()
            self.then = None


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _gloo(group: Group) -> bool:
    return dist.get_backend(group) == "gloo"


def all_reduce_async(x: torch.Tensor, group: Group) -> Pending:
    """Starts summing the flat tensor `x` over `group`, in place."""
    if group_size(group) == 1:
        return Pending()
    return Pending(dist.all_reduce(x, group=group, async_op=True), None, "all_reduce", group, x)


def reduce_scatter_async(out: torch.Tensor, x: torch.Tensor, group: Group) -> Pending:
    """Starts `out` <- this rank's 1/n slice of the sum over `group` of the flat `x`.

    `out` may be that slice of `x` itself, which NCCL reduces in place; gloo (torch 2.13)
    returns wrong sums on ranks > 0 when output and input overlap (measured), so on gloo the
    result goes through a temporary that `wait()` copies into `out`."""
    n = group_size(group)
    if n == 1:
        if out.data_ptr() != x.data_ptr():
            out.copy_(x)
        return Pending()
    if _gloo(group) and _same_storage(out, x):
        result = torch.empty_like(out)
        work = _reduce_scatter_flat(result, x, group=group, async_op=True)
        return Pending(work, lambda: out.copy_(result), "reduce_scatter", group, x)
    return Pending(_reduce_scatter_flat(out, x, group=group, async_op=True), None,
                   "reduce_scatter", group, x)


def all_gather_async(out: torch.Tensor, shard: torch.Tensor, group: Group) -> Pending:
    """Starts `out` <- every rank's flat `shard`, concatenated in rank order. `shard` may be
    this rank's slice of `out` (in place); on gloo it is copied first, as for
    `reduce_scatter_async` (a shard-sized copy, not worth a second code path to avoid)."""
    if group_size(group) == 1:
        if out.data_ptr() != shard.data_ptr():
            out.copy_(shard)
        return Pending()
    if _gloo(group) and _same_storage(out, shard):
        shard = shard.clone()
    return Pending(_all_gather_flat(out, shard, group=group, async_op=True), None,
                   "all_gather", group, shard)


# -- point-to-point (pipeline stages) and barriers ------------------------------------------

# Distinct tags keep activations and gradients apart when two stages exchange both ways
# (always the case at PP=2 with interleaving, where prev and next are the same rank).
FORWARD_TAG, BACKWARD_TAG = 1, 2


def exchange(prev_rank: int, next_rank: int, group: Group, sends_first: bool,
             send_next=None, send_prev=None, recv_prev=None, recv_next=None) -> None:
    """One batched exchange with both pipeline neighbours (global ranks): `send_next`
    (activations) and `send_prev` (gradients) go out, `recv_prev` and `recv_next` (empty
    tensors of the expected shape) are filled; any may be None. Returns when all are done.

    `sends_first` alternates by stage (even: sends first, odd: receives first) so that the
    k-th send to a peer meets that peer's k-th receive (what NCCL's grouped p2p matches on)."""
    sends, recvs = [], []
    if send_next is not None:
        sends.append(dist.P2POp(dist.isend, send_next.contiguous(), next_rank, group,
                                FORWARD_TAG))
    if send_prev is not None:
        sends.append(dist.P2POp(dist.isend, send_prev.contiguous(), prev_rank, group,
                                BACKWARD_TAG))
    if recv_prev is not None:
        recvs.append(dist.P2POp(dist.irecv, recv_prev, prev_rank, group, FORWARD_TAG))
    if recv_next is not None:
        recvs.append(dist.P2POp(dist.irecv, recv_next, next_rank, group, BACKWARD_TAG))
    ops = sends + recvs if sends_first else recvs + sends
    if ops:
        with _Blocking(f"exchange (with ranks {prev_rank} and {next_rank})", group):
            for request in dist.batch_isend_irecv(ops):
                request.wait()


def barrier(group: Group = None) -> None:
    """Every rank of `group` (default: the world) has reached this point."""
    if group is None or group_size(group) > 1:
        with _Blocking("barrier", group):
            dist.barrier(group=group)


# -- autograd pairs ------------------------------------------------------------------------

class _CopyToRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x

    @staticmethod
    def backward(ctx, grad):
        return all_reduce(grad.contiguous(), ctx.group), None


class _ReduceFromRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        return all_reduce(x.clone(), group)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _ScatterToRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group, dim):
        ctx.group, ctx.dim = group, dim
        return split(x, group, dim)

    @staticmethod
    def backward(ctx, grad):
        return all_gather(grad, ctx.group, ctx.dim), None, None


class _GatherFromRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group, dim):
        ctx.group, ctx.dim = group, dim
        return all_gather(x, group, dim)

    @staticmethod
    def backward(ctx, grad):
        return split(grad, ctx.group, ctx.dim), None, None


class _ReduceScatterToRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group, dim):
        ctx.group, ctx.dim = group, dim
        return reduce_scatter(x, group, dim)

    @staticmethod
    def backward(ctx, grad):
        return all_gather(grad, ctx.group, ctx.dim), None, None


class _AllGatherFromRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group, dim):
        ctx.group, ctx.dim = group, dim
        return all_gather(x, group, dim)

    @staticmethod
    def backward(ctx, grad):
        return reduce_scatter(grad, ctx.group, ctx.dim), None, None


def copy_to_region(x: torch.Tensor, group: Group) -> torch.Tensor:
    return x if group_size(group) == 1 else _CopyToRegion.apply(x, group)


def reduce_from_region(x: torch.Tensor, group: Group) -> torch.Tensor:
    return x if group_size(group) == 1 else _ReduceFromRegion.apply(x, group)


def scatter_to_region(x: torch.Tensor, group: Group, dim: int = -1) -> torch.Tensor:
    return x if group_size(group) == 1 else _ScatterToRegion.apply(x, group, dim % x.dim())


def gather_from_region(x: torch.Tensor, group: Group, dim: int = -1) -> torch.Tensor:
    return x if group_size(group) == 1 else _GatherFromRegion.apply(x, group, dim % x.dim())


def reduce_scatter_to_region(x: torch.Tensor, group: Group, dim: int = 1) -> torch.Tensor:
    return x if group_size(group) == 1 else _ReduceScatterToRegion.apply(x, group, dim % x.dim())


def all_gather_from_region(x: torch.Tensor, group: Group, dim: int = 1) -> torch.Tensor:
    return x if group_size(group) == 1 else _AllGatherFromRegion.apply(x, group, dim % x.dim())


# -- asynchronous collectives along a dimension (sequence parallelism's backward) -----------

class InFlight:
    """A collective along a tensor dimension in flight; `wait()` returns its result."""

    def __init__(self, pending: Pending, out: torch.Tensor, dim: int):
        self.pending, self.out, self.dim = pending, out, dim

    def wait(self) -> torch.Tensor:
        self.pending.wait()
        return self.out.movedim(0, self.dim)


def all_gather_start(x: torch.Tensor, group: Group, dim: int) -> InFlight:
    """Starts `all_gather(x, group, dim)`; NCCL runs it on its own stream, gloo on its own
    thread, so the caller's next computation overlaps it."""
    n = group_size(group)
    x = x.movedim(dim, 0).contiguous()
    out = torch.empty((n * x.shape[0],) + x.shape[1:], dtype=x.dtype, device=x.device)
    return InFlight(all_gather_async(out, x, group), out, dim)


def reduce_scatter_start(x: torch.Tensor, group: Group, dim: int) -> InFlight:
    """Starts `reduce_scatter(x, group, dim)` (sum, then this rank's 1/n slice of `dim`)."""
    n = group_size(group)
    if x.shape[dim] % n:
        raise ValueError(f"reduce-scatter: dim {dim} of size {x.shape[dim]} not divisible by {n}")
    x = x.movedim(dim, 0).contiguous()
    out = torch.empty((x.shape[0] // n,) + x.shape[1:], dtype=x.dtype, device=x.device)
    return InFlight(reduce_scatter_async(out, x, group), out, dim)


def all_reduce_start(x: torch.Tensor, group: Group) -> InFlight:
    """Starts summing `x` over `group` in place (any shape)."""
    x = x.contiguous()
    return InFlight(all_reduce_async(x, group), x, 0)
