"""Training batches from WebDataset shards: layout-invariant, resumable, random access.

Order. Global sample g (g = 0, 1, 2, ... over the whole run) is manifest sample
`permutation(seed, epoch)[g % N]` with epoch = g // N and N the manifest's sample count.
Step s consumes global samples [s * G, (s + 1) * G) for the global batch G; DP rank r takes
the contiguous slice [s * G + r * G / DP, s * G + (r + 1) * G / DP) and micro batch m of it
the m-th run of `micro_batch` samples. Every DP rank therefore gets exactly G / DP samples
per step whatever the shard count, and the concatenated slices of any DP size are the same
global batch: any TP x PP x DP layout trains on the single-process order. Sample values
depend only on (seed, global index, the shards), never on worker count or prefetch depth.

Reading. Members are read by the manifest's byte offsets (`shard_reader.py`); each shard's
size is checked when a process opens it and its sha256 once per rank (the process that
dispatches micro batches to the workers checks a shard before they read it); a mismatched
shard stops the run with a `ShardError` naming it. A manifest made with another
preprocessing config than `LoaderConfig.preprocess_hash` is refused the same way.

Pipeline stages. `need_inputs` (the first stage) gets tokens, images, ECG and EEG;
`need_labels` (the last stage) gets targets, the loss mask and the presence flags
(`has_image`, ... for the loss per input kind); a middle stage (neither)
opens no shard and gets empty MicroBatch objects. `micro_batch(step, micro, fields)` reads
one micro batch with only the named fields, as `batch.TokenSource` does. TP ranks of one DP rank build the same loader (same dp_rank) and so see identical batches
without a broadcast.

Corrupt samples. A sample whose tar header, npy header, JSON or UTF-8 text is bad, or whose
array shape differs from the loader's, is skipped, counted and logged (its pseudonymous key
and the reason only: no content) and replaced by the next manifest sample of the same
epoch's permutation that is good. The verdict reads the same small members and headers on
every stage, so all ranks replace it identically. The run raises `SkipLimitError` once the
skipped share of samples read by this rank exceeds `max_skip_fraction` (judged after
`skip_check_after` samples; the counts restart when a run resumes).

Modalities. A modality with a zero placeholder budget (`LoaderConfig.budget`) is one the
model has no encoder for: its arrays are neither checked nor read, it gets no placeholders
and its presence flag is False (the sample trains as its other inputs and text).

Document boundaries. One study per sequence: a row holds one study's placeholders and
report, padded to seq_length + 1 (`packing.py`). No sequence spans two documents, so plain
causal attention needs no document mask; padding and placeholders are zero in the loss mask.

Validation split. `LoaderConfig.eval_fraction` holds a constant-seeded share of the
manifest's samples out of the training permutation (data/sampler.py `held_out_samples`: the
same samples for every run seed); `split="eval"` (or `held_out()`) reads only those, in
manifest order, through the same (step, DP rank, micro batch) arithmetic. Permutation and
replacement of corrupt samples then run over this split's samples alone, so a held-out
sample never reaches a training batch, not even as a replacement.

Resume. `state_dict()` holds the consumed-sample count (global, so it is the same on every
rank and under any layout); `load_state_dict()` makes the next step the one after it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from megamed.data.batch import INPUTS, LABELS, PRESENCE, MicroBatch
from megamed.data.packing import MODALITIES, TokenBudget, pack_study, special_ids
from megamed.data.sampler import held_out_samples
from megamed.data.shard_reader import ARRAYS, EXTS, Manifest, SampleError, ShardError, ShardFiles

log = logging.getLogger(__name__)
MAX_CONSECUTIVE_SKIPS = 64  # a run of unreadable samples this long means a broken corpus
ARRAY_FIELDS = {"images": "image", "ecg": "ecg", "eeg": "eeg"}  # MicroBatch field -> modality
FIRST_STAGE = INPUTS | frozenset(ARRAY_FIELDS)  # tokens and every modality's arrays
KNOWN_FIELDS = FIRST_STAGE | LABELS | PRESENCE


class LoaderConfigError(ValueError):
    pass


class SkipLimitError(RuntimeError):
    pass


class LoaderStateError(ValueError):
    pass


@dataclass(frozen=True)
class LoaderConfig:
    seq_length: int
    global_batch: int
    micro_batch: int
    seed: int = 1234
    num_workers: int = 2
    prefetch: int = 2                  # micro batches in flight per worker
    max_skip_fraction: float = 0.01
    skip_check_after: int = 100        # samples read before the fraction is judged
    budget: TokenBudget = field(default_factory=TokenBudget)
    image_shape: Optional[tuple] = None  # None: taken from the first image in the manifest
    ecg_shape: Optional[tuple] = None
    eeg_shape: Optional[tuple] = None
    preprocess_hash: Optional[str] = None  # refuse shards made with other preprocessing
    verify_sha256: bool = True
    eval_fraction: float = 0.0         # manifest share held out of training for validation


class _Order:
    """Global sample index -> manifest sample index, a pure function of (seed, index) over
    the manifest samples of one split (`members`); shuffled per epoch unless `shuffle` is
    False (the validation split: manifest order)."""

    def __init__(self, members: np.ndarray, seed: int, shuffle: bool = True):
        self.members, self.num_samples, self.seed = members, len(members), seed
        self.shuffle = shuffle
        self._epoch, self._permutation = None, None  # one epoch at a time: N int64 in memory

    def permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self.members
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch, 0x5A3D])
            # With nothing held out members[p] is p: the order of a loader without a split.
            self._epoch = epoch
            self._permutation = self.members[rng.permutation(self.num_samples)]
        return self._permutation

    def __call__(self, global_index: int) -> int:
        epoch, position = divmod(global_index, self.num_samples)
        return int(self.permutation(epoch)[position])


class _Assembler:
    """Builds micro batches; lives in every worker process (forked with its state)."""

    def __init__(self, manifest: Manifest, tokenizer, config: LoaderConfig, dp_rank: int,
                 dp_size: int, fields: frozenset, split: str = "train"):
        self.manifest, self.tokenizer, self.config = manifest, tokenizer, config
        self.dp_rank, self.dp_size, self.fields = dp_rank, dp_size, fields
        self.files = ShardFiles(manifest, config.verify_sha256)
        self.order = _split_order(len(manifest), config, split)
        self.ids = special_ids(tokenizer)
        self.used = tuple(m for m in MODALITIES if getattr(config.budget, m) > 0)
        self._shapes: Optional[dict] = None

    @property
    def shapes(self) -> dict:
        """Expected array shape per modality; found on first use (a middle stage never
        opens a shard)."""
        if self._shapes is None:
            c = self.config
            given = {"image": c.image_shape, "ecg": c.ecg_shape, "eeg": c.eeg_shape}
            self._shapes = {m: None if m not in self.used else given[m]
                            if given[m] is not None else self._first_shape(m)
                            for m in MODALITIES}
        return self._shapes

    def _first_shape(self, modality: str) -> Optional[tuple]:
        """The shape of the first readable array of this modality in manifest order: the same
        answer on every rank, so all agree on which samples mismatch it."""
        ext = ARRAYS[modality]
        for index in np.flatnonzero(self.manifest.sizes[:, EXTS.index(ext)] >= 0):
            try:
                return self.files.array_header(int(index), ext).shape
            except SampleError:
                continue
        return None

    def sample_range(self, step: int, micro: int) -> range:
        c = self.config
        start = (step * c.global_batch + self.dp_rank * (c.global_batch // self.dp_size)
                 + micro * c.micro_batch)
        return range(start, start + c.micro_batch)

    def good_sample(self, global_index: int, skips: list):
        """(SampleInfo of the sample at global_index or its replacement, skips appended)."""
        epoch, position = divmod(global_index, self.order.num_samples)
        permutation = self.order.permutation(epoch)
        for attempt in range(MAX_CONSECUTIVE_SKIPS):
            index = int(permutation[(position + attempt) % self.order.num_samples])
            try:
                return self.files.inspect_sample(index, self.shapes)
            except SampleError as e:
                skips.append((index, e.key, e.reason))
        raise SkipLimitError(f"{MAX_CONSECUTIVE_SKIPS} consecutive unreadable samples from "
                             f"global index {global_index} (epoch {epoch}): the shards are "
                             f"broken; last reason: {skips[-1][2]}")

    def build(self, step: int, micro: int, fields: Optional[frozenset] = None
              ) -> tuple[MicroBatch, list]:
        """The micro batch with `fields` filled (default: this loader's), and the list of
        (manifest index, key, reason) skipped for it. Which samples it holds does not depend
        on `fields`."""
        fields = self.fields if fields is None else frozenset(fields)
        skips: list = []
        if not fields:
            return MicroBatch(), skips
        infos = [self.good_sample(g, skips) for g in self.sample_range(step, micro)]
        batch = MicroBatch(sample_ids=torch.tensor([i.index for i in infos], dtype=torch.int64))
        if fields & (INPUTS | LABELS):
            rows, masks = zip(*(self._pack(info) for info in infos))
            rows = torch.from_numpy(np.stack(rows))
            if "tokens" in fields:
                batch.tokens = rows[:, :-1].contiguous()
            if "targets" in fields:
                batch.targets = rows[:, 1:].contiguous()
            if "loss_mask" in fields:
                batch.loss_mask = torch.from_numpy(np.stack(masks))
        for name, modality in ARRAY_FIELDS.items():
            if name in fields or f"has_{modality}" in fields:
                setattr(batch, "has_" + modality, torch.tensor(
                    [modality in self.used and modality in i.arrays for i in infos]))
            if name in fields:
                self._stack_arrays(batch, name, modality, infos)
        return batch, skips

    def _pack(self, info):
        text_ids = self.tokenizer.encode(info.text) if info.text else []
        present = tuple(m for m in info.arrays if m in self.used)
        return pack_study(text_ids, present, self.config.seq_length,
                          self.config.budget, self.ids)

    def _stack_arrays(self, batch: MicroBatch, name: str, modality: str, infos: list) -> None:
        shape = self.shapes[modality]
        if shape is None:  # no sample of the corpus has this modality, or the model no encoder
            return
        out = np.zeros((len(infos), *shape), dtype=np.float16)
        for row, info in enumerate(infos):
            header = info.arrays.get(modality)
            if header is None:
                continue
            if header.shape == shape and header.dtype == out.dtype and not header.fortran:
                self.files.read_array_into(info.index, ARRAYS[modality], header, out[row])
            else:  # float32 data, or an MR image's single channel filling every CT channel
                out[row] = self.files.load_array(info.index, ARRAYS[modality], header)
        setattr(batch, name, torch.from_numpy(out))


def _split_order(num_samples: int, config: LoaderConfig, split: str) -> _Order:
    """The order of split `split` ("train" | "eval") of a manifest of `num_samples`."""
    try:
        held = held_out_samples(num_samples, config.eval_fraction)
    except ValueError as e:
        raise LoaderConfigError(f"eval_fraction: {e}") from None
    if split == "eval":
        if not len(held):
            raise LoaderConfigError("the validation split needs eval_fraction > 0")
        return _Order(held, config.seed, shuffle=False)
    if split != "train":
        raise LoaderConfigError(f"split {split!r} is not 'train' or 'eval'")
    return _Order(np.setdiff1d(np.arange(num_samples), held), config.seed)


class _MicroBatchDataset(Dataset):
    """Item (k, shards) = this rank's k-th micro batch of the run, (step, micro) =
    divmod(k, M); `shards` were verified by the dispatching process."""

    def __init__(self, assembler: _Assembler, micro_batches: int):
        self.assembler, self.micro_batches = assembler, micro_batches

    def __getitem__(self, item):
        k, shards = item
        self.assembler.files.verified.update(shards)
        try:
            return self.assembler.build(*divmod(k, self.micro_batches))
        # Handed back whole, so the trainer sees the typed error. (A SampleError here means
        # a shard changed under a running job: good_sample already vetted every member.)
        except (ShardError, SampleError, SkipLimitError) as e:
            return e


class _Dispatch(Sampler):
    """Micro-batch numbers from `start` on, run in the main process: it checks the shards a
    micro batch will read before a worker reads them (each shard hashed once per rank;
    a replacement sample's shard, if new, is checked by the worker itself)."""

    def __init__(self, assembler: _Assembler, micro_batches: int, start: int):
        self.assembler, self.micro_batches, self.start = assembler, micro_batches, start

    def __iter__(self):
        k, a = self.start, self.assembler
        while True:
            samples = [a.order(g) for g in a.sample_range(*divmod(k, self.micro_batches))]
            shards = sorted({int(a.manifest.shard_of[i]) for i in samples})
            a.files.verify(shards)
            yield k, shards
            k += 1


def _as_is(item):
    return item


class ShardLoader:
    """Micro batches of this DP rank. `for micro_batches in loader:` yields one list of
    `micro_batches_per_step` MicroBatch per step, starting after the consumed samples."""

    def __init__(self, root, tokenizer, config: LoaderConfig, dp_rank: int = 0,
                 dp_size: int = 1, need_inputs: bool = True, need_labels: bool = True,
                 split: str = "train"):
        c = config
        if c.global_batch % (dp_size * c.micro_batch):
            raise LoaderConfigError(
                f"global batch {c.global_batch} is not a multiple of DP {dp_size} x micro "
                f"batch {c.micro_batch} = {dp_size * c.micro_batch}")
        if not 0 <= dp_rank < dp_size:
            raise LoaderConfigError(f"dp_rank {dp_rank} outside [0, {dp_size})")
        if c.budget.total() + 2 > c.seq_length:
            raise LoaderConfigError(
                f"seq_length {c.seq_length} cannot hold the placeholder budget "
                f"{c.budget.image} + {c.budget.ecg} + {c.budget.eeg} plus <bos> and <eos>")
        self.config, self.dp_rank, self.dp_size = config, dp_rank, dp_size
        self.manifest = Manifest(root, c.preprocess_hash)
        self.micro_batches_per_step = c.global_batch // (dp_size * c.micro_batch)
        self.consumed_samples = 0
        self.skipped = self.read = 0
        fields = (FIRST_STAGE if need_inputs else frozenset()) | (LABELS | PRESENCE
                                                                  if need_labels else frozenset())
        self._assembler = _Assembler(self.manifest, tokenizer, config, dp_rank, dp_size, fields,
                                     split)
        self._held_out_args = (root, tokenizer, config, dp_rank, dp_size, need_inputs,
                               need_labels)

    def held_out(self) -> "ShardLoader":
        """This rank's loader of the validation split (`LoaderConfig.eval_fraction`)."""
        return ShardLoader(*self._held_out_args, split="eval")

    @classmethod
    def for_rank(cls, root, tokenizer, config: LoaderConfig, state) -> "ShardLoader":
        """The loader of one rank of a megamed.parallel.state.ParallelState (or anything with
        dp_rank, dp, pp_rank, pp): the first stage reads inputs, the last stage labels."""
        return cls(root, tokenizer, config, dp_rank=state.dp_rank, dp_size=state.dp,
                   need_inputs=state.pp_rank == 0, need_labels=state.pp_rank == state.pp - 1)

    @property
    def num_samples(self) -> int:
        return len(self.manifest)

    @property
    def shapes(self) -> dict:
        """Array shape per modality (None where the corpus has none)."""
        return dict(self._assembler.shapes)

    def global_sample(self, global_index: int) -> int:
        """Manifest index of global sample `global_index` (before any replacement)."""
        return self._assembler.order(global_index)

    def micro_batch(self, step: int, micro: int, fields=None) -> MicroBatch:
        """Micro batch `micro` of step `step` for this rank, read now in this process, with
        only `fields` filled (names of MicroBatch fields, e.g. batch.INPUTS | batch.LABELS;
        default: what the constructor's need_inputs/need_labels say). The same call as
        batch.TokenSource's, so the trainer can take either."""
        if not 0 <= micro < self.micro_batches_per_step:
            raise IndexError(f"micro batch {micro} outside [0, {self.micro_batches_per_step})")
        unknown = set(fields or ()) - KNOWN_FIELDS
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}; known: {sorted(KNOWN_FIELDS)}")
        batch, skips = self._assembler.build(step, micro, fields)
        self._account(batch, skips)
        return batch

    def _account(self, batch: MicroBatch, skips: list) -> None:
        self.read += (0 if batch.sample_ids is None else len(batch.sample_ids)) + len(skips)
        self.skipped += len(skips)
        for index, key, reason in skips:
            log.warning("skipped sample %s (manifest index %d): %s [%d skipped of %d read]",
                        key, index, reason, self.skipped, self.read)
        c = self.config
        if self.read >= c.skip_check_after and self.skipped > c.max_skip_fraction * self.read:
            raise SkipLimitError(
                f"{self.skipped} of {self.read} samples read were unreadable "
                f"({self.skipped / self.read:.2%} > max_skip_fraction "
                f"{c.max_skip_fraction:.2%}); see the warnings for keys and reasons")

    def __iter__(self) -> Iterator[list[MicroBatch]]:
        c, m = self.config, self.micro_batches_per_step
        step = self.consumed_samples // c.global_batch
        if not self._assembler.fields:  # a middle stage: empty batches, no workers
            items = iter(lambda: (MicroBatch(), []), None)
        else:
            self._assembler.shapes  # found here once, before the workers start, not by each
            items = iter(DataLoader(
                _MicroBatchDataset(self._assembler, m), batch_size=None,
                sampler=_Dispatch(self._assembler, m, step * m), num_workers=c.num_workers,
                collate_fn=_as_is, prefetch_factor=c.prefetch if c.num_workers else None))
        try:
            while True:
                batches = []
                for _ in range(m):
                    item = next(items)
                    if isinstance(item, Exception):
                        raise item
                    batch, skips = item
                    self._account(batch, skips)
                    batches.append(batch)
                self.consumed_samples = (step + 1) * c.global_batch
                step += 1
                yield batches
        finally:
            # Stop the workers now: a traceback that keeps this frame alive would otherwise
            # keep them until garbage collection, which then waits seconds for each.
            del items

    def state_dict(self) -> dict:
        """Save this with the checkpoint of the last step taken from the iterator."""
        return {"consumed_samples": self.consumed_samples, "seed": self.config.seed,
                "num_samples": self.num_samples,
                "preprocess_hash": self.manifest.preprocess_hash,
                "eval_fraction": self.config.eval_fraction}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        state = {"eval_fraction": 0.0, **state}  # saved before the validation split existed
        for name in ("seed", "num_samples", "preprocess_hash", "eval_fraction"):
            if state.get(name) != mine[name]:
                raise LoaderStateError(
                    f"checkpoint's loader {name} is {state.get(name)!r}, this loader's "
                    f"{mine[name]!r}: resuming would change the sample order")
        consumed = int(state["consumed_samples"])
        if consumed % self.config.global_batch:
            raise LoaderStateError(f"consumed_samples {consumed} is not a whole number of "
                                   f"global batches of {self.config.global_batch}")
        self.consumed_samples = consumed
