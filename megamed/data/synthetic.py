"""A deterministic synthetic token stream with learnable structure, for demos and tests.

Tokens follow a fixed random bigram chain: each token has `branching` possible successors,
chosen uniformly. A model that learns the chain reaches a loss of ln(branching) from the
ln(vocab) of a uniform guess, so the loss visibly falls. Sample i depends only on
(seed, i): any rank can produce any sample without coordination.
"""
from __future__ import annotations

import numpy as np


class SyntheticBigramDataset:
    def __init__(self, vocab_size: int, seq_length: int, seed: int, branching: int = 4):
        if branching < 1 or branching > vocab_size:
            raise ValueError(f"branching must be in [1, vocab {vocab_size}], got {branching}")
        self.vocab_size, self.seq_length, self.seed = vocab_size, seq_length, seed
        chain = np.random.default_rng([seed, 0x5EED])
        self.successors = chain.integers(0, vocab_size, size=(vocab_size, branching))

    @property
    def min_loss(self) -> float:
        """Entropy of the chain: the best achievable mean loss in nats."""
        return float(np.log(self.successors.shape[1]))

    def __getitem__(self, index: int) -> np.ndarray:
        """seq_length + 1 token ids (inputs and the shifted targets)."""
        rng = np.random.default_rng([self.seed, int(index)])
        choices = rng.integers(0, self.successors.shape[1], size=self.seq_length)
        tokens = np.empty(self.seq_length + 1, dtype=np.int64)
        tokens[0] = rng.integers(0, self.vocab_size)
        for t in range(self.seq_length):
            tokens[t + 1] = self.successors[tokens[t], choices[t]]
        return tokens
