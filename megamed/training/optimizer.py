"""AdamW on flat fp32 shards (the distributed optimizer), fp16 dynamic loss scaling, the
cosine learning-rate schedule with linear warm-up, and clipping by the global gradient norm.

The optimizer updates `OptimizerShard`s (parallel/data.py): this rank's part of each
gradient bucket (ZeRO 1/2), of each block (ZeRO-3), or whole buckets (ZeRO-0). Per shard
it keeps fp32 master weights (the parameters themselves when they are fp32) and the two
Adam moments, so its state per rank is 1/DP of the unsharded state from ZeRO-1 on. The
update is torch.optim.AdamW's formula, element by element, with decoupled weight decay
applied only to the segments of parameters with ndim >= 2 (Loshchilov & Hutter 2019).

A step whose loss or global gradient norm is not finite updates nothing (parameters,
moments and Adam's step count stay as they were); with fp16 the loss scaler skips steps
whose gradients overflowed and lowers the scale. `UpdateResult.nonfinite` marks the skips
that no scale change can cure (no scaler, or the scale already at its minimum), which
training/fault.py counts towards stopping the run.

The global norm counts every gradient element exactly once across the mesh: TP-sharded
parameters contribute their shard on every TP rank, TP-replicated ones (norm weights,
row-parallel biases) only on TP rank 0, and the pipeline copy of a tied embedding only on
the first stage. The squared sums are added over DP when the shards are disjoint (ZeRO >=
1) and over TP x PP.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from megamed.config import TrainConfig
from megamed.parallel.data import OptimizerShard, reduce_gradient_statistic
from megamed.parallel.state import ParallelState


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


def adamw_(master: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor,
           exp_avg_sq: torch.Tensor, step: int, lr: float, beta1: float, beta2: float,
           eps: float, weight_decay: float, decay: list[tuple[int, int]]) -> None:
    """One AdamW update of flat fp32 tensors [n], in place: torch.optim.AdamW's
    single-tensor path (torch 2.13, `_single_tensor_adam`), op for op, with the decay
    applied to the ranges `decay` only."""
    for lo, hi in decay:
        master[lo:hi].mul_(1 - lr * weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step_size = lr / (1 - beta1 ** step)
    bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    master.addcdiv_(exp_avg, denom, value=-step_size)


class DynamicLossScaler:
    """fp16 dynamic loss scaling (Micikevicius et al. 2018, section 3.2): the loss gradient
    is multiplied by `scale` so small gradients survive fp16; a step whose gradients hold an
    inf or nan is skipped and the scale halved; after `window` good steps it doubles."""

    def __init__(self, scale: float, window: int, min_scale: float = 1.0):
        self.scale, self.window, self.min_scale = scale, window, min_scale
        self.good_steps = 0

    def update(self, found_inf: bool) -> None:
        if found_inf:
            self.scale = max(self.min_scale, self.scale / 2)
            self.good_steps = 0
            return
        self.good_steps += 1
        if self.good_steps % self.window == 0:
            self.scale *= 2

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "good_steps": self.good_steps}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.scale, self.good_steps = saved["scale"], saved["good_steps"]


@dataclass
class ShardState:
    master: torch.Tensor       # [n] fp32
    exp_avg: torch.Tensor      # [n] fp32
    exp_avg_sq: torch.Tensor   # [n] fp32
    decay: list[tuple[int, int]]
    counted: list[tuple[int, int]]


@dataclass
class UpdateResult:
    grad_norm: float           # before clipping; nan when fp16 gradients overflowed
    skipped: bool              # no update was made
    nonfinite: bool = False    # skipped for a non-finite loss or gradient that a lower
                               # loss scale cannot cure (see the module docstring)


class DistributedAdamW:
    """AdamW over this rank's optimizer shards; `sharded`: the shards of DP ranks are
    disjoint (ZeRO >= 1). `scaler` unscales fp16 gradients and skips steps on inf/nan."""

    def __init__(self, shards: list[OptimizerShard], cfg: TrainConfig, state: ParallelState,
                 sharded: bool, scaler: Optional[DynamicLossScaler] = None):
        self.shards, self.cfg, self.state = shards, cfg, state
        self.sharded, self.scaler = sharded, scaler
        self.steps = 0
        self.states = [self._state(s) for s in shards]

    def _state(self, shard: OptimizerShard) -> ShardState:
        master = shard.param if shard.param.dtype == torch.float32 else shard.param.float()
        return ShardState(master, torch.zeros_like(master), torch.zeros_like(master),
                          [(lo, hi) for p, lo, hi in shard.segments if p.ndim >= 2],
                          [(lo, hi) for p, lo, hi in shard.segments
                           if counts_once(p, self.state)])

    def state_numel(self) -> int:
        """Elements of optimizer state on this rank: master weights kept apart from the
        parameters, and both moments."""
        return sum(s.exp_avg.numel() + s.exp_avg_sq.numel() +
                   (0 if s.master is shard.param else s.master.numel())
                   for s, shard in zip(self.states, self.shards))

    def state_bytes(self) -> int:
        return 4 * self.state_numel()

    def grad_norm(self) -> float:
        total = torch.zeros((), dtype=torch.float64, device=self._device())
        for shard, st in zip(self.shards, self.states):
            for lo, hi in st.counted:
                total += shard.grad[lo:hi].double().pow(2).sum()
        return math.sqrt(reduce_gradient_statistic(total, self.state, self.sharded).item())

    def grad_norms_by_part(self, part_of, parts: Sequence[str]) -> dict[str, float]:
        """The global gradient norm of each part (`part_of(param)` names it), before
        clipping; one reduction for all parts. Parts with no trainable parameter on any
        rank report 0."""
        total = torch.zeros(len(parts), dtype=torch.float64, device=self._device())
        index = {name: i for i, name in enumerate(parts)}
        for shard in self.shards:
            for p, lo, hi in shard.segments:
                if counts_once(p, self.state):
                    total[index[part_of(p)]] += shard.grad[lo:hi].double().pow(2).sum()
        total = reduce_gradient_statistic(total, self.state, self.sharded)
        scale = self.scaler.scale if self.scaler is not None else 1.0
        return {name: math.sqrt(v) / scale for name, v in zip(parts, total.tolist())}

    def _device(self) -> torch.device:
        return self.shards[0].grad.device if self.shards else torch.device("cpu")

    def _unscale_and_check(self) -> bool:
        """fp16: divides the gradients by the loss scale; True when any rank found inf/nan."""
        bad = torch.zeros((), dtype=torch.float64, device=self._device())
        for shard in self.shards:
            shard.grad.mul_(1.0 / self.scaler.scale)
            bad += (~torch.isfinite(shard.grad)).sum()
        found = reduce_gradient_statistic(bad, self.state, self.sharded).item() > 0
        self.scaler.update(found)
        return found

    def nonfinite_parameters(self) -> list[torch.nn.Parameter]:
        """This rank's parameters with an inf or nan in their part of the gradient, in the
        order of the shards."""
        return [p for shard in self.shards for p, lo, hi in shard.segments
                if not torch.isfinite(shard.grad[lo:hi]).all()]

    def step(self, lr: float, loss_finite: bool = True) -> UpdateResult:
        """Unscale (fp16), clip to `clip_grad` by the global norm, update every shard and
        write the new values into the parameters' shards. Skips the update when the
        gradients overflowed (fp16), or when the loss (`loss_finite`, the same on every
        rank) or the global norm is not finite: every rank makes the same decision."""
        if self.scaler is not None:
            at_minimum = self.scaler.scale <= self.scaler.min_scale
            if self._unscale_and_check():
                return UpdateResult(float("nan"), skipped=True, nonfinite=at_minimum)
        norm = self.grad_norm()
        if not (loss_finite and math.isfinite(norm)):
            return UpdateResult(norm, skipped=True, nonfinite=True)
        c = self.cfg
        if c.clip_grad > 0 and norm > c.clip_grad:
            for shard in self.shards:
                shard.grad.mul_(c.clip_grad / (norm + 1e-6))
        self.steps += 1
        for shard, st in zip(self.shards, self.states):
            adamw_(st.master, shard.grad, st.exp_avg, st.exp_avg_sq, self.steps, lr,
                   c.adam_beta1, c.adam_beta2, c.adam_eps, c.weight_decay, st.decay)
            if st.master is not shard.param:
                shard.param.copy_(st.master)
        return UpdateResult(norm, skipped=False)

    def state_dict(self) -> dict[str, Any]:
        """Flat per-shard tensors; `numels` identifies the shard layout (DP size, ZeRO
        stage, bucket size) they belong to."""
        return {"steps": self.steps, "numels": [s.master.numel() for s in self.states],
                "loss_scaler": self.scaler.state_dict() if self.scaler else None,
                "shards": [{"master": s.master, "exp_avg": s.exp_avg,
                            "exp_avg_sq": s.exp_avg_sq} for s in self.states]}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        numels = [s.master.numel() for s in self.states]
        if saved["numels"] != numels:
            raise ValueError(f"optimizer shards of {saved['numels'][:4]}... elements do not "
                             f"match this run's {numels[:4]}...: different DP size, ZeRO "
                             f"stage or bucket size")
        self.steps = saved["steps"]
        if self.scaler is not None and saved["loss_scaler"] is not None:
            self.scaler.load_state_dict(saved["loss_scaler"])
        for st, shard, tensors in zip(self.states, self.shards, saved["shards"]):
            for name in ("master", "exp_avg", "exp_avg_sq"):
                getattr(st, name).copy_(tensors[name])
            if st.master is not shard.param:
                shard.param.copy_(st.master)


def build_optimizer(grads, cfg: TrainConfig, state: ParallelState,
                    zero_stage: int) -> DistributedAdamW:
    """The optimizer over `grads.shards()` (DataParallelGrads or ShardedParameters)."""
    scaler = (DynamicLossScaler(cfg.loss_scale, cfg.loss_scale_window)
              if cfg.precision == "fp16" else None)
    return DistributedAdamW(grads.shards(), cfg, state, sharded=zero_stage >= 1, scaler=scaler)
