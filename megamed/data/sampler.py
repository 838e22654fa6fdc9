"""Which global samples each rank reads: a pure function of (step, DP rank, micro batch).

The order of samples depends only on the seed (inside the dataset) and the global sample
index, never on the layout: step t consumes samples [t * G, (t + 1) * G) of the global batch
G, DP rank d takes the d-th contiguous slice of G / DP samples, and micro batch m of it the
m-th slice of `micro_batch` samples. Any TP x PP x DP layout therefore trains on the same
samples per step as the single-process run.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchLayout:
    global_batch: int
    micro_batch: int
    dp: int

    @property
    def per_rank(self) -> int:
        return self.global_batch // self.dp

    @property
    def micro_batches(self) -> int:
        return self.per_rank // self.micro_batch

    def sample_indices(self, step: int, dp_rank: int, micro: int) -> range:
        start = step * self.global_batch + dp_rank * self.per_rank + micro * self.micro_batch
        return range(start, start + self.micro_batch)
