"""Every collective of collectives.py against the single-process result, forward and
backward, on 3 gloo processes (an odd size catches slicing arithmetic that 2 or 4 hide).

Every rank generates all ranks' inputs and upstream gradients from one seed, so it can
compute the single-process reference itself. Values are small integers in fp32: sums in
any order are exact, so every comparison is exact (these are data movement and sums)."""
import torch

from distributed import run_distributed

WORLD = 3
SHAPE = (2, 6, 3)  # dim 1 splits over 3 ranks; dims 0 and 2 are there to be carried along


def _ints(seed, shape=SHAPE):
    return torch.randint(-8, 9, shape, generator=torch.Generator().manual_seed(seed)).float()


def _per_rank(seed, shape=SHAPE):
    return [_ints(seed * 10 + r, shape) for r in range(WORLD)]


def _run_pair(fn, x, grad):
    """(output, input gradient) of fn(x) with upstream gradient `grad` (a copy: backward
    all-reduces the incoming gradient in place, as Megatron's does; autograd owns it)."""
    x = x.clone().requires_grad_()
    y = fn(x)
    y.backward(grad.clone())
    return y.detach(), x.grad


def _check_pairs(group, rank):
    from megamed.parallel import collectives as C
    xs, gs = _per_rank(1), _per_rank(2)               # per-rank inputs / upstream grads
    total_x, total_g = sum(xs), sum(gs)
    mine = lambda t: t.chunk(WORLD, dim=1)[rank]      # noqa: E731
    full_gs = _per_rank(3, (2, 6 * WORLD, 3))         # upstream grads of gathered outputs
    cases = {
        # name: (fn, input, upstream grad, expected output, expected input grad)
        "copy_to_region": (lambda x: C.copy_to_region(x, group), xs[rank], gs[rank],
                           xs[rank], total_g),
        "reduce_from_region": (lambda x: C.reduce_from_region(x, group), xs[rank], gs[rank],
                               total_x, gs[rank]),
        "scatter_to_region": (lambda x: C.scatter_to_region(x, group, 1), xs[0],
                              mine(gs[rank]), mine(xs[0]),
                              torch.cat([mine_of(g, r) for r, g in enumerate(gs)], 1)),
        "gather_from_region": (lambda x: C.gather_from_region(x, group, 1), xs[rank],
                               full_gs[rank], torch.cat(xs, 1),
                               full_gs[rank].chunk(WORLD, 1)[rank]),
        "reduce_scatter_to_region": (lambda x: C.reduce_scatter_to_region(x, group, 1),
                                     xs[rank], mine(gs[rank]), mine(total_x),
                                     torch.cat([mine_of(g, r) for r, g in enumerate(gs)], 1)),
        "all_gather_from_region": (lambda x: C.all_gather_from_region(x, group, 1), xs[rank],
                                   full_gs[rank], torch.cat(xs, 1),
                                   sum(full_gs).chunk(WORLD, 1)[rank]),
    }
    for name, (fn, x, grad, out_ref, grad_ref) in cases.items():
        out, x_grad = _run_pair(fn, x, grad)
        assert torch.equal(out, out_ref), f"{name} forward on rank {rank}"
        assert torch.equal(x_grad, grad_ref), f"{name} backward on rank {rank}"


def mine_of(t, rank):
    """Rank `rank`'s slice along dim 1 (what that rank holds after a scatter)."""
    return t.chunk(WORLD, dim=1)[rank]


def _check_flat(group, rank):
    """The raw and asynchronous flat collectives, including the in-place forms that gloo
    needs a temporary for."""
    from megamed.parallel import collectives as C
    xs = [x.reshape(-1) for x in _per_rank(4)]
    n = xs[0].numel() // WORLD
    assert torch.equal(C.all_reduce(xs[rank].clone(), group), sum(xs))
    assert torch.equal(C.all_reduce(xs[rank].clone(), group, "max"),
                       torch.stack(xs).max(0).values)
    assert torch.equal(C.all_reduce(xs[rank].clone(), group, "avg"), sum(xs) / WORLD)
    buf = xs[rank].clone()
    C.all_reduce_async(buf, group).wait()
    assert torch.equal(buf, sum(xs))
    buf = xs[rank].clone()  # reduce-scatter into this rank's slice of its own input
    C.reduce_scatter_async(buf[rank * n:(rank + 1) * n], buf, group).wait()
    assert torch.equal(buf[rank * n:(rank + 1) * n], sum(xs)[rank * n:(rank + 1) * n])
    full = torch.zeros(WORLD * n)  # all-gather from this rank's slice of the output
    full[rank * n:(rank + 1) * n] = xs[rank][:n]
    C.all_gather_async(full, full[rank * n:(rank + 1) * n], group).wait()
    assert torch.equal(full, torch.cat([x[:n] for x in xs]))


def _check_exchange(rank):
    """The pipeline's batched p2p on a ring: activations to the next rank, gradients to the
    previous, both in one call (what interleaved 1F1B does at every step)."""
    import torch.distributed as dist

    from megamed.parallel import collectives as C
    prev, nxt = (rank - 1) % WORLD, (rank + 1) % WORLD
    acts, grads = _per_rank(5), _per_rank(6)
    from_prev, from_next = torch.empty(SHAPE), torch.empty(SHAPE)
    C.exchange(prev, nxt, dist.group.WORLD, rank % 2 == 0, send_next=acts[rank],
               send_prev=grads[rank], recv_prev=from_prev, recv_next=from_next)
    assert torch.equal(from_prev, acts[prev]) and torch.equal(from_next, grads[nxt])
    C.barrier()


def collectives_worker():
    import torch.distributed as dist
    rank = dist.get_rank()
    _check_pairs(dist.group.WORLD, rank)
    _check_flat(dist.group.WORLD, rank)
    _check_exchange(rank)
    return rank


def test_collectives_match_single_process():
    assert run_distributed(collectives_worker, WORLD) == list(range(WORLD))


def test_size_one_groups_are_identities():
    """At size 1 (ShapeGroup stands in for a group of one) every pair is the identity, so
    a TP=1 model is its torch twin."""
    from megamed.parallel import collectives as C
    group, x, g = C.ShapeGroup(1), _ints(7), _ints(8)
    for fn in (C.copy_to_region, C.reduce_from_region):
        assert all(torch.equal(a, b) for a, b in zip(_run_pair(lambda t: fn(t, group), x, g),
                                                    (x, g)))
    for fn in (C.scatter_to_region, C.gather_from_region, C.reduce_scatter_to_region,
               C.all_gather_from_region):
        assert all(torch.equal(a, b)
                   for a, b in zip(_run_pair(lambda t: fn(t, group, 1), x, g), (x, g)))
