"""Validation: loss and perplexity on held-out data every `--eval-interval` steps.

Held-out data, per training source (`eval_source`):
  token files (--data)     `--eval-fraction F` holds F of the samples out of the training
                           order (data/tokens.py), or `--eval-data GLOB` names other files;
  WebDataset shards        `LoaderConfig.eval_fraction` does the same over the manifest
                           (data/loader.py, `ShardLoader.held_out`);
  synthetic streams        the samples from index 2^62 on, which training never reaches
                           (same chain, same classes: the same distribution).

Each validation reads the same `--eval-iters` global batches of held-out samples, laid out
over DP and micro batches exactly as training batches (data/sampler.py), so its value is
comparable along the run and between layouts. They run through the model chunks with the
forward-only pipeline schedule (parallel/pipeline.py `forward_only`) under torch.no_grad and
with dropout off. `val_loss` is the mean cross-entropy over every counted target token of
those samples (the loss mask respected), summed on the last stage and reduced over PP and
DP; `val_ppl` = exp(val_loss).

Training is untouched: validation draws from no random stream (dropout is off, data come
from per-index seeded generators), changes no parameter, gradient, optimizer state or data
position, so a run with `--eval-interval` has the training losses of one without, bit for
bit. Under ZeRO-3 the forward hooks gather and free each block as in a training forward.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Optional

import torch

from megamed.config import Config
from megamed.data.batch import MicroBatch, TokenSource
from megamed.data.synthetic_media import StudySource
from megamed.data.tokens import TokenFileDataset
from megamed.parallel import collectives as C
from megamed.parallel.pipeline import Runner, forward_only
from megamed.parallel.state import ParallelState

HELD_OUT_START = 1 << 62  # synthetic streams: held-out sample i is stream sample 2^62 + i


class HeldOutStream:
    """Samples of an endless synthetic dataset (`dataset[i]`) from HELD_OUT_START on."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, index: int):
        return self.dataset[HELD_OUT_START + int(index)]


class HeldOutStudies:
    """The same for synthetic studies (`study(i)`)."""

    def __init__(self, studies):
        self.studies, self.encoders = studies, studies.encoders

    def study(self, index: int) -> dict:
        return self.studies.study(HELD_OUT_START + int(index))


def eval_source(cfg: Config, source):
    """The held-out twin of the training `source` (same layout, DP rank and device)."""
    if hasattr(source, "held_out"):  # a shard loader knows its own split
        return source.held_out()
    if isinstance(source, StudySource):
        return StudySource(HeldOutStudies(source.studies), source.layout, source.dp_rank,
                           source.device)
    d, m = cfg.data, cfg.model
    if d.eval_path:
        dataset = TokenFileDataset(d.eval_path, m.vocab_size, m.seq_length, cfg.train.seed,
                                   split="eval")
    elif isinstance(source.dataset, TokenFileDataset):
        dataset = source.dataset.held_out()
    else:
        dataset = HeldOutStream(source.dataset)
    return TokenSource(dataset, source.layout, source.dp_rank, source.device)


class _Batches:
    """A source's first `iters` steps as one run of iters x M micro batches, so that one
    schedule call pipelines the whole evaluation."""

    def __init__(self, source, micro_batches_per_step: int):
        self.source, self.per_step = source, micro_batches_per_step

    def micro_batch(self, step: int, micro: int, fields: frozenset) -> MicroBatch:
        return self.source.micro_batch(*divmod(micro, self.per_step), fields)


class EvalLoss:
    """Sums the masked per-token loss and the counted tokens of the micro batches this
    stage finishes; `reduce` gives the mean over every counted token of the evaluation."""

    def __init__(self, device):
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # [loss, tokens]

    def start(self) -> None:
        self.sums.zero_()

    def loss_fn(self, batch: MicroBatch):
        return partial(self._accumulate, batch)

    def _accumulate(self, batch: MicroBatch, per_token: torch.Tensor) -> torch.Tensor:
        """per_token [b, s] -> the same, after adding its masked sum and token count."""
        mask = (torch.ones_like(per_token) if batch.loss_mask is None
                else batch.loss_mask.to(per_token.dtype))
        self.sums += torch.stack([(per_token.float() * mask).sum(), mask.sum()]).double()
        return per_token

    def reduce(self, state: ParallelState) -> tuple[float, float]:
        """(mean loss, tokens): only the last stage holds sums, so add over PP, then DP."""
        sums = C.all_reduce(C.all_reduce(self.sums.clone(), state.pp_group), state.dp_group)
        loss, tokens = sums.tolist()
        return loss / tokens, tokens


@dataclass
class Validation:
    loss: float
    seconds: float  # wall time of the evaluation (not part of the step's time)

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.loss < 700 else math.inf

    def fields(self) -> dict:
        """The keys the step record and the metrics JSONL carry."""
        return {"val_loss": self.loss, "val_ppl": self.perplexity, "val_time_s": self.seconds}


class Evaluator:
    """`after_step(step)` runs a validation on every `eval_interval`-th step and returns it
    (None on the other steps). Every rank calls it at the same steps."""

    def __init__(self, cfg: Config, state: ParallelState, runner: Runner, source):
        t = cfg.train
        self.interval, self.state = t.eval_interval, state
        self.loss = EvalLoss(runner.device)
        forward_step = dataclasses.replace(
            runner.forward_step, source=_Batches(eval_source(cfg, source), t.grad_accum_steps),
            loss=self.loss, activations=None, step=0, data_wait=None)
        self.runner = dataclasses.replace(runner, forward_step=forward_step, last_backward=None,
                                          num_micro_batches=t.eval_iters * t.grad_accum_steps)

    def after_step(self, step: int) -> Optional[Validation]:
        if step % self.interval:
            return None
        return self.run()

    def run(self) -> Validation:
        started = time.time()
        self.loss.start()
        with torch.no_grad(), _eval_mode(self.runner.forward_step.chunks):
            forward_only(self.runner, self.runner.num_micro_batches)
        loss, _ = self.loss.reduce(self.state)
        return Validation(loss, time.time() - started)


@contextlib.contextmanager
def _eval_mode(chunks: list):
    """Dropout off for the evaluation, each module's own mode back afterwards."""
    modes = [(m, m.training) for chunk in chunks for m in chunk.modules()]
    for chunk in chunks:
        chunk.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def build_evaluator(cfg: Config, state: ParallelState, runner: Runner,
                    source) -> Optional[Evaluator]:
    """The evaluator of `--eval-interval N`, or None when validation is off."""
    return Evaluator(cfg, state, runner, source) if cfg.train.eval_interval else None
