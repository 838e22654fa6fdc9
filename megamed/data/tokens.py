"""Pre-tokenised corpora: flat files of token ids (`.npy`, or raw `.bin` of uint16/uint32).

The files matching a glob are concatenated (in sorted name order) and cut into samples of
seq_length + 1 tokens; a seeded permutation fixes the order, so sample i depends only on
(seed, i, the files). Files are memory-mapped: nothing is read until a sample is asked for.

Validation split: `eval_fraction` holds a constant-seeded share of the samples out of the
training order (data/sampler.py `held_out_samples`); `split="eval"` reads just those, in
corpus order and the same for every run seed (every sample when the fraction is 0: a corpus
kept whole for validation, --eval-data).
"""
from __future__ import annotations

import glob as globlib
from pathlib import Path

import numpy as np

from megamed.data.sampler import held_out_samples


class TokenFileError(ValueError):
    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _open(path: Path, vocab_size: int) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            tokens = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as e:
            raise TokenFileError(path, f"not a readable .npy file ({e})") from None
    elif path.suffix == ".bin":
        dtype = np.uint16 if vocab_size <= 65536 else np.uint32
        if path.stat().st_size % np.dtype(dtype).itemsize:
            raise TokenFileError(path, f"size {path.stat().st_size} is not a multiple of "
                                       f"{np.dtype(dtype).itemsize}-byte {np.dtype(dtype).name}")
        tokens = np.memmap(path, dtype=dtype, mode="r")
    else:
        raise TokenFileError(path, "expected a .npy or .bin file of token ids")
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
        raise TokenFileError(path, f"expected a 1-D integer array, got {tokens.dtype} "
                                   f"{tokens.shape}")
    return tokens


class TokenFileDataset:
    def __init__(self, pattern: str, vocab_size: int, seq_length: int, seed: int,
                 eval_fraction: float = 0.0, split: str = "train"):
        if split not in ("train", "eval"):
            raise ValueError(f"split {split!r} is not 'train' or 'eval'")
        self.pattern, self.seed, self.eval_fraction = pattern, seed, eval_fraction
        paths = sorted(Path(p) for p in globlib.glob(pattern))
        if not paths:
            raise TokenFileError(pattern, "no file matches this glob")
        self.seq_length, self.vocab_size = seq_length, vocab_size
        self.files = [_open(p, vocab_size) for p in paths]
        self.paths = paths
        lengths = np.array([len(f) for f in self.files])
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        num_samples = (int(self.offsets[-1]) - 1) // seq_length
        if num_samples < 1:
            raise TokenFileError(pattern, f"{self.offsets[-1]} tokens in all: fewer than one "
                                          f"sample of {seq_length + 1}")
        try:
            held = held_out_samples(num_samples, eval_fraction)
        except ValueError as e:
            raise TokenFileError(pattern, str(e)) from None
        if split == "eval":
            self.order = held if eval_fraction else np.arange(num_samples)
        else:
            order = np.random.default_rng([seed, 0xDA7A]).permutation(num_samples)
            self.order = order[~np.isin(order, held)] if len(held) else order

    def held_out(self) -> "TokenFileDataset":
        """The validation split of the same files (the samples this split never reads)."""
        if not self.eval_fraction:
            raise TokenFileError(self.pattern, "no samples are held out for validation "
                                               "(eval_fraction is 0)")
        return TokenFileDataset(self.pattern, self.vocab_size, self.seq_length, self.seed,
                                self.eval_fraction, "eval")

    def __len__(self) -> int:
        return len(self.order)

    def _slice(self, start: int, stop: int) -> np.ndarray:
        parts = []
        while start < stop:
            f = int(np.searchsorted(self.offsets, start, side="right") - 1)
            end = min(stop, int(self.offsets[f + 1]))
            parts.append(np.asarray(self.files[f][start - self.offsets[f]:end - self.offsets[f]]))
            start = end
        return np.concatenate(parts).astype(np.int64)

    def __getitem__(self, index: int) -> np.ndarray:
        """Sample `index` (wrapping around: epochs repeat the same permutation)."""
        sample = int(self.order[int(index) % len(self.order)])
        tokens = self._slice(sample * self.seq_length, (sample + 1) * self.seq_length + 1)
        if tokens.max() >= self.vocab_size or tokens.min() < 0:
            f = int(np.searchsorted(self.offsets, sample * self.seq_length, side="right") - 1)
            raise TokenFileError(self.paths[f], f"token id {int(tokens.max())} outside the "
                                                f"vocabulary [0, {self.vocab_size})")
        return tokens
