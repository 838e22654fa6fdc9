"""Which global samples each rank reads: a pure function of (step, DP rank, micro batch).

The order of samples depends only on the seed (inside the dataset) and the global sample
index, never on the layout: step t consumes samples [t * G, (t + 1) * G) of the global batch
G, DP rank d takes the d-th contiguous slice of G / DP samples, and micro batch m of it the
m-th slice of `micro_batch` samples. Any TP x PP x DP layout therefore trains on the same
samples per step as the single-process run.

Validation reads held-out samples through the same layout (training/evaluate.py): a
constant-seeded share of a finite corpus (`held_out_samples`) that training never reads, or
a reserved index range of an endless synthetic stream.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


HELD_OUT_SEED = 0xE7A1  # a constant: the held-out set is the same for every run seed


def held_out_samples(num_samples: int, fraction: float) -> np.ndarray:
    """Sorted indices of the samples held out for validation: round(fraction x N) of the
    N samples (at least one when fraction > 0), spread over the corpus by a constant-seeded
    permutation. A function of (N, fraction) only, so every run seed and layout holds out
    the same samples and validation losses stay comparable between runs."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"held-out fraction {fraction} outside [0, 1)")
    count = max(1, round(fraction * num_samples)) if fraction > 0 else 0
    if count >= num_samples:
        raise ValueError(f"holding out {count} of {num_samples} samples (fraction {fraction}) "
                         f"leaves none to train on")
    permutation = np.random.default_rng(HELD_OUT_SEED).permutation(num_samples)
    return np.sort(permutation[:count])
