"""Gradient buckets: whole parameters in order, kinds in KINDS order, DP shards with padding
only (plan_buffer's arithmetic, shared by the real buffers and the memory calculator)."""
from megamed.parallel.data import ALIGN, KINDS, OVERLAPPED, TIED, TP_REPLICATED, plan_buffer


def test_buckets_hold_whole_parameters_in_order_and_split_into_dp_shards():
    numels = [4096, 64, 2048, 2048, 4096, 64, 8192, 8192, 8192, 16384]
    kinds = [OVERLAPPED, TP_REPLICATED, OVERLAPPED, OVERLAPPED, OVERLAPPED, TP_REPLICATED,
             OVERLAPPED, OVERLAPPED, TIED, OVERLAPPED]
    bucket, dp = 5000, 4
    offsets, buckets = plan_buffer(numels, kinds, bucket, dp)
    # Reference, written out: overlapped parameters in their order, then the replicated,
    # then the tied ones; a bucket closes as soon as it holds >= 5000 elements.
    expected = [[0, 2], [3, 4], [6], [7], [9], [1, 5], [8]]
    assert [list(b.params) for b in buckets] == expected
    position = 0
    for b in buckets:
        assert b.start == position and (b.end - b.start) % (dp * ALIGN) == 0
        assert {kinds[i] for i in b.params} == {b.kind}
        used = 0
        for i in b.params:  # parameters are consecutive from the bucket's start
            assert offsets[i] == b.start + used
            used += numels[i]
        assert used <= b.end - b.start < used + dp * ALIGN  # padding only
        shards = [b.shard(r, dp) for r in range(dp)]
        assert shards[0][0] == b.start and shards[-1][1] == b.end
        assert all(s[1] == t[0] for s, t in zip(shards, shards[1:]))
        position = b.end
    assert [b.kind for b in buckets] == sorted((b.kind for b in buckets), key=KINDS.index)
