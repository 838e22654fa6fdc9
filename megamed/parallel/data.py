"""Data parallelism: contiguous fp32 main-gradient buffers reduced in buckets while backward
runs, and the parameter sharding behind the distributed optimizer (ZeRO stages 1-3).

ZeRO (Rajbhandari et al. 2020, section 5): stage 1 partitions the optimizer state (fp32
master weights and Adam moments) over DP and all-reduces gradients; stage 2 reduce-scatters
them instead, each rank keeping the reduced shard it updates; after the step every rank
all-gathers the updated parameters. Stage 3 also partitions the parameters: each block is
gathered for its forward and again for its backward, with the next one prefetched.

Stages 0-2 keep, per model chunk and parameter dtype, one flat buffer of parameters and one
of fp32 main gradients with the same offsets (each parameter is a view of the first,
`p.main_grad` of the second):

    buffer  | bucket 0 (last layers) | bucket 1 | ... | deferred buckets (see KINDS) |
    bucket  | rank 0's shard | rank 1's shard | ... |    padded to DP x ALIGN elements

Parameters enter in reverse order of use, so backward fills bucket 0 first. A hook on each
parameter's gradient accumulation adds the micro batch's gradient into its main gradient and
frees `p.grad`; on the last micro batch of a step (per model chunk: the pipeline runner arms
the chunk before its last backward) a full bucket starts its asynchronous all-reduce or
reduce-scatter on the DP group while backward continues (DeepSpeed's `overlap_comm`,
Megatron's `overlap_grad_reduce`). `finish_grad_sync` waits for all before the step.

Every DP collective of the gradients and parameters is in this file (through `collectives`);
the logged loss is averaged in training/loss.py.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial
from typing import Optional, Protocol, Sequence

import torch
import torch.nn as nn

from megamed.config import ParallelConfig, bucket_elements
from megamed.parallel import collectives as C
from megamed.parallel.random import Recomputation
from megamed.parallel.state import ParallelState

# Each rank's shard of a bucket starts a multiple of 64 elements (256 B in fp32) apart, the
# alignment NCCL and vectorised optimizer kernels want.
ALIGN = 64

# Buffer regions in buffer order. Gradients of TP-replicated parameters under sequence
# parallelism (norm weights, row-parallel biases: each TP rank saw part of the sequence)
# need a sum over TP, and the two copies of a tied embedding on the first and last pipeline
# stage a sum over the embedding group, before the DP reduction. They are tiny or few, so
# they sit in buckets of their own, reduced after backward instead of during it.
OVERLAPPED, TP_REPLICATED, TIED = "overlapped", "tp_replicated", "tied"
KINDS = (OVERLAPPED, TP_REPLICATED, TIED)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass(frozen=True)
class BucketLayout:
    start: int
    end: int                  # exclusive; end - start splits into `shards` equal parts
    params: tuple[int, ...]   # indices into the buffer's parameter list
    kind: str

    def shard(self, rank: int, shards: int) -> tuple[int, int]:
        size = (self.end - self.start) // shards
        return self.start + rank * size, self.start + (rank + 1) * size


def plan_buffer(numels: Sequence[int], kinds: Sequence[str], bucket_elems: int,
                shards: int) -> tuple[list[int], list[BucketLayout]]:
    """Offsets of the parameters in a flat buffer and its buckets (pure arithmetic, shared by
    the real buffers and the meta-device memory calculator).

    Parameters keep their order within a kind, kinds follow KINDS; a bucket closes once it
    holds `bucket_elems` elements or the kind changes (a parameter never straddles two
    buckets) and is padded to a multiple of `shards` x ALIGN.
    """
    order = sorted(range(len(numels)), key=lambda i: KINDS.index(kinds[i]))
    offsets, buckets, members = [0] * len(numels), [], []
    start = pos = 0
    for i in order:
        if members and kinds[members[-1]] != kinds[i]:
            buckets.append(_bucket(start, pos, members, shards, kinds))
            start = pos = buckets[-1].end
            members = []
        offsets[i] = pos
        pos += numels[i]
        members.append(i)
        if pos - start >= bucket_elems:
            buckets.append(_bucket(start, pos, members, shards, kinds))
            start = pos = buckets[-1].end
            members = []
    if members:
        buckets.append(_bucket(start, pos, members, shards, kinds))
    return offsets, buckets


def _bucket(start: int, pos: int, members: list[int], shards: int,
            kinds: Sequence[str]) -> BucketLayout:
    end = start + _round_up(pos - start, shards * ALIGN)
    return BucketLayout(start, end, tuple(members), kinds[members[0]])


class ModelChunk(Protocol):
    """What a model chunk (an `nn.Module`) hands data parallelism, so that this module never
    reads a model by its attribute names; an encoder that joins a stage needs no change here.
    Parameters carry `tp_replicated` (parallel/tensor.py) and, on a copy of a weight held
    by another stage, `pipeline_duplicate` (set where the copy is made)."""

    recomputation: Recomputation  # ZeRO-3 keeps a re-run block gathered while it is active

    def tied_parameters(self) -> list[nn.Parameter]:
        """Copies of one weight on several pipeline stages (gradients summed over the
        embedding group)."""

    def sharding_units(self) -> list[nn.Module]:
        """ZeRO-3's units in forward order: the chunk itself first (what no other unit
        holds), then e.g. each block with parameters that train."""


def parameter_kinds(params: Sequence[nn.Parameter], chunk: ModelChunk,
                    sequence_parallel_tp: bool) -> list[str]:
    """KINDS of each parameter; `sequence_parallel_tp`: SP on with TP > 1."""
    tied = {id(p) for p in chunk.tied_parameters()}
    return [TIED if id(p) in tied else
            TP_REPLICATED if sequence_parallel_tp and p.tp_replicated else OVERLAPPED
            for p in params]


def buffer_groups(chunk: nn.Module) -> list[list[nn.Parameter]]:
    """ZeRO 0-2: the chunk's parameters in reverse order of use, one buffer per dtype."""
    groups: dict[torch.dtype, list[nn.Parameter]] = {}
    for p in reversed(list(chunk.parameters())):
        if p.requires_grad:
            groups.setdefault(p.dtype, []).append(p)
    return list(groups.values())


def zero3_units(chunk: ModelChunk) -> list[list[nn.Parameter]]:
    """ZeRO-3: the parameters of each of the chunk's `sharding_units`, the first (the chunk
    itself) holding those no other unit holds."""
    root, *units = chunk.sharding_units()
    owned = [list(u.parameters()) for u in units]
    inside = {id(p) for ps in owned for p in ps}
    # Frozen parameters (requires_grad False) are not sharded: they stay whole on every rank.
    return [[p for p in root.parameters() if id(p) not in inside and p.requires_grad]] + owned


ONE_BUCKET = 2**62  # bucket size that never closes a bucket early (a ZeRO-3 unit is one)


@dataclass
class OptimizerShard:
    """What one rank's optimizer updates: its part of one bucket (ZeRO 0-2) or block
    (ZeRO-3). `param` [n] (parameter dtype) is written after the step; `grad` [n] holds the
    fp32 main gradient averaged over DP; `segments` lists (parameter, lo, hi): the part of a
    parameter inside, as a range of [0, n). Padding belongs to no segment."""
    param: torch.Tensor
    grad: torch.Tensor
    segments: list[tuple[nn.Parameter, int, int]]


def _segments(params: Sequence[nn.Parameter], offsets: dict[int, int], lo: int,
              hi: int) -> list[tuple[nn.Parameter, int, int]]:
    out = []
    for p in params:
        a, z = max(lo, offsets[id(p)]), min(hi, offsets[id(p)] + p.numel())
        if a < z:
            out.append((p, a - lo, z - lo))
    return out


def reduce_gradient_statistic(value: torch.Tensor, state: ParallelState, sharded: bool,
                              op: str = "sum") -> torch.Tensor:
    """Combines a per-rank partial of a gradient statistic (squared norm, count of inf/nan)
    over every rank holding distinct gradients: the DP group when the optimizer is sharded
    (unsharded, DP ranks hold identical averaged copies), then TP x PP."""
    if sharded:
        C.all_reduce(value, state.dp_group, op)
    return C.all_reduce(value, state.model_group, op)


# -- ZeRO 0-2: contiguous buffers and buckets ----------------------------------------------

class Bucket:
    """Views of one bucket of a buffer and the collectives in flight on it."""

    def __init__(self, layout: BucketLayout, params: list, data: torch.Tensor,
                 main_grad: torch.Tensor, shard: tuple[int, int]):
        self.layout, self.params, self.kind = layout, params, layout.kind
        self.data = data[layout.start:layout.end]        # [size] parameter dtype
        self.grad = main_grad[layout.start:layout.end]   # [size] fp32
        self.shard = (shard[0] - layout.start, shard[1] - layout.start)  # bucket-local
        self.waiting = len(params)      # parameters whose last-micro-batch gradient is due
        self.reduction: Optional[C.Pending] = None
        self.gather: Optional[C.Pending] = None


class GradBuffer:
    """One chunk's parameters of one dtype: `data` [n] holds the parameters (each becomes a
    view of it), `main_grad` [n] fp32 their gradients, same offsets, cut into buckets."""

    def __init__(self, params: list[nn.Parameter], kinds: list[str], bucket_elems: int,
                 shards: int, rank: int):
        self.params = params
        offsets, layouts = plan_buffer([p.numel() for p in params], kinds, bucket_elems, shards)
        self.offsets = {id(p): o for p, o in zip(params, offsets)}
        total, ref = layouts[-1].end, params[0]
        self.data = torch.zeros(total, dtype=ref.dtype, device=ref.device)
        self.main_grad = torch.zeros(total, dtype=torch.float32, device=ref.device)
        for p, o in zip(params, offsets):
            view = self.data[o:o + p.numel()]
            view.copy_(p.detach().reshape(-1))
            p.data = view.view_as(p)
            p.main_grad = self.main_grad[o:o + p.numel()].view_as(p)
        self.buckets = [Bucket(l, [params[i] for i in l.params], self.data, self.main_grad,
                               l.shard(rank, shards)) for l in layouts]


class DataParallelGrads:
    """ZeRO 0-2: main gradients of every model chunk, reduced over DP in buckets.

    zero_stage 0: all-reduce, every rank updates everything; 1: all-reduce, each rank updates
    its shard and the shards are all-gathered; 2: reduce-scatter into the shard, then the
    same all-gather (half the gradient traffic of 1, ZeRO section 7). The fp32 buffer stays
    whole at stage 2 as in Megatron's distributed optimizer, since every micro batch's
    backward accumulates into all of it; ZeRO-3 (ShardedParameters) keeps only shards.

    Per step: `zero_grad()`; the schedule runs, calling `last_backward(chunk)` before each
    chunk's last backward; `finish_grad_sync()`; the optimizer updates `shards()`;
    `gather_params()`.
    """

    def __init__(self, chunks: list[nn.Module], state: ParallelState, cfg: ParallelConfig):
        self.state, self.zero_stage = state, cfg.zero_stage
        self.overlap_grad_reduce = cfg.overlap_grad_reduce
        self.overlap_param_gather = cfg.overlap_param_gather and cfg.zero_stage > 0
        self.sequence_parallel = cfg.sequence_parallel and state.tp > 1
        # Unsharded (ZeRO-0) buckets pad to ALIGN only, so their layout does not depend on DP.
        shards, rank = (state.dp, state.dp_rank) if cfg.zero_stage else (1, 0)
        self.buffers: list[list[GradBuffer]] = []
        for c, chunk in enumerate(chunks):
            buffers = [GradBuffer(ps, parameter_kinds(ps, chunk, self.sequence_parallel),
                                  bucket_elements(cfg.bucket_mb), shards, rank)
                       for ps in buffer_groups(chunk)]
            for bucket in (b for buf in buffers for b in buf.buckets):
                for p in bucket.params:
                    p.register_post_accumulate_grad_hook(partial(self._on_grad, c, bucket))
            if self.overlap_param_gather:
                _wait_before_use(chunk, {id(p): b for buf in buffers for b in buf.buckets
                                         for p in b.params})
            self.buffers.append(buffers)
        self.armed = [False] * len(chunks)

    @property
    def buckets(self) -> list[Bucket]:
        return [b for buffers in self.buffers for buf in buffers for b in buf.buckets]

    def zero_grad(self) -> None:
        for buffers in self.buffers:
            for buf in buffers:
                buf.main_grad.zero_()
        for b in self.buckets:
            b.waiting, b.reduction = len(b.params), None
        self.armed = [False] * len(self.armed)

    def last_backward(self, chunk: int) -> None:
        """Called before chunk `chunk`'s last backward of the step: its buckets reduce as
        they fill (reducing earlier would average half-accumulated gradients)."""
        self.armed[chunk] = True

    def _on_grad(self, chunk: int, bucket: Bucket, p: nn.Parameter) -> None:
        p.main_grad.add_(p.grad)  # fp32 accumulation whatever the parameter dtype
        p.grad = None
        if not self.armed[chunk]:
            return
        bucket.waiting -= 1
        if bucket.waiting == 0 and bucket.kind == OVERLAPPED and self.overlap_grad_reduce:
            self._reduce(bucket)

    def _reduce(self, bucket: Bucket) -> None:
        """Starts averaging one bucket over DP: all-reduce (ZeRO 0/1) or reduce-scatter into
        this rank's shard (ZeRO-2). Dividing first keeps the collective a plain sum (gloo
        has no average)."""
        if self.state.dp > 1:
            bucket.grad.div_(self.state.dp)
        if self.zero_stage == 2:
            lo, hi = bucket.shard
            bucket.reduction = C.reduce_scatter_async(bucket.grad[lo:hi], bucket.grad,
                                                      self.state.dp_group)
        else:
            bucket.reduction = C.all_reduce_async(bucket.grad, self.state.dp_group)

    def finish_grad_sync(self) -> None:
        """After the schedule: starts what backward did not (all buckets when overlap is
        off), sums SP-replicated gradients over TP (Korthikanti et al. 2022, 4.2.2) and tied
        embedding copies over the embedding group, reduces those, and waits for all."""
        for b in self.buckets:
            if b.kind == OVERLAPPED and b.reduction is None:
                self._reduce(b)
        for b in self.buckets:
            if b.kind == TP_REPLICATED:
                C.all_reduce(b.grad, self.state.tp_group)
            elif b.kind == TIED:
                for p in b.params:
                    C.all_reduce(p.main_grad, self.state.embedding_group)
        for b in self.buckets:
            if b.kind != OVERLAPPED:
                self._reduce(b)
        for b in self.buckets:
            b.reduction.wait()

    def shards(self) -> list[OptimizerShard]:
        out = []
        for buffers in self.buffers:
            for buf in buffers:
                for b in buf.buckets:
                    lo, hi = b.shard
                    start = b.layout.start
                    out.append(OptimizerShard(b.data[lo:hi], b.grad[lo:hi], _segments(
                        b.params, buf.offsets, start + lo, start + hi)))
        return out

    def gather_params(self) -> None:
        """ZeRO 1/2: every rank updated its shard of each bucket; all-gather them, in
        forward order (first chunk, deferred buckets holding the norms, then the buckets of
        the first layers). With `overlap_param_gather` each module waits for its buckets
        just before its forward instead of now."""
        if self.zero_stage == 0:
            return
        for buffers in self.buffers:
            for b in reversed([b for buf in buffers for b in buf.buckets]):
                lo, hi = b.shard
                b.gather = C.all_gather_async(b.data, b.data[lo:hi], self.state.dp_group)
        if not self.overlap_param_gather:
            self.wait_params()

    def wait_params(self) -> None:
        for b in self.buckets:
            _wait_gather(b)

    @contextlib.contextmanager
    def full_parameters(self):
        """Every parameter complete (for saving and loading a checkpoint)."""
        self.wait_params()
        yield

    def memory_bytes(self) -> dict[str, int]:
        bufs = [buf for buffers in self.buffers for buf in buffers]
        return {"params": sum(b.data.nbytes for b in bufs),
                "main_grads": sum(b.main_grad.nbytes for b in bufs)}


def _wait_gather(bucket: Bucket) -> None:
    if bucket.gather is not None:
        bucket.gather.wait()
        bucket.gather = None


def _wait_before_use(chunk: nn.Module, bucket_of: dict[int, Bucket]) -> None:
    """Forward pre-hooks that wait for the parameter all-gathers a module needs. A module
    waits for its whole subtree: it may use a child's weight without calling the child
    (the fused Q/K/V projection reads wq, wk and wv directly, so their own hooks never
    run). Parameters of the stage itself and of a bare container (the embedding's learned
    positions, used by the stage itself) are waited for by the stage."""
    needs: dict[nn.Module, list[Bucket]] = {}
    for module in chunk.modules():
        subtree = module is not chunk and type(module) is not nn.Module
        user = module if subtree else chunk
        for p in module.parameters(recurse=subtree):
            if id(p) in bucket_of and bucket_of[id(p)] not in needs.setdefault(user, []):
                needs[user].append(bucket_of[id(p)])
    for module, buckets in needs.items():
        module.register_forward_pre_hook(partial(_wait_gathers, buckets))


def _wait_gathers(buckets: list[Bucket], module, args) -> None:
    for bucket in buckets:
        _wait_gather(bucket)


# -- ZeRO-3: parameters sharded, gathered block by block ------------------------------------

class ShardedUnit:
    """The parameters of one block (or of the rest of a stage) as one flat tensor sharded
    over DP. `full` [n] holds the gathered parameters while the unit is in use and no memory
    otherwise (its storage is resized to zero; the parameters stay views of it); `shard`
    [n / dp] is this rank's part, `main_grad` [n / dp] its fp32 gradient, averaged over DP."""

    def __init__(self, params: list[nn.Parameter], kinds: list[str], dp: int, rank: int):
        self.params = params
        offsets, layouts = plan_buffer([p.numel() for p in params], kinds, ONE_BUCKET, dp)
        self.offsets = {id(p): o for p, o in zip(params, offsets)}
        total, ref = layouts[-1].end, params[0]
        replicated = [l for l in layouts if l.kind == TP_REPLICATED]
        self.replicated = (replicated[0].start, replicated[-1].end) if replicated else None
        self.full = torch.zeros(total, dtype=ref.dtype, device=ref.device)
        for p, o in zip(params, offsets):
            self.full[o:o + p.numel()].copy_(p.detach().reshape(-1))
            p.data = self.full[o:o + p.numel()].view_as(p)
        self.lo, self.hi = rank * total // dp, (rank + 1) * total // dp
        self.shard = self.full[self.lo:self.hi].clone()
        self.main_grad = torch.zeros(self.hi - self.lo, dtype=torch.float32, device=ref.device)
        self.grad_full: Optional[torch.Tensor] = None  # this micro batch's, while it arrives
        self.arrived = 0
        self.gathering: Optional[C.Pending] = None
        self.gathered = True
        self.free()

    def free(self) -> None:
        self.wait()  # never pull the memory from under a gather in flight
        self.full.untyped_storage().resize_(0)
        self.gathered = False

    def gather(self, group) -> None:
        """Starts gathering the parameters (no-op when gathered or on the way)."""
        if self.gathered or self.gathering is not None:
            return
        self.full.untyped_storage().resize_(self.full.numel() * self.full.element_size())
        self.gathering = C.all_gather_async(self.full, self.shard, group)

    def wait(self) -> None:
        if self.gathering is not None:
            self.gathering.wait()
            self.gathering = None
            self.gathered = True


class ShardedParameters:
    """ZeRO-3 (PP = 1): one unit per block plus one for the rest of the stage (embedding,
    final norm, output; gathered for the whole forward and backward, like FSDP's root).

    Forward: a unit is gathered before its block runs and freed after, the next block's
    all-gather already started. Backward: a hook on the block's output gathers it again
    (prefetching the block before it); once all its parameters have gradients, those are
    reduce-scattered into `main_grad` and the parameters freed. Gradients are reduced every
    micro batch: keeping full gradients for the last one would undo ZeRO-3's partitioning of
    them (ZeRO section 5.2, P_g). Under full recomputation a re-run block stays gathered for
    the backward that follows.
    """

    def __init__(self, chunks: list[nn.Module], state: ParallelState, cfg: ParallelConfig):
        if len(chunks) != 1:
            raise ValueError(f"ZeRO-3 runs one model chunk per rank, got {len(chunks)}")
        chunk = chunks[0]
        self.state, self.overlap = state, cfg.overlap_grad_reduce
        self.sequence_parallel = cfg.sequence_parallel and state.tp > 1
        self.units = [ShardedUnit(ps, parameter_kinds(ps, chunk, self.sequence_parallel),
                                  state.dp, state.dp_rank) for ps in zero3_units(chunk)]
        self.recomputation = chunk.recomputation
        for i, (module, unit) in enumerate(zip(chunk.sharding_units(), self.units)):
            module.register_forward_pre_hook(partial(self._before_forward, i))
            module.register_forward_hook(partial(self._after_forward, i))
            for p in unit.params:
                p.register_post_accumulate_grad_hook(partial(self._on_grad, unit))
        self.in_flight: list[tuple] = []  # (pending, gradient, reduced shard, unit)
        self.peak_gathered_bytes = 0

    def _next(self, i: int, backward: bool) -> Optional[int]:
        """The unit to prefetch after unit i (0: the stage's own, 1..: the blocks)."""
        last = len(self.units) - 1
        if backward:
            return last if i == 0 else (i - 1 if i > 1 else None)
        return i + 1 if i < last else None

    def _gather(self, i: int, wait: bool) -> None:
        unit = self.units[i]
        unit.gather(self.state.dp_group)
        if wait:
            unit.wait()
        gathered = sum(u.full.untyped_storage().nbytes() for u in self.units)
        self.peak_gathered_bytes = max(self.peak_gathered_bytes, gathered)

    def _before_forward(self, i: int, module, args) -> None:
        self._gather(i, wait=True)
        following = self._next(i, backward=self.recomputation.active)
        if following is not None:
            self._gather(following, wait=False)

    def _after_forward(self, i: int, module, args, out) -> None:
        if not self.recomputation.active:
            self.units[i].free()
        if torch.is_tensor(out) and out.requires_grad:
            out.register_hook(partial(self._before_backward, i))

    def _before_backward(self, i: int, grad: torch.Tensor) -> None:
        self._gather(i, wait=True)
        previous = self._next(i, backward=True)
        if previous is not None:
            self._gather(previous, wait=False)

    def _on_grad(self, unit: ShardedUnit, p: nn.Parameter) -> None:
        if unit.grad_full is None:
            unit.grad_full = torch.zeros(unit.full.numel(), dtype=torch.float32,
                                         device=p.device)
        o = unit.offsets[id(p)]
        unit.grad_full[o:o + p.numel()].add_(p.grad.reshape(-1))
        p.grad = None
        unit.arrived += 1
        if unit.arrived == len(unit.params):
            self._reduce(unit)

    def _reduce(self, unit: ShardedUnit) -> None:
        """Reduce-scatters a unit's gradient (summed over TP first where SP split the
        sequence) and frees its parameters; at most one reduction stays in flight."""
        grad, unit.grad_full, unit.arrived = unit.grad_full, None, 0
        if self.sequence_parallel and unit.replicated:
            C.all_reduce(grad[unit.replicated[0]:unit.replicated[1]], self.state.tp_group)
        if self.state.dp > 1:
            grad.div_(self.state.dp)
        reduced = torch.empty_like(unit.main_grad)
        self.in_flight.append((C.reduce_scatter_async(reduced, grad, self.state.dp_group),
                               grad, reduced, unit))
        unit.free()
        self._drain(keep=1 if self.overlap else 0)

    def _drain(self, keep: int) -> None:
        while len(self.in_flight) > keep:
            pending, _, reduced, unit = self.in_flight.pop(0)
            pending.wait()
            unit.main_grad.add_(reduced)

    def zero_grad(self) -> None:
        for unit in self.units:
            unit.main_grad.zero_()

    def last_backward(self, chunk: int) -> None:
        """Nothing to arm: ZeRO-3 reduces every micro batch."""

    def finish_grad_sync(self) -> None:
        self._drain(keep=0)
        for i, unit in enumerate(self.units):
            if unit.arrived:
                raise RuntimeError(f"ZeRO-3: only {unit.arrived} of the {len(unit.params)} "
                                   f"parameters of unit {i} received a gradient; every "
                                   f"parameter must take part in the loss")

    def shards(self) -> list[OptimizerShard]:
        return [OptimizerShard(u.shard, u.main_grad,
                               _segments(u.params, u.offsets, u.lo, u.hi)) for u in self.units]

    def gather_params(self) -> None:
        """Nothing to do: the next forward gathers the updated shards."""

    def wait_params(self) -> None:
        """Nothing in flight between steps."""

    @contextlib.contextmanager
    def full_parameters(self):
        """All units gathered; on exit each rank's shard is taken from the (possibly newly
        loaded) full values and the units are freed again."""
        for i in range(len(self.units)):
            self._gather(i, wait=True)
        try:
            yield
        finally:
            for unit in self.units:
                unit.shard.copy_(unit.full[unit.lo:unit.hi])
                unit.free()

    def memory_bytes(self) -> dict[str, int]:
        return {"params": sum(u.shard.nbytes for u in self.units) + self.peak_gathered_bytes,
                "main_grads": sum(u.main_grad.nbytes for u in self.units)}


def data_parallel(chunks: list[nn.Module], state: ParallelState, cfg: ParallelConfig):
    """The gradient reduction and parameter sharding for `cfg.zero_stage`."""
    if cfg.zero_stage == 3:
        return ShardedParameters(chunks, state, cfg)
    return DataParallelGrads(chunks, state, cfg)
