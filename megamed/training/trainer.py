"""The pretraining loop: build the mesh, the model stage, the gradient buffers, the optimizer
and the data, then step. `examples/pretrain_32b.py` is a thin command-line wrapper around
`pretrain`.

One optimizer step, in order (each line is one place where ranks talk to each other):
  1. the schedule runs forward/backward over this rank's micro batches (TP collectives
     inside the layers; with ZeRO-3 the DP all-gathers of each block); during each chunk's
     last backward its full gradient buckets start reducing over DP  (parallel/data.py),
  2. the remaining reductions finish (SP-replicated gradients over TP, tied embeddings
     over the embedding group first)                             (parallel/data.py),
  3. the loss is summed over PP and averaged over DP             (training/loss.py),
     before the update, which a non-finite loss or norm skips      (training/fault.py),
  4. the global gradient norm is reduced over DP and TP x PP     (training/optimizer.py),
  5. AdamW updates this rank's shards; ZeRO-1/2 all-gather them  (parallel/data.py),
  6. at the step boundary a pre-emption flag is max-reduced over all ranks (training/fault.py).

The schedule calls back into this module only through `ForwardStep` (the model and the
data) and the loss function it returns (training/loss.py); the micro batch is a
`MicroBatch` (data/batch.py) holding only what the chunk needs.
"""
from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from megamed.config import Config, count_parameters, count_parameters_by_part, resolve
from megamed.data.batch import INPUTS, LABELS, MEDIA, PRESENCE, MicroBatch, TokenSource
from megamed.data.sampler import BatchLayout
from megamed.data.synthetic import SyntheticBigramDataset
from megamed.data.synthetic_media import StudySource, SyntheticStudies
from megamed.data.tokens import TokenFileDataset
from megamed.model.build import build_chunks
from megamed.model.flops import encoder_cost_in_layers
from megamed.model.multimodal import PARTS, part_of
from megamed.model.transformer import PRECISION_DTYPES, DecoderStage
from megamed.monitoring import DataWait, SinkGroup
from megamed.parallel import collectives as C
from megamed.parallel.data import data_parallel
from megamed.parallel.pipeline import (Runner, describe_partition, dry_run, format_schedule,
                                      select_schedule)
from megamed.parallel.random import seed_streams
from megamed.parallel.state import ParallelState
from megamed.training.checkpointing import Checkpointer, cpu_copy
from megamed.training.evaluate import build_evaluator
from megamed.training.fault import FaultGuard
from megamed.training.loss import StepLoss
from megamed.training.memory import SavedActivations, format_memory, gather_memory, rank_memory
from megamed.training.metrics import MetricsLogger, flops_per_token
from megamed.training.optimizer import (DistributedAdamW, UpdateResult, build_optimizer,
                                        counts_once, lr_at)
from megamed.training.shard_data import ShardSource, prepare_data
from megamed.training.telemetry import build_sinks, step_metrics


def local_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def build_dataset(cfg: Config):
    m, d = cfg.model, cfg.data
    if d.path:
        return TokenFileDataset(d.path, m.vocab_size, m.seq_length, cfg.train.seed,
                                d.eval_fraction)
    return SyntheticBigramDataset(m.vocab_size, m.seq_length, cfg.train.seed,
                                  d.synthetic_branching)


def build_source(cfg: Config, state: ParallelState, device):
    """The data source of this DP rank: WebDataset shards, token files, synthetic studies
    with images and waveforms (a model with encoders), or the synthetic bigram stream."""
    t = cfg.train
    if cfg.data.shards:
        return ShardSource.for_rank(cfg, state, device)
    layout = BatchLayout(t.global_batch, t.micro_batch, state.dp)
    if cfg.model.encoders() and not cfg.data.path:
        return StudySource(SyntheticStudies(cfg.model, t.seed), layout, state.dp_rank, device)
    return TokenSource(build_dataset(cfg), layout, state.dp_rank, device)


def parameter_count(params: list, state: ParallelState, device) -> int:
    """Real parameters of the whole model: local numels summed over TP x PP, each counted
    once (TP-replicated tensors and the tied output copy are skipped where duplicated)."""
    local = sum(p.numel() for p in params if counts_once(p, state))
    total = torch.tensor(local, dtype=torch.int64, device=device)  # NCCL: on the GPU
    return int(C.all_reduce(total, state.model_group).item())


@dataclass
class ForwardStep:
    """`forward_step(chunk, micro, x) -> (output, loss_fn)` for the schedules: runs model
    chunk `chunk` on micro batch `micro` of `step` (its input `x` from the previous stage,
    or the tokens on the first), under the saved-activation tracker when memory is logged.
    Each chunk asks the data source only for what it uses: the first chunk's inputs, the
    last chunk's labels, nothing in between."""
    chunks: list[DecoderStage]
    source: TokenSource
    loss: StepLoss
    activations: Optional[SavedActivations] = None
    step: int = 0
    data_wait: Optional[DataWait] = None  # times the reads of this step (monitoring)

    multimodal: bool = False

    def __post_init__(self):
        media = MEDIA if self.multimodal else frozenset()
        presence = PRESENCE if self.multimodal else frozenset()
        self.fields = [(INPUTS | media if c.has_embedding else frozenset()) |
                       (LABELS | presence if c.has_output else frozenset())
                       for c in self.chunks]

    def __call__(self, chunk: int, micro: int, x: Optional[torch.Tensor]):
        model = self.chunks[chunk]
        read = self.source.micro_batch
        if self.data_wait is not None:
            read = self.data_wait.timed(read)
        batch: MicroBatch = read(self.step, micro, self.fields[chunk])
        with self.activations.track() if self.activations else contextlib.nullcontext():
            if model.has_embedding:
                out = model(batch.tokens, batch.targets, batch.media())
            else:
                out = model(x, batch.targets)
        return out, (self.loss.loss_fn(batch) if model.has_output else None)


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    grad_norm_parts: Optional[dict] = None  # {part: norm} for a model with encoders
    loss_by_input: Optional[dict] = None    # {text|image|ecg|eeg: mean loss} likewise
    update: Optional[UpdateResult] = None   # skipped or not (training/fault.py counts)


def train_step(runner: Runner, optimizer: DistributedAdamW, grads, lr: float,
               cfg: Config, state: ParallelState,
               faults: Optional[FaultGuard] = None) -> StepResult:
    grads.zero_grad()
    step_loss = runner.forward_step.loss
    step_loss.start(optimizer.scaler.scale if optimizer.scaler is not None else 1.0)
    select_schedule(state.pp, cfg.parallel.virtual_stages)(runner, runner.num_micro_batches)
    grads.finish_grad_sync()
    if faults:
        faults.inject_nonfinite(optimizer)  # test only (MEGAMED_FAULT_INJECT)
    parts = (optimizer.grad_norms_by_part(part_of, PARTS) if cfg.model.encoders() else None)
    loss = step_loss.reduce(state)  # before the update: a non-finite loss skips it
    update = optimizer.step(lr, loss_finite=math.isfinite(loss))
    grads.gather_params()
    by_input = step_loss.reduce_by_kind(state) if cfg.model.encoders() else None
    return StepResult(loss, update.grad_norm, parts, by_input, update)


def activation_shape(cfg: Config) -> tuple[int, int, int]:
    """What pipeline stages exchange: [micro batch, seq (/ TP under SP), hidden]."""
    m, p = cfg.model, cfg.parallel
    seq = m.seq_length // p.tp if p.sequence_parallel else m.seq_length
    return (cfg.train.micro_batch, seq, m.hidden_size)


def pretrain(cfg: Config, save: Optional[str] = None, load: Optional[str] = None,
             metrics_jsonl: Optional[str] = None, print_schedule: bool = False,
             metrics_port: int = 0, tensorboard: Optional[str] = None,
             audit_db: Optional[str] = None) -> list[dict]:
    """Runs `cfg.train.steps` optimizer steps; torch.distributed must be initialised.
    Returns the per-step metrics (on global rank 0; an empty list elsewhere). The sinks
    (Prometheus, TensorBoard, audit log) start first: a busy port or an unreachable audit
    database fails here, before any training."""
    sinks = build_sinks(cfg, metrics_port, tensorboard, audit_db, load)
    try:
        with FaultGuard(cfg.train) as faults:  # catches pre-emption signals while inside
            records = _pretrain(cfg, save, load, metrics_jsonl, print_schedule, sinks, faults)
    except BaseException as e:
        sinks.close(e)
        raise
    sinks.close()
    return records


def _pretrain(cfg: Config, save: Optional[str], load: Optional[str],
              metrics_jsonl: Optional[str], print_schedule: bool, sinks: SinkGroup,
              faults: FaultGuard) -> list[dict]:
    device = local_device()
    cfg = resolve(prepare_data(cfg), dist.get_world_size(), device.type)
    p, t = cfg.parallel, cfg.train
    state = ParallelState.create(p.tp, p.pp)
    rng = seed_streams(t.seed, state.tp_rank, state.pp_rank)
    chunks = build_chunks(cfg, state.tp_group, state.pp_rank, device, rng, seed=t.seed)
    params = [q for chunk in chunks for q in chunk.parameters()]  # frozen ones too
    total_params = parameter_count(params, state, device)
    grads = data_parallel(chunks, state, p)
    optimizer = build_optimizer(grads, t, state, p.zero_stage)
    faults.bind(state, chunks, optimizer, device)
    source = build_source(cfg, state, device)
    checkpoints = Checkpointer(cfg, state, save, load, sinks.event)
    resumed = checkpoints.resume()
    start = _restore(resumed, chunks, grads, optimizer, rng, source) if resumed else 0
    if resumed:
        sinks.event("checkpoint_load", checkpoint=str(checkpoints.resumed_from), step=start)
    logger = None
    if state.rank == 0:
        _describe(cfg, state, device, total_params, print_schedule)
        logger = MetricsLogger(metrics_jsonl, t.steps, flops_per_token(cfg.model),
                               dist.get_world_size(), t.log_interval, start,
                               count_parameters_by_part(cfg.model))
    track = t.memory_interval > 0 and device.type == "cpu"
    step_tokens = t.global_batch * cfg.model.seq_length
    weights = {"image": t.loss_weight_image, "ecg": t.loss_weight_ecg,
               "eeg": t.loss_weight_eeg}
    forward_step = ForwardStep(chunks, source, StepLoss(t.grad_accum_steps, device, weights),
                               SavedActivations() if track else None,
                               multimodal=bool(cfg.model.encoders()))
    runner = Runner(state.pp, state.pp_rank, p.virtual_stages, forward_step=forward_step,
                    last_backward=grads.last_backward, num_micro_batches=t.grad_accum_steps,
                    shape=activation_shape(cfg), dtype=PRECISION_DTYPES[t.precision],
                    device=device, prev_rank=state.ring_prev_rank,
                    next_rank=state.ring_next_rank)
    evaluator = build_evaluator(cfg, state, runner, source)  # None without --eval-interval
    records, last = [], t.steps
    collect = functools.partial(checkpoint_state, state=state, chunks=chunks, grads=grads,
                                optimizer=optimizer, rng=rng, source=source)  # collect(step), for saves
    for step in range(start, t.steps):
        faults.step_started(step + 1)  # arms the hang watchdog (--step-timeout-s)
        started = time.time()
        lr = lr_at(step, t)
        forward_step.step = step
        forward_step.data_wait = data_wait = DataWait()
        try:
            result = train_step(runner, optimizer, grads, lr, cfg, state, faults)
            validation = evaluator.after_step(step + 1) if evaluator else None
        except RuntimeError as e:
            # A dead peer surfaces as a timeout in some collective; say where we were.
            raise RuntimeError(f"{state.describe()}: step {step + 1} failed: {e}") from e
        memory = None
        if t.memory_interval and (step + 1) % t.memory_interval == 0:
            memory = gather_memory(rank_memory(grads, optimizer, forward_step.activations,
                                               device),
                                   device)
        skips = faults.after_update(step + 1, result.loss, result.update)
        val = validation.fields() if validation else {}  # val_loss, val_ppl on every rank
        started += validation.seconds if validation else 0.0  # not part of the step's time
        record = {"step": step + 1, "step_time_s": time.time() - started, **val}
        if logger:
            logger.counters.update(checkpoints.counters)
            record = logger.log(step + 1, result.loss, lr, result.grad_norm, step_tokens,
                                time.time() - started, (step + 1) * step_tokens, memory,
                                result.grad_norm_parts, result.loss_by_input, val, skips)
            records.append(record)
            if memory:
                print(format_memory(step + 1, memory), flush=True)
        sinks.step(step_metrics(record, data_wait.seconds))
        checkpoints.maybe_save(step + 1, collect, val_loss=val.get("val_loss"))
        if faults.step_finished(step + 1):  # pre-empted: every rank stops after this step
            last = step + 1
            break
    grads.wait_params()
    checkpoints.finish(last, collect)
    if hasattr(source, "close"):
        source.close()
    faults.report_preemption(last, t.steps, save)
    if logger:
        logger.close()
    return records


def _describe(cfg: Config, state: ParallelState, device, total_params: int,
              print_schedule: bool) -> None:
    p, t = cfg.parallel, cfg.train
    print(f"megamed: profile {cfg.profile}, {total_params:,} parameters "
          f"(formula {count_parameters(cfg.model, p.tp):,}), TP {p.tp} x PP {p.pp} x "
          f"DP {state.dp}, global batch {t.global_batch} = micro {t.micro_batch} x "
          f"accumulation {t.grad_accum_steps} x DP {state.dp}, device {device.type}",
          flush=True)
    if cfg.model.encoders():
        parts = count_parameters_by_part(cfg.model, p.tp)
        print("parameters by part: " + ", ".join(f"{k} {v:,}" for k, v in parts.items())
              + f"; frozen (--freeze): {t.freeze}", flush=True)
    print(f"memory: ZeRO-{p.zero_stage}, {t.precision} parameters, sequence parallel "
          f"{'on' if p.sequence_parallel else 'off'}, recompute {t.recompute}"
          + (f" (every {t.recompute_every} blocks)" if t.recompute == "full" else "")
          + f", {p.bucket_mb:g} MiB gradient buckets", flush=True)
    if p.pp > 1:
        print(describe_partition(cfg.model.num_layers, p.pp, p.virtual_stages,
                                 cfg.model.tie_embeddings, encoder_cost_in_layers(cfg.model)),
              flush=True)
    if print_schedule:
        print(format_schedule(dry_run(p.pp, p.virtual_stages, t.grad_accum_steps),
                              p.virtual_stages), flush=True)


def _restore(resumed, chunks, grads, optimizer, rng, source=None) -> int:
    step, payload = resumed
    with grads.full_parameters():
        for chunk, chunk_state in zip(chunks, payload["model"]):
            chunk.load_state_dict(chunk_state)
    optimizer.load_state_dict(payload["optimizer"])
    rng.set_states(payload["rng"])
    torch.set_rng_state(payload["torch_rng"])
    if "data" in payload and hasattr(source, "load_state_dict"):
        source.load_state_dict(payload["data"])  # the loader's consumed samples
    return step


def checkpoint_state(step, state, chunks, grads, optimizer, rng, source=None
                     ) -> tuple[dict, dict]:
    """(payload, optimizer state) of this rank for a checkpoint (see checkpoint/format.py):
    a CPU snapshot that training no longer touches, copied once here, so the Checkpointer
    can write it behind training."""
    model = None
    with grads.full_parameters():  # a collective under ZeRO-3: every DP rank gathers
        if state.dp_rank == 0:
            # Copied inside: parameters are views of flat buffers (freed again under ZeRO-3).
            model = cpu_copy([chunk.state_dict() for chunk in chunks])
    payload = {"step": step, "model": model,
               **cpu_copy({"rng": rng.get_states(), "torch_rng": torch.get_rng_state()})}
    if hasattr(source, "state_dict"):
        payload["data"] = source.state_dict()  # the loader's consumed samples (exact resume)
    return payload, cpu_copy(optimizer.state_dict())
