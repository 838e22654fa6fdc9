"""AdamW with decoupled weight decay (none on norms and biases), the cosine learning-rate
schedule with linear warm-up, and clipping by the global gradient norm.

The global norm counts every parameter exactly once across the mesh: TP-sharded parameters
contribute their shard on every TP rank, TP-replicated ones (norm weights, row-parallel
biases) only on TP rank 0, and pipeline copies of a tied embedding only on the first stage.
The squared sums are then added over the model-parallel group (TP x PP). DP ranks hold
identical (averaged) gradients and need no reduction.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from megamed.config import TrainConfig
from megamed.parallel import collectives as C
from megamed.parallel.state import ParallelState


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.AdamW:
    params = list(params)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # norm weights and biases (Loshchilov 2019)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # foreach=False: the per-tensor loop applies the same elementwise maths whatever the
    # shard shapes, which keeps layouts bit-comparable.
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             eps=cfg.adam_eps, foreach=False)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warm-up to `lr` over
    `warmup_steps`, then cosine decay to `min_lr` at `steps`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def counts_once(p: torch.nn.Parameter, state: ParallelState) -> bool:
    """Whether this rank's copy of `p` is the one the global norm counts."""
    if getattr(p, "pipeline_duplicate", False):
        return False
    return not (p.tp_replicated and state.tp_rank != 0)


def global_grad_norm(params: Iterable[torch.nn.Parameter], state: ParallelState) -> float:
    grads = [p.grad for p in params if p.grad is not None and counts_once(p, state)]
    device = grads[0].device if grads else torch.device("cpu")
    total = torch.zeros((), dtype=torch.float64, device=device)
    for g in grads:
        total += g.detach().double().pow(2).sum()
    return math.sqrt(C.all_reduce(total, state.model_group).item())


def clip_gradients(params: list[torch.nn.Parameter], max_norm: float,
                   state: ParallelState) -> float:
    """Scales all gradients so the global norm is at most `max_norm`; returns the norm
    before clipping."""
    norm = global_grad_norm(params, state)
    if max_norm > 0 and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for p in params:
            if p.grad is not None:
                p.grad.mul_(scale)
    return norm
