"""Rank layout is arithmetic: TP fastest, then DP, then PP (checked without processes)."""
import pytest

from megamed.parallel.state import ParallelState, coordinates, rank_groups


def test_tp_dp_pp_order_for_32_gpus():
    g = rank_groups(32, tp=4, pp=2)
    assert g["tp"][0] == [0, 1, 2, 3] and g["tp"][1] == [4, 5, 6, 7]
    assert g["dp"][0] == [0, 4, 8, 12]
    assert g["pp"][0] == [0, 16]
    assert g["embedding"][0] == [0, 16]
    assert g["model"][0] == [0, 1, 2, 3, 16, 17, 18, 19]


@pytest.mark.parametrize("world, tp, pp", [(1, 1, 1), (8, 2, 2), (16, 2, 4), (32, 4, 2),
                                           (12, 1, 3)])
def test_groups_partition_the_world(world, tp, pp):
    groups = rank_groups(world, tp, pp)
    dp = world // (tp * pp)
    for name, size in (("tp", tp), ("dp", dp), ("pp", pp), ("model", tp * pp)):
        members = sorted(r for group in groups[name] for r in group)
        assert members == list(range(world)), name
        assert all(len(group) == size for group in groups[name]), name
    for rank in range(world):
        c = coordinates(rank, tp, dp)
        s = ParallelState(tp, pp, world, rank)
        assert s.ranks("tp")[c.tp_rank] == rank
        assert s.ranks("dp")[c.dp_rank] == rank
        assert s.ranks("pp")[c.pp_rank] == rank


def test_pipeline_neighbours():
    s = ParallelState(tp=2, pp=4, world_size=16, rank=5)  # DP = 2
    assert (s.tp_rank, s.dp_rank, s.pp_rank) == (1, 0, 1)
    assert s.prev_rank == 1 and s.next_rank == 9
    first = ParallelState(tp=2, pp=4, world_size=16, rank=0)
    assert first.prev_rank is None and first.is_first_stage and not first.is_last_stage
