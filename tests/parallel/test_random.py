"""RNG streams under TP: dropout on replicated activations agrees across TP ranks, dropout
on sharded activations (the tensor-parallel stream) differs, and forking leaves the default
stream exactly where it was."""
import torch

from distributed import run_distributed
from megamed.parallel import collectives as C
from megamed.parallel.random import seed_streams
from megamed.parallel.state import ParallelState


def streams_worker():
    state = ParallelState.create(2, 1)
    tracker = seed_streams(42, state.tp_rank, state.pp_rank)
    replicated = torch.rand(1000)
    with tracker.fork():
        sharded = torch.rand(1000)
    after_fork = torch.rand(1000)
    both = C.all_gather(torch.stack([replicated, sharded]).unsqueeze(0), state.tp_group, 0)
    with tracker.fork():  # the TP stream continues where it stopped
        sharded_next = torch.rand(10)
    # Reference: the same draws without forking, straight from freshly seeded generators.
    seed_streams(42, state.tp_rank, state.pp_rank)
    torch.rand(1000)
    assert torch.equal(after_fork, torch.rand(1000))  # fork did not advance the default stream
    tp_stream = torch.Generator().manual_seed(42 + 2718 + state.tp_rank)
    assert torch.equal(sharded, torch.rand(1000, generator=tp_stream))
    assert torch.equal(sharded_next, torch.rand(10, generator=tp_stream))
    return both


def test_tp_streams():
    both = run_distributed(streams_worker, 2)[0]
    assert torch.equal(both[0, 0], both[1, 0])       # default stream: same on both TP ranks
    assert not torch.equal(both[0, 1], both[1, 1])   # TP stream: different per TP rank
