"""Random-number streams for dropout under tensor parallelism.

Two streams, as in Megatron-LM: the default torch stream is seeded identically on every TP
rank (dropout on activations replicated across TP must agree), and a `tensor-parallel`
stream, seeded per TP rank, is forked for dropout on TP-sharded activations (attention
probabilities of this rank's heads). Recomputation saves and restores both so a recomputed
forward draws the same masks.
"""
from __future__ import annotations

import contextlib

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
