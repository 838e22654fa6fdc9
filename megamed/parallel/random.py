"""Random-number streams for dropout under tensor parallelism.

Two streams, as in Megatron-LM: the default torch stream is seeded identically on every TP
rank (dropout on activations replicated across TP must agree), and a `tensor-parallel`
stream, seeded per TP rank, is forked for dropout on TP-sharded activations (attention
probabilities of this rank's heads, and with sequence parallelism this rank's part of the
sequence). Recomputation (`checkpoint`) saves and restores both so a recomputed forward draws
the same masks.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch

TP_STREAM = "tensor-parallel"


def _get_state() -> tuple:
    """CPU and (when present) current-CUDA-device generator states: dropout on a GPU draws
    from the CUDA generator, on a CPU from the CPU one."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda


def _set_state(state: tuple) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)


class RNGTracker:
    """Named RNG states that can be forked into for a region of code."""

    def __init__(self):
        self.states: dict[str, tuple] = {}

    def add(self, name: str, seed: int) -> None:
        if name in self.states:
            raise ValueError(f"RNG stream {name!r} already exists")
        saved = _get_state()
        torch.manual_seed(seed)
        self.states[name] = _get_state()
        _set_state(saved)

    @contextlib.contextmanager
    def fork(self, name: str = TP_STREAM):
        """Runs the body on stream `name`, then restores the default stream."""
        if name not in self.states:
            raise KeyError(f"RNG stream {name!r} was never added; call seed_streams first")
        saved = _get_state()
        _set_state(self.states[name])
        try:
            yield
        finally:
            self.states[name] = _get_state()
            _set_state(saved)

    def get_states(self) -> dict[str, tuple]:
        return dict(self.states)

    def set_states(self, states: dict[str, tuple]) -> None:
        self.states = dict(states)


def seed_streams(seed: int, tp_rank: int, pp_rank: int) -> RNGTracker:
    """Seeds the default stream (same across TP, distinct per pipeline stage) and returns a
    tracker whose `tensor-parallel` stream differs per TP rank."""
    # Offsets follow Megatron (100 per stage, 2718 for the TP stream) so that no two streams
    # of a run share a seed.
    torch.manual_seed(seed + 100 * pp_rank)
    tracker = RNGTracker()
    tracker.add(TP_STREAM, seed + 2718 + tp_rank)
    return tracker


# -- activation recomputation ---------------------------------------------------------------

class Recomputation:
    """Activation recomputation for one model chunk: `run(fn, *args)` is fn(*args) with its
    activations recomputed in backward, and `active` says whether a recomputed forward is
    running now (nesting depth > 0). ZeRO-3 reads `active` to keep a re-run block's
    parameters gathered, since its backward follows immediately; the chunk that owns this
    object hands it over (parallel/data.py)."""

    def __init__(self, tracker: Optional[RNGTracker]):
        self.tracker = tracker
        self.depth = 0

    @property
    def active(self) -> bool:
        return self.depth > 0

    def run(self, fn: Callable, *args):
        """fn(*args), recomputed in backward instead of keeping its activations. `args` may
        mix tensors and constants (None, numbers); only tensor inputs are saved."""
        if not torch.is_grad_enabled():
            return fn(*args)
        return _Checkpoint.apply(fn, self, *args)


def _snapshot(tracker: Optional[RNGTracker]) -> tuple:
    return _get_state(), (tracker.get_states() if tracker is not None else None)


def _restore(snapshot: tuple, tracker: Optional[RNGTracker]) -> None:
    default, streams = snapshot
    _set_state(default)
    if tracker is not None:
        tracker.set_states(streams)


class _Checkpoint(torch.autograd.Function):
    """Megatron's CheckpointFunction: forward runs `fn` without keeping activations; backward
    re-runs it from the saved inputs with the RNG states of the first run (CPU + CUDA
    generators and every tracker stream, which live outside torch's default generator and
    which torch.utils.checkpoint therefore cannot restore), then back-propagates through it.
    The states current at backward time are put back afterwards, so forwards of other micro
    batches that run in between (pipeline schedules) draw exactly what they would have."""

    @staticmethod
    def forward(ctx, fn, recomputation: Recomputation, *args):
        ctx.fn, ctx.recomputation = fn, recomputation
        ctx.rng = _snapshot(recomputation.tracker)
        ctx.is_tensor = [torch.is_tensor(a) for a in args]
        ctx.constants = [None if t else a for t, a in zip(ctx.is_tensor, args)]
        ctx.save_for_backward(*[a for a in args if torch.is_tensor(a)])
        with torch.no_grad():
            return fn(*args)

    @staticmethod
    def backward(ctx, *grads):
        recomputation, tracker = ctx.recomputation, ctx.recomputation.tracker
        tensors = iter([t.detach().requires_grad_(t.requires_grad) for t in ctx.saved_tensors])
        args = [next(tensors) if is_tensor else c
                for is_tensor, c in zip(ctx.is_tensor, ctx.constants)]
        now = _snapshot(tracker)
        _restore(ctx.rng, tracker)
        recomputation.depth += 1
        try:
            with torch.enable_grad():
                outputs = ctx.fn(*args)
        finally:
            recomputation.depth -= 1
            _restore(now, tracker)
        outputs = (outputs,) if torch.is_tensor(outputs) else tuple(outputs)
        pairs = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad and g is not None]
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return (None, None) + tuple(a.grad if torch.is_tensor(a) and a.requires_grad else None
                                    for a in args)
