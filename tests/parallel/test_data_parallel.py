"""Gradient buckets, the flat AdamW against torch.optim.AdamW, fp16 loss scaling, the new
flags and profile defaults, bad memory options, and the per-rank optimizer-state sizes
computed from the meta-built model."""
import math

import pytest
import torch

from distributed import run_distributed
from megamed.config import ConfigError, bucket_elements, count_parameters, load_config, resolve
from megamed.parallel.data import (ALIGN, KINDS, OVERLAPPED, TIED, TP_REPLICATED,
                                   OptimizerShard, plan_buffer)
from megamed.training.arguments import parse_config
from megamed.training.memory import optimizer_state_per_rank
from megamed.training.optimizer import DistributedAdamW, DynamicLossScaler, adamw_


def test_buckets_hold_whole_parameters_in_order_and_split_into_dp_shards():
    numels = [4096, 64, 2048, 2048, 4096, 64, 8192, 8192, 8192, 16384]
    kinds = [OVERLAPPED, TP_REPLICATED, OVERLAPPED, OVERLAPPED, OVERLAPPED, TP_REPLICATED,
             OVERLAPPED, OVERLAPPED, TIED, OVERLAPPED]
    bucket, dp = 5000, 4
    offsets, buckets = plan_buffer(numels, kinds, bucket, dp)
    # Reference, written out: overlapped parameters in their order, then the replicated,
    # then the tied ones; a bucket closes as soon as it holds >= 5000 elements.
    expected = [[0, 2], [3, 4], [6], [7], [9], [1, 5], [8]]
    assert [list(b.params) for b in buckets] == expected
    position = 0
    for b in buckets:
        assert b.start == position and (b.end - b.start) % (dp * ALIGN) == 0
        assert {kinds[i] for i in b.params} == {b.kind}
        used = 0
        for i in b.params:  # parameters are consecutive from the bucket's start
            assert offsets[i] == b.start + used
            used += numels[i]
        assert used <= b.end - b.start < used + dp * ALIGN  # padding only
        shards = [b.shard(r, dp) for r in range(dp)]
        assert shards[0][0] == b.start and shards[-1][1] == b.end
        assert all(s[1] == t[0] for s, t in zip(shards, shards[1:]))
        position = b.end
    assert [b.kind for b in buckets] == sorted((b.kind for b in buckets), key=KINDS.index)


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


def test_fp16_step_logic():
    run_distributed(scaled_step_worker, 1)


def test_memory_flags_override_profile():
    cfg, _, _ = parse_config(["--profile", "tiny", "--zero-stage", "2", "--sequence-parallel",
                              "--recompute", "full", "--recompute-every", "2", "--precision",
                              "bf16", "--bucket-mb", "0.5", "--no-overlap-grad-reduce"])
    p, t = cfg.parallel, cfg.train
    assert (p.zero_stage, p.sequence_parallel, p.bucket_mb, p.overlap_grad_reduce) == \
        (2, True, 0.5, False)
    assert (t.recompute, t.recompute_every, t.precision) == ("full", 2, "bf16")


@pytest.mark.parametrize("profile", ["medllm-32b", "m-32b"])
def test_32b_profiles_default_to_the_m32b_layout(profile):
    cfg = resolve(load_config(profile), world_size=32, device_type="cuda")
    p, t = cfg.parallel, cfg.train
    assert (p.tp, p.pp, p.dp, p.zero_stage, p.sequence_parallel, t.recompute) == \
        (4, 2, 4, 1, True, "selective")


@pytest.mark.parametrize("profile", ["tiny", "demo"])
def test_small_profiles_keep_memory_features_off(profile):
    cfg = resolve(load_config(profile), world_size=1, device_type="cpu")
    assert (cfg.parallel.zero_stage, cfg.parallel.sequence_parallel, cfg.train.recompute) == \
        (0, False, "none")


@pytest.mark.parametrize("parallel, train, world, message", [
    ({"bucket_mb": 0}, {}, 1, r"parallel.bucket_mb=0 \(--bucket-mb\) must be > 0"),
    ({"bucket_mb": 2}, {}, 1, r"parallel.bucket_mb=2 \(--bucket-mb\) holds 524,288 fp32 "
                              r"gradients, more than the whole model \(328,768 parameters"),
    ({"zero_stage": 3, "pp": 2}, {}, 2, r"parallel.zero_stage=3 \(--zero-stage 3\) with PP 2"),
    ({"zero_stage": 4}, {}, 1, r"parallel.zero_stage=4 is not one of"),
    ({}, {"precision": "fp16"}, 1, r"train.precision='fp16' \(--precision fp16\) needs a CUDA"),
    ({"tp": 2, "sequence_parallel": True}, {}, 2, None),
    ({}, {"recompute": "most"}, 1, r"train.recompute='most' is not one of"),
    ({}, {"recompute": "full", "recompute_every": 0}, 1, r"train.recompute_every must be >= 1"),
])
def test_bad_memory_options_are_rejected(parallel, train, world, message):
    cfg = load_config("tiny", {"parallel": parallel, "train": train})
    if message is None:  # seq 64 divides by TP 2: accepted; 63 does not
        resolve(cfg, world, device_type="cpu")
        cfg = load_config("tiny", {"parallel": parallel, "train": train,
                                   "model": {"seq_length": 63}})
        message = r"sequence_parallel needs model.seq_length 63 divisible by TP 2"
    with pytest.raises(ConfigError, match=message):
        resolve(cfg, world, device_type="cpu")


def test_optimizer_state_of_medllm_32b_at_m32b_layout():
    """Per-rank sizes from the meta-built model against the parameter formula: every stage
    holds its parameters once (bf16) with fp32 main gradients, and 1/DP of the fp32 master
    weights and moments, padding aside."""
    cfg = resolve(load_config("m-32b"), world_size=32, device_type="cuda")
    rows = optimizer_state_per_rank(cfg)
    m, tp, dp = cfg.model, cfg.parallel.tp, cfg.parallel.dp
    total = count_parameters(m, tp)
    norms = (2 * m.num_layers + 1) * m.hidden_size  # replicated on every TP rank
    padding = sum(r["buckets"] for r in rows) * dp * ALIGN
    excess = sum(r["params"] for r in rows) * tp - total - (tp - 1) * norms
    assert 0 <= excess <= tp * padding
    for r in rows:
        assert r["main_grads"] == r["params"]
        assert r["master"] == r["exp_avg"] == r["exp_avg_sq"]
        assert 0 <= r["exp_avg"] * dp - r["params"] < r["buckets"] * dp * ALIGN
    assert bucket_elements(cfg.parallel.bucket_mb) == 40 * 2**20 // 4
