"""flash_attention against F.scaled_dot_product_attention (K/V heads repeated for GQA),
forward and dq, dk, dv. Tolerances: kernel_tolerance.py. CPU shapes are tiny on purpose:
the interpreter's blocks are 16-32 wide, so these lengths still span several blocks, a
diagonal and a ragged edge."""
import pytest
import torch
import torch.nn.functional as F
from kernel_tolerance import (DEVICES, LOW_PRECISION, ON_CUDA, assert_close,
                              assert_fp32_close, nan_padded)
from triton.runtime.errors import OutOfResources

from megamed.kernels import attention, flash_attention

CASES = [  # batch, heads, kv_heads, seq_q, seq_k, head_dim, causal
    pytest.param(1, 2, 2, 37, 37, 16, True, id="odd-mha-causal"),
    pytest.param(1, 2, 2, 37, 37, 16, False, id="odd-mha"),
    pytest.param(1, 4, 2, 45, 45, 32, True, id="gqa2-causal"),
    pytest.param(1, 4, 2, 45, 45, 32, False, id="gqa2"),
    pytest.param(2, 4, 1, 33, 33, 16, True, id="gqa4-batch2-causal"),
    pytest.param(1, 4, 1, 50, 50, 64, False, id="gqa4-d64"),
    pytest.param(1, 2, 1, 64, 64, 64, True, id="aligned-d64-causal"),
    pytest.param(1, 2, 2, 20, 20, 128, True, id="d128-causal"),
    pytest.param(1, 1, 1, 1, 1, 16, True, id="single-token"),
    pytest.param(1, 2, 1, 24, 40, 16, True, id="causal-shorter-q"),
    pytest.param(1, 2, 2, 40, 24, 16, True, id="causal-longer-q"),
    pytest.param(1, 2, 1, 19, 50, 32, False, id="cross-shorter-q"),
    pytest.param(1, 2, 1, 70, 20, 16, True, id="causal-q-past-all-keys"),
    pytest.param(3, 6, 3, 130, 130, 32, True, id="s130-gqa2-causal"),
    pytest.param(1, 8, 2, 99, 99, 16, False, id="s99-gqa4"),
]
GPU_CASES = [
    pytest.param(2, 8, 2, 1000, 1000, 128, True, id="s1000-d128-gqa4-causal"),
    pytest.param(1, 8, 8, 2048, 2048, 64, False, id="s2048-d64"),
    pytest.param(1, 4, 2, 777, 1500, 128, True, id="s777x1500-causal"),
]


def _inputs(b, h, h_kv, s_q, s_k, d, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=gen).to(device, dtype)  # noqa: E731
    return (make(b, h, s_q, d), make(b, h_kv, s_k, d), make(b, h_kv, s_k, d),
            make(b, h, s_q, d))


def _sdpa(q, k, v, causal, scale=None):
    group = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1),
                                          v.repeat_interleave(group, 1), is_causal=causal,
                                          scale=scale)


def _run(fn, q, k, v, do, causal, scale=None, dtype=None):
    """fn's output and (dq, dk, dv) for the loss <out, do>, with inputs cast to dtype."""
    leaves = [t.detach().to(dtype or t.dtype).requires_grad_() for t in (q, k, v)]
    out = fn(*leaves, causal, scale)
    out.backward(do.to(out.dtype))
    return [out.detach()] + [t.grad for t in leaves]


def _check_against_sdpa(q, k, v, do, causal, scale=None):
    ours = _run(lambda *a: flash_attention(*a[:3], causal=a[3], scale=a[4]), q, k, v, do,
                causal, scale)
    ref = _run(_sdpa, q, k, v, do, causal, scale, torch.float64)
    lowp = _run(_sdpa, q, k, v, do, causal, scale)
    for name, a, r, t in zip(("out", "dq", "dk", "dv"), ours, ref, lowp):
        assert_close(name, a, r, t)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("b,h,h_kv,s_q,s_k,d,causal", CASES)
def test_matches_sdpa_fp32(b, h, h_kv, s_q, s_k, d, causal, device):
    q, k, v, do = _inputs(b, h, h_kv, s_q, s_k, d, torch.float32, device)
    _check_against_sdpa(q, k, v, do, causal)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("b,h,h_kv,s_q,s_k,d,causal", CASES[2:4] + CASES[7:8] + CASES[9:10])
def test_matches_sdpa_low_precision(b, h, h_kv, s_q, s_k, d, causal, dtype, device):
    q, k, v, do = _inputs(b, h, h_kv, s_q, s_k, d, dtype, device)
    _check_against_sdpa(q, k, v, do, causal)


@pytest.mark.skipif(not ON_CUDA, reason="long sequences need a GPU (the interpreter is slow)")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("b,h,h_kv,s_q,s_k,d,causal", GPU_CASES)
def test_long_sequences_on_gpu(b, h, h_kv, s_q, s_k, d, causal, dtype):
    q, k, v, do = _inputs(b, h, h_kv, s_q, s_k, d, dtype, "cuda")
    _check_against_sdpa(q, k, v, do, causal)


@pytest.mark.parametrize("device", DEVICES)
def test_explicit_scale(device):
    q, k, v, do = _inputs(1, 2, 1, 29, 29, 32, torch.float32, device)
    _check_against_sdpa(q, k, v, do, True, scale=0.37)


@pytest.mark.parametrize("device", DEVICES)
def test_strided_inputs_as_the_model_passes_them(device):
    """[b, s, heads, d] projections viewed as [b, heads, s, d]: non-contiguous seq stride."""
    b, s, h, h_kv, d = 2, 35, 4, 2, 32
    gen = torch.Generator().manual_seed(1)
    qkv = torch.randn(b, s, h + 2 * h_kv, d, generator=gen).to(device)
    q, k, v = qkv.split([h, h_kv, h_kv], dim=2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    do = torch.randn(b, s, h, d, generator=gen).to(device).transpose(1, 2)
    assert not q.is_contiguous() and not do.is_contiguous()
    _check_against_sdpa(q, k, v, do, True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [True, False])
def test_loads_stay_inside_the_sequence(causal, device):
    """Every input (and the output gradient) ends where NaN starts: a load past the
    sequence end without a mask turns the result into NaN."""
    q, k, v, do = _inputs(1, 4, 2, 37, 45, 32, torch.float32, device)
    q, k, v, do = (nan_padded(t, dim=2) for t in (q, k, v, do))
    outs = _run(lambda *a: flash_attention(*a[:3], causal=a[3]), q, k, v, do, causal)
    for name, t in zip(("out", "dq", "dk", "dv"), outs):
        assert not t.isnan().any(), f"{name} read past the sequence end"
    ref = _run(_sdpa, q, k, v, do, causal, None, torch.float64)
    for name, a, r in zip(("out", "dq", "dk", "dv"), outs, ref):
        assert_fp32_close(name, a, r)


@pytest.mark.parametrize("device", DEVICES)
def test_saves_only_inputs_output_and_logsumexp(device):
    """No [s_q, s_k] tensor is kept for backward: saved memory is linear in the sequence."""
    q, k, v, _ = _inputs(1, 2, 1, 48, 48, 16, torch.float32, device)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        flash_attention(q.requires_grad_(), k.requires_grad_(), v.requires_grad_())
    linear = 2 * q.numel() + k.numel() + v.numel() + q.numel() // q.shape[-1]
    assert sum(t.numel() for t in saved) == linear, [tuple(t.shape) for t in saved]


@pytest.mark.parametrize("device", DEVICES)
def test_backward_is_bitwise_deterministic(device):
    q, k, v, do = _inputs(1, 4, 1, 45, 45, 32, torch.float32, device)
    first = _run(lambda *a: flash_attention(*a[:3], causal=a[3]), q, k, v, do, True)
    second = _run(lambda *a: flash_attention(*a[:3], causal=a[3]), q, k, v, do, True)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("shapes,dtype,match", [
    (((1, 2, 8, 48), (1, 2, 8, 48)), torch.float32, "power of two"),
    (((1, 2, 8, 256), (1, 2, 8, 256)), torch.float32, "power of two"),
    (((1, 3, 8, 16), (1, 2, 8, 16)), torch.float32, "multiple of KV heads"),
    (((1, 2, 8, 16), (2, 2, 8, 16)), torch.float32, "matching q's batch"),
    (((2, 8, 16), (2, 8, 16)), torch.float32, r"\[batch, heads, seq, head_dim\]"),
    (((1, 2, 8, 16), (1, 2, 8, 16)), torch.float64, "dtype"),
    (((1, 2, 0, 16), (1, 2, 8, 16)), torch.float32, "at least 1"),
])
def test_rejects_unsupported_inputs(shapes, dtype, match):
    q, kv = (torch.zeros(s, dtype=dtype) for s in shapes)
    with pytest.raises(ValueError, match=match):
        flash_attention(q, kv, kv)


TUNING = [(name, i) for name, configs in (("fwd", attention.FWD_CONFIGS),
                                          ("dkdv", attention.DKDV_CONFIGS),
                                          ("dq", attention.DQ_CONFIGS))
          for i in range(len(configs))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kernel,index", TUNING)
def test_every_tuning_candidate_is_correct(kernel, index, device, monkeypatch):
    """The autotuner may pick any candidate on any shape, so each must be right. In the
    interpreter this checks the block logic at the GPU's block sizes (fp32, small d)."""
    tuner = {"fwd": attention._attn_fwd, "dkdv": attention._attn_bwd_dkdv,
             "dq": attention._attn_bwd_dq}[kernel]
    configs = {"fwd": attention.FWD_CONFIGS, "dkdv": attention.DKDV_CONFIGS,
               "dq": attention.DQ_CONFIGS}[kernel]
    monkeypatch.setattr(tuner, "configs", [configs[index]])
    if device == "cuda":
        q, k, v, do = _inputs(1, 4, 2, 333, 333, 128, torch.bfloat16, device)
    else:
        q, k, v, do = _inputs(1, 2, 1, 200, 200, 16, torch.float32, device)
    try:
        _check_against_sdpa(q, k, v, do, True)
    except OutOfResources as err:
        pytest.skip(f"{configs[index]} does not fit this GPU ({err}); the tuner skips it too")
