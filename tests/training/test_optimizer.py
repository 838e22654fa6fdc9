"""The flat AdamW against torch.optim.AdamW, and fp16 loss scaling (its scaler and its
step logic: skip on inf/nan, unscale otherwise)."""
import math

import pytest
import torch

from distributed import run_distributed
from megamed.config import load_config
from megamed.parallel.data import OptimizerShard
from megamed.training.optimizer import DistributedAdamW, DynamicLossScaler, adamw_


def test_flat_adamw_is_torch_adamw():
    """adamw_ on one flat shard holding several parameters (decay on the matrices only)
    gives torch.optim.AdamW's values, step by step."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(6, 5), (5,), (3, 4), (7,)]
    params = [torch.randn(s, generator=gen).requires_grad_() for s in shapes]
    lr, betas, eps, wd = 1e-2, (0.9, 0.95), 1e-8, 0.1
    torch_opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim >= 2], "weight_decay": wd},
         {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
        lr=lr, betas=betas, eps=eps, foreach=False)
    master = torch.cat([p.detach().reshape(-1) for p in params])
    exp_avg, exp_avg_sq = torch.zeros_like(master), torch.zeros_like(master)
    bounds = [0] + [sum(p.numel() for p in params[:i + 1]) for i in range(len(params))]
    decay = [(bounds[i], bounds[i + 1]) for i, p in enumerate(params) if p.ndim >= 2]
    for step in range(1, 4):
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g
        torch_opt.step()
        adamw_(master, torch.cat([g.reshape(-1) for g in grads]), exp_avg, exp_avg_sq, step,
               lr, *betas, eps, wd, decay)
        torch.testing.assert_close(master, torch.cat([p.detach().reshape(-1) for p in params]),
                                   rtol=0, atol=1e-7)


def test_loss_scaler_backs_off_and_grows():
    scaler = DynamicLossScaler(1024.0, window=3)
    for found_inf, expected in [(True, 512), (False, 512), (False, 512), (False, 1024),
                                (True, 512), (False, 512)]:
        scaler.update(found_inf)
        assert scaler.scale == expected


def scaled_step_worker():
    """fp16's step logic on fp32 tensors (fp16 itself needs a GPU): a step with an inf in
    the scaled gradients is skipped and lowers the scale; a finite one equals AdamW on the
    unscaled gradients."""
    from megamed.parallel.state import ParallelState
    state = ParallelState.create(1, 1)
    cfg = load_config("tiny").train
    weight = torch.nn.Parameter(torch.ones(4, 8))
    weight.tp_replicated = False
    param = weight.data.view(-1)
    grad = torch.zeros(32)
    shard = OptimizerShard(param, grad, [(weight, 0, 32)])
    opt = DistributedAdamW([shard], cfg, state, sharded=False,
                           scaler=DynamicLossScaler(256.0, window=100))
    grad.fill_(float("inf"))
    before = param.clone()
    result = opt.step(lr=0.1)
    assert result.skipped and math.isnan(result.grad_norm)
    assert not result.nonfinite  # a lower scale may cure it: not counted towards a stop
    assert torch.equal(param, before) and opt.scaler.scale == 128.0 and opt.steps == 0
    unscaled = torch.linspace(-1e-3, 1e-3, 32)
    grad.copy_(unscaled * 128.0)
    result = opt.step(lr=0.1)
    reference = before.clone()
    adamw_(reference, unscaled, torch.zeros(32), torch.zeros(32), 1, 0.1, cfg.adam_beta1,
           cfg.adam_beta2, cfg.adam_eps, cfg.weight_decay, [(0, 32)])
    assert not result.skipped
    assert result.grad_norm == pytest.approx(unscaled.double().norm().item(), rel=1e-6)
    torch.testing.assert_close(param, reference, rtol=0, atol=1e-7)
    # Loss-scale underflow: an overflow at the minimum scale is a non-finite step.
    opt.scaler.scale, after = opt.scaler.min_scale, param.clone()
    grad.fill_(float("nan"))
    result = opt.step(lr=0.1)
    assert result.skipped and result.nonfinite and opt.nonfinite_parameters() == [weight]
    assert torch.equal(param, after) and opt.steps == 1


def nonfinite_step_worker():
    """Without a scaler: a non-finite loss or gradient norm skips the update (parameters,
    moments and Adam's step count unchanged); a finite step then updates as usual."""
    from megamed.parallel.state import ParallelState
    state = ParallelState.create(1, 1)
    weight = torch.nn.Parameter(torch.ones(4, 8))
    weight.tp_replicated = False
    grad = torch.linspace(-1.0, 1.0, 32)
    opt = DistributedAdamW([OptimizerShard(weight.data.view(-1), grad, [(weight, 0, 32)])],
                           load_config("tiny").train, state, sharded=False)
    before = weight.detach().clone()
    result = opt.step(lr=0.1, loss_finite=False)
    assert result.skipped and result.nonfinite and math.isfinite(result.grad_norm)
    assert opt.nonfinite_parameters() == []  # the loss, not a gradient
    grad[3] = float("inf")
    result = opt.step(lr=0.1)
    assert result.skipped and result.nonfinite and math.isinf(result.grad_norm)
    assert opt.nonfinite_parameters() == [weight]
    assert torch.equal(weight, before) and opt.steps == 0
    assert not any(s.exp_avg.any() or s.exp_avg_sq.any() for s in opt.states)
    grad[3] = 0.0
    assert not opt.step(lr=0.1).skipped and opt.steps == 1 and not torch.equal(weight, before)


def test_nonfinite_steps_are_skipped():
    run_distributed(nonfinite_step_worker, 1)


def test_fp16_step_logic():
    run_distributed(scaled_step_worker, 1)
