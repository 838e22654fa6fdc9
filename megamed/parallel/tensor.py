"""Tensor-parallel layers (Megatron-LM, Shoeybi et al. 2019, section 3) and their init.

Each layer takes its TP group and behaves exactly like its torch twin at TP=1:

    ColumnParallelLinear    weight [out / tp, in]   output features split
    RowParallelLinear       weight [out, in / tp]   input features split, outputs summed
    VocabParallelEmbedding  weight [vocab / tp, h]  vocabulary rows split

Layout-independent init: every parameter carries an `InitSpec` saying how its *full* value
is generated (from a seed derived from the parameter's layout-free name) and which slice this
rank keeps. `initialize_parameters` fills them; no layer draws random numbers itself.

Sequence parallelism (Korthikanti et al. 2022): with `sequence_parallel=True` activations
outside the TP region are split along the sequence (dim 1 of [batch, seq, hidden]); column
layers all-gather them and row layers reduce-scatter back instead of all-reducing.
Several column layers reading one input (Q, K, V; SwiGLU's two) enter the region together
(`ColumnParallelLinear.shared_input`): one all-gather forward and one reduce-scatter (or
all-reduce) backward instead of one per layer. Under sequence parallelism they keep only
this rank's sequence shard [b, s / tp, h] for their weight gradients, not the gathered
[b, s, h], and all-gather it again in backward while the input gradient is computed
(Megatron-LM's `LinearWithGradAccumulationAndAsyncCommunication`), so every activation
saved for backward scales as 1 / tp.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from megamed.parallel import collectives as C

SEQ_DIM = 1  # activations are [batch, seq, hidden]


@dataclass
class InitSpec:
    """How to build a parameter's full (unsharded) value and which slice this rank keeps."""
    full_shape: tuple[int, ...]
    kind: str = "normal"                 # normal | ones | zeros
    std: float = 0.02
    partition_dim: Optional[int] = None  # None: replicated across TP
    tp_rank: int = 0
    tp_size: int = 1
    valid_rows: Optional[int] = None     # rows past this (vocab padding) start at zero
    key: Optional[str] = None            # seed name; defaults to the parameter's own name


def _param(shape: tuple[int, ...], spec: InitSpec, dtype=None, device=None) -> nn.Parameter:
    p = nn.Parameter(torch.empty(shape, dtype=dtype, device=device))
    p.init_spec = spec
    # Replicated across TP: counted once in the grad norm, all-reduced over TP under SP.
    p.tp_replicated = spec.partition_dim is None
    return p


def param_seed(seed: int, key: str) -> int:
    """A per-parameter seed from the run seed and a layout-free name (crc32 is stable,
    unlike Python's salted `hash`)."""
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**63 - 1)


def full_value(spec: InitSpec, seed: int, key: str, device="cpu") -> torch.Tensor:
    """The parameter's full fp32 value, identical for every layout."""
    if spec.kind == "ones":
        return torch.ones(spec.full_shape, device=device)
    if spec.kind == "zeros":
        return torch.zeros(spec.full_shape, device=device)
    gen = torch.Generator(device=device).manual_seed(param_seed(seed, spec.key or key))
    rows = spec.valid_rows if spec.valid_rows is not None else spec.full_shape[0]
    value = torch.zeros(spec.full_shape, device=device)
    value[:rows] = torch.randn((rows,) + tuple(spec.full_shape[1:]), generator=gen,
                               device=device) * spec.std
    return value


@torch.no_grad()
def initialize_parameters(module: nn.Module, seed: int) -> None:
    """Fills every parameter from its full value; TP-sharded ones keep their slice."""
    for name, p in module.named_parameters():
        spec: InitSpec = p.init_spec
        value = full_value(spec, seed, name, device=p.device)
        if spec.partition_dim is not None:
            value = value.chunk(spec.tp_size, dim=spec.partition_dim)[spec.tp_rank]
        p.copy_(value)


def _divide(n: int, parts: int, what: str) -> int:
    if n % parts:
        raise ValueError(f"{what} {n} is not divisible by TP {parts}")
    return n // parts


def enter_tp_region(x: torch.Tensor, tp_group, sequence_parallel: bool) -> torch.Tensor:
    """The input of column-parallel layers: [b, s / tp, h] all-gathered to [b, s, h] under
    sequence parallelism (backward: reduce-scatter), else [b, s, h] as is (backward:
    all-reduce of the partial input gradients). A layer that saves its input for backward
    then keeps the gathered [b, s, h]: the model's linears use `column_parallel_linears`,
    which keeps the shard."""
    if sequence_parallel:
        return C.all_gather_from_region(x, tp_group, SEQ_DIM)
    return C.copy_to_region(x, tp_group)


class _ColumnParallelLinears(torch.autograd.Function):
    """y_i = X W_i^T + b_i for column-parallel linears sharing one input x, where X is x
    all-gathered along the sequence (sequence parallelism) or x itself. Saves x, never X.

    Backward: starts the all-gather of x again, computes the input gradient sum_i dy_i W_i
    meanwhile, starts its reduce-scatter (SP) or all-reduce, and computes the weight
    gradients dy_i^T X while that runs. NCCL runs collectives on its own stream and gloo on
    its own thread, so both overlaps happen on either backend."""

    @staticmethod
    def forward(ctx, x, tp_group, sequence_parallel, n, *params):
        weights, biases = params[:n], params[n:]
        ctx.tp_group, ctx.sequence_parallel = tp_group, sequence_parallel
        ctx.has_bias = [b is not None for b in biases]
        ctx.save_for_backward(x, *weights)
        full = C.all_gather(x, tp_group, SEQ_DIM) if sequence_parallel else x
        return tuple(F.linear(full, w, b) for w, b in zip(weights, biases))

    @staticmethod
    def backward(ctx, *grads):
        x, *weights = ctx.saved_tensors
        gathering = (C.all_gather_start(x, ctx.tp_group, SEQ_DIM) if ctx.sequence_parallel
                     else None)
        grad_input = grads[0].matmul(weights[0])
        for g, w in zip(grads[1:], weights[1:]):
            grad_input = grad_input + g.matmul(w)
        if ctx.sequence_parallel:
            reducing = C.reduce_scatter_start(grad_input, ctx.tp_group, SEQ_DIM)
            full = gathering.wait()
        else:
            reducing = C.all_reduce_start(grad_input, ctx.tp_group)
            full = x
        full = full.reshape(-1, full.shape[-1])
        rows = [g.reshape(-1, g.shape[-1]) for g in grads]
        grad_weights = [g.t().matmul(full) for g in rows]
        grad_biases = [g.sum(0) if has else None for g, has in zip(rows, ctx.has_bias)]
        return (reducing.wait(), None, None, None, *grad_weights, *grad_biases)


def column_parallel_linears(x: torch.Tensor, weights: Sequence[torch.Tensor],
                            biases: Sequence[Optional[torch.Tensor]], tp_group,
                            sequence_parallel: bool) -> tuple[torch.Tensor, ...]:
    """Column-parallel linears reading one input x ([b, s / tp, in] under sequence
    parallelism, else [b, s, in]): one output [b, s, out_i / tp] per weight [out_i / tp, in].
    At TP=1 plain `F.linear`s."""
    if C.group_size(tp_group) == 1:
        return tuple(F.linear(x, w, b) for w, b in zip(weights, biases))
    return _ColumnParallelLinears.apply(x, tp_group, sequence_parallel, len(weights),
                                        *weights, *biases)


class ColumnParallelLinear(nn.Module):
    """y = x A^T + b with A's output rows split over TP.

    Input [b, s, in] (or [b, s / tp, in] with sequence parallelism; already [b, s, in] from
    `enter_tp_region` with `gather_input=False`); output [b, s, out / tp], or [b, s, out]
    with `gather_output`. Layers sharing one input enter the TP region together through
    `ColumnParallelLinear.shared_input(x, *layers)`.
    """

    def __init__(self, in_features: int, out_features: int, tp_group, bias: bool = False,
                 gather_output: bool = False, std: float = 0.02, sequence_parallel: bool = False,
                 valid_rows: Optional[int] = None, init_key: Optional[str] = None,
                 dtype=None, device=None, gather_input: bool = True):
        super().__init__()
        self.tp_group, self.gather_output = tp_group, gather_output
        self.sequence_parallel, self.gather_input = sequence_parallel, gather_input
        tp, rank = C.group_size(tp_group), C.group_rank(tp_group)
        local = _divide(out_features, tp, "output features")
        self.weight = _param((local, in_features), InitSpec(
            (out_features, in_features), std=std, partition_dim=0, tp_rank=rank, tp_size=tp,
            valid_rows=valid_rows, key=init_key), dtype, device)
        self.bias = (_param((local,), InitSpec((out_features,), "zeros", partition_dim=0,
                                               tp_rank=rank, tp_size=tp), dtype, device)
                     if bias else None)

    @staticmethod
    def shared_input(x: torch.Tensor, *layers: "ColumnParallelLinear") -> tuple:
        """Every layer's output for one input x (not yet in the TP region), entering the
        region once. The layers share their TP group and sequence parallelism."""
        first = layers[0]
        return column_parallel_linears(x, [l.weight for l in layers], [l.bias for l in layers],
                                       first.tp_group, first.sequence_parallel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gather_input:
            y = ColumnParallelLinear.shared_input(x, self)[0]
        else:
            y = F.linear(x, self.weight, self.bias)
        return C.gather_from_region(y, self.tp_group, -1) if self.gather_output else y


class RowParallelLinear(nn.Module):
    """y = x A^T + b with A's input columns split over TP; partial outputs are summed.

    Input [b, s, in / tp] (or [b, s, in] with `input_is_parallel=False`); output [b, s, out],
    or [b, s / tp, out] with sequence parallelism.
    """

    def __init__(self, in_features: int, out_features: int, tp_group, bias: bool = False,
                 input_is_parallel: bool = True, std: float = 0.02,
                 sequence_parallel: bool = False, dtype=None, device=None):
        super().__init__()
        self.tp_group, self.input_is_parallel = tp_group, input_is_parallel
        self.sequence_parallel = sequence_parallel
        tp, rank = C.group_size(tp_group), C.group_rank(tp_group)
        local = _divide(in_features, tp, "input features")
        self.weight = _param((out_features, local), InitSpec(
            (out_features, in_features), std=std, partition_dim=1, tp_rank=rank, tp_size=tp),
            dtype, device)
        # The bias is added once, after the reduction, so it is replicated across TP.
        self.bias = (_param((out_features,), InitSpec((out_features,), "zeros"), dtype, device)
                     if bias else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.input_is_parallel:
            x = C.scatter_to_region(x, self.tp_group, -1)
        y = F.linear(x, self.weight)
        if self.sequence_parallel:
            y = C.reduce_scatter_to_region(y, self.tp_group, SEQ_DIM)
        else:
            y = C.reduce_from_region(y, self.tp_group)
        return y if self.bias is None else y + self.bias


class VocabParallelEmbedding(nn.Module):
    """Token embedding with vocabulary rows split over TP: each rank looks up the tokens it
    owns, zeros the rest, and the partial results are summed. Input [b, s] token ids;
    output [b, s, h] (or [b, s / tp, h] with sequence parallelism)."""

    def __init__(self, padded_vocab: int, vocab_size: int, hidden: int, tp_group,
                 std: float = 0.02, sequence_parallel: bool = False, dtype=None, device=None):
        super().__init__()
        self.tp_group, self.sequence_parallel = tp_group, sequence_parallel
        tp, rank = C.group_size(tp_group), C.group_rank(tp_group)
        local = _divide(padded_vocab, tp, "padded vocab")
        self.vocab_start, self.vocab_end = rank * local, (rank + 1) * local
        self.weight = _param((local, hidden), InitSpec(
            (padded_vocab, hidden), std=std, partition_dim=0, tp_rank=rank, tp_size=tp,
            valid_rows=vocab_size), dtype, device)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if C.group_size(self.tp_group) == 1:
            return F.embedding(tokens, self.weight)
        outside = (tokens < self.vocab_start) | (tokens >= self.vocab_end)
        local = (tokens - self.vocab_start).masked_fill(outside, 0)
        out = F.embedding(local, self.weight).masked_fill(outside.unsqueeze(-1), 0.0)
        if self.sequence_parallel:
            return C.reduce_scatter_to_region(out, self.tp_group, SEQ_DIM)
        return C.reduce_from_region(out, self.tp_group)


class _VocabParallelCrossEntropy(torch.autograd.Function):
    """Cross-entropy over logits split along the vocabulary, never gathering them: three
    all-reduces of [b, s]-sized tensors (max, target logit, sum of exp) replace an
    all-gather of [b, s, vocab]."""

    @staticmethod
    def forward(ctx, logits, target, tp_group, vocab_size):
        ctx.input_dtype = logits.dtype
        logits = logits.float()
        local = logits.shape[-1]
        start = C.group_rank(tp_group) * local
        columns = torch.arange(start, start + local, device=logits.device)
        logits = logits.masked_fill(columns >= vocab_size, float("-inf"))  # vocab padding
        logits_max = C.all_reduce(logits.max(dim=-1).values, tp_group, "max")
        shifted = logits - logits_max.unsqueeze(-1)
        outside = (target < start) | (target >= start + local)
        local_target = (target - start).masked_fill(outside, 0)
        target_logit = shifted.gather(-1, local_target.unsqueeze(-1)).squeeze(-1)
        target_logit = C.all_reduce(target_logit.masked_fill(outside, 0.0), tp_group)
        exp = shifted.exp()
        sum_exp = C.all_reduce(exp.sum(dim=-1), tp_group)
        softmax = exp.div_(sum_exp.unsqueeze(-1))
        ctx.save_for_backward(softmax, local_target, outside)
        return sum_exp.log() - target_logit

    @staticmethod
    def backward(ctx, grad_loss):
        softmax, local_target, outside = ctx.saved_tensors
        grad = softmax.clone()
        hit = (~outside).to(grad.dtype)
        grad.scatter_add_(-1, local_target.unsqueeze(-1), -hit.unsqueeze(-1))
        return (grad * grad_loss.unsqueeze(-1)).to(ctx.input_dtype), None, None, None


def vocab_parallel_cross_entropy(logits: torch.Tensor, target: torch.Tensor, tp_group,
                                 vocab_size: int) -> torch.Tensor:
    """Per-token loss [b, s] (fp32) from local logits [b, s, padded_vocab / tp]; columns at
    or past `vocab_size` (padding) are excluded from the softmax."""
    return _VocabParallelCrossEntropy.apply(logits, target, tp_group, vocab_size)
