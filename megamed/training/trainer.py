"""The pretraining loop: build the mesh, the model stage, the optimizer and the data, then
step. `examples/pretrain_32b.py` is a thin command-line wrapper around `pretrain`.

One optimizer step, in order (each line is one place where ranks talk to each other):
  1. the schedule runs forward/backward over this rank's micro batches (TP collectives
     inside the layers),
  2. gradients are averaged over DP                          (parallel/data.py),
  3. the global gradient norm is reduced over TP x PP        (training/optimizer.py),
  4. AdamW updates every shard locally,
  5. the loss is averaged over DP for the log.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from megamed.config import Config, ConfigError, validate_layout
from megamed.data.sampler import BatchLayout, micro_batch
from megamed.data.synthetic import SyntheticBigramDataset
from megamed.data.tokens import TokenFileDataset
from megamed.model.transformer import DecoderStage, count_parameters
from megamed.parallel import collectives as C
from megamed.parallel.data import average_gradients
from megamed.parallel.pipeline import (Runner, all_reduce_tied_embedding_grads,
                                      check_micro_batches, chunk_layers, describe_partition,
                                      dry_run, format_schedule, select_schedule)
from megamed.parallel.random import seed_streams
from megamed.parallel.state import ParallelState
from megamed.parallel.tensor import initialize_parameters
from megamed.training import checkpoint
from megamed.training.metrics import MetricsLogger, flops_per_token
from megamed.training.optimizer import build_optimizer, clip_gradients, counts_once, lr_at


def local_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def build_dataset(cfg: Config):
    m, d = cfg.model, cfg.data
    if d.path:
        return TokenFileDataset(d.path, m.vocab_size, m.seq_length, cfg.train.seed)
    if d.source != "synthetic":
        raise ConfigError(f"data.source={d.source!r} needs data.path (--data GLOB)")
    return SyntheticBigramDataset(m.vocab_size, m.seq_length, cfg.train.seed,
                                  d.synthetic_branching)


def build_model(cfg: Config, state: ParallelState, device, rng=None) -> list[DecoderStage]:
    """This rank's model chunks (one per virtual stage; the whole decoder at PP=1),
    initialised from per-parameter seeds."""
    P, V, m = cfg.parallel.pp, cfg.parallel.virtual_stages, cfg.model
    chunks = []
    for c in range(V):
        has_embedding = state.is_first_stage and c == 0
        has_output = state.is_last_stage and c == V - 1
        chunk = DecoderStage(m, state.tp_group, chunk_layers(m.num_layers, P, V, state.pp_rank, c),
                             has_embedding, has_output, rng=rng, device=device)
        initialize_parameters(chunk, cfg.train.seed)
        if has_output and m.tie_embeddings and hasattr(chunk, "output"):
            chunk.output.weight.pipeline_duplicate = True  # counted once, on the first stage
        chunks.append(chunk)
    return chunks


def parameter_count(params: list, state: ParallelState) -> int:
    """Real parameters of the whole model: local numels summed over TP x PP, each counted
    once (TP-replicated tensors and the tied output copy are skipped where duplicated)."""
    local = sum(p.numel() for p in params if counts_once(p, state))
    return int(C.all_reduce(torch.tensor(local, dtype=torch.int64), state.model_group).item())


@dataclass
class StepResult:
    loss: float
    grad_norm: float


def train_step(runner: Runner, optimizer, params, cfg: Config, state: ParallelState,
               autocast) -> StepResult:
    for p in params:
        p.grad = None
    runner.loss.zero_()
    with autocast():
        select_schedule(state.pp, cfg.parallel.virtual_stages)(runner, runner.num_micro_batches)
    all_reduce_tied_embedding_grads(runner.chunks, state.embedding_group)
    average_gradients(params, state.dp_group)
    grad_norm = clip_gradients(params, cfg.train.clip_grad, state)
    optimizer.step()
    # Only the last stage computed a loss; the others contribute zero.
    loss = C.all_reduce(runner.loss.clone(), state.pp_group)
    loss = C.all_reduce(loss, state.dp_group, "avg")
    return StepResult(float(loss), grad_norm)


def _autocast(cfg: Config, device: torch.device):
    if cfg.train.precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def pretrain(cfg: Config, save: Optional[str] = None, load: Optional[str] = None,
             metrics_jsonl: Optional[str] = None, print_schedule: bool = False) -> list[dict]:
    """Runs `cfg.train.steps` optimizer steps; torch.distributed must be initialised.
    Returns the per-step metrics (on global rank 0; an empty list elsewhere)."""
    validate_layout(cfg, dist.get_world_size())
    p, t = cfg.parallel, cfg.train
    check_micro_batches(p.pp, p.virtual_stages, t.grad_accum_steps)
    state = ParallelState.create(p.tp, p.pp)
    device = local_device()
    rng = seed_streams(t.seed, state.tp_rank, state.pp_rank)
    chunks = build_model(cfg, state, device, rng)
    params = [q for chunk in chunks for q in chunk.parameters() if q.requires_grad]
    optimizer = build_optimizer(params, t)
    dataset = build_dataset(cfg)
    layout = BatchLayout(t.global_batch, t.micro_batch, state.dp)
    total_params = parameter_count(params, state)
    start = 0
    if load:
        start, payload = checkpoint.load(load, state)
        for chunk, chunk_state in zip(chunks, payload["model"]):
            chunk.load_state_dict(chunk_state)
        optimizer.load_state_dict(payload["optimizer"])
        rng.set_states(payload["rng"])
        torch.set_rng_state(payload["torch_rng"])
    logger = None
    if state.rank == 0:
        print(f"megamed: profile {cfg.profile}, {total_params:,} parameters "
              f"(formula {count_parameters(cfg.model, p.tp):,}), TP {p.tp} x PP {p.pp} x "
              f"DP {state.dp}, global batch {t.global_batch} = micro {t.micro_batch} x "
              f"accumulation {t.grad_accum_steps} x DP {state.dp}, device {device.type}",
              flush=True)
        if p.pp > 1:
            print(describe_partition(cfg.model.num_layers, p.pp, p.virtual_stages,
                                     cfg.model.tie_embeddings), flush=True)
        if print_schedule:
            print(format_schedule(dry_run(p.pp, p.virtual_stages, t.grad_accum_steps),
                                  p.virtual_stages), flush=True)
        logger = MetricsLogger(metrics_jsonl, t.steps, flops_per_token(cfg.model),
                               dist.get_world_size(), t.log_interval, start)
    autocast = _autocast(cfg, device)
    step_tokens = t.global_batch * cfg.model.seq_length
    runner = Runner(state.pp, state.pp_rank, p.virtual_stages, chunks=chunks,
                    num_micro_batches=t.grad_accum_steps,
                    shape=(t.micro_batch, cfg.model.seq_length, cfg.model.hidden_size),
                    device=device, prev_rank=state.ring_prev_rank,
                    next_rank=state.ring_next_rank)
    records = []
    for step in range(start, t.steps):
        started = time.time()
        lr = lr_at(step, t)
        for group in optimizer.param_groups:
            group["lr"] = lr
        runner.get_micro_batch = lambda m, step=step: micro_batch(
            dataset, layout.sample_indices(step, state.dp_rank, m), device)
        try:
            result = train_step(runner, optimizer, params, cfg, state, autocast)
        except RuntimeError as e:
            # A dead peer surfaces as a timeout in some collective; say where we were.
            raise RuntimeError(f"{state.describe()}: step {step + 1} failed: {e}") from e
        if logger:
            records.append(logger.log(step + 1, result.loss, lr, result.grad_norm, step_tokens,
                                      time.time() - started, (step + 1) * step_tokens))
        if save and t.save_interval and (step + 1) % t.save_interval == 0:
            _save(save, step + 1, state, chunks, optimizer, rng, cfg)
    if save and (not t.save_interval or t.steps % t.save_interval):
        _save(save, t.steps, state, chunks, optimizer, rng, cfg)
    if logger:
        logger.close()
    return records


def _save(directory, step, state, chunks, optimizer, rng, cfg: Config) -> None:
    payload = {"step": step, "model": [chunk.state_dict() for chunk in chunks], "optimizer": optimizer.state_dict(),
               "rng": rng.get_states(), "torch_rng": torch.get_rng_state()}
    path = checkpoint.save(directory, step, state, payload, cfg.to_dict())
    if state.rank == 0:
        print(f"saved checkpoint {path}", flush=True)
