"""layer_norm and rms_norm against F.layer_norm and F.rms_norm: output, dx, dweight, dbias.
Tolerances: kernel_tolerance.py. Widths cover a ragged block (37, 1000), narrow rows packed
several per program (8, 24; 100 rows of 24 take several 16-row steps per program) and a
wide one (4099 -> a 8192 block)."""
import pytest
import torch
import torch.nn.functional as F
from kernel_tolerance import DEVICES, LOW_PRECISION, ON_CUDA, assert_close, nan_padded

from megamed.kernels import layer_norm, rms_norm

SHAPES = [(3, 5, 37), (7, 128), (2, 1000), (4, 1, 8), (33, 24), (2, 50, 24), (2, 4099)]
AFFINE = [(True, True), (True, False), (False, True), (False, False)]


def _inputs(shape, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = shape[-1]
    make = lambda *s: torch.randn(*s, generator=gen).to(device, dtype)  # noqa: E731
    # An offset mean makes the centring matter; weight/bias away from 1/0 make them matter.
    return make(*shape) + 0.5, make(n) * 0.5 + 1.0, make(n) * 0.1, make(*shape)


def _run(fn, x, weight, bias, dy, dtype=None):
    """fn's output and the gradients of <out, dy> for x and the tensors given."""
    leaves = [None if t is None else t.detach().to(dtype or t.dtype).requires_grad_()
              for t in (x, weight, bias)]
    out = fn(*leaves)
    out.backward(dy.to(out.dtype))
    return [out.detach()] + [t.grad for t in leaves if t is not None]


def _check(fn, ref_fn, x, weight, bias, dy):
    ours = _run(fn, x, weight, bias, dy)
    ref = _run(ref_fn, x, weight, bias, dy, torch.float64)
    lowp = _run(ref_fn, x, weight, bias, dy)
    names = ["y", "dx"] + [n for n, t in (("dweight", weight), ("dbias", bias)) if t is not None]
    for name, a, r, t in zip(names, ours, ref, lowp):
        assert_close(name, a, r, t)


def _layer_norm_pair(eps=1e-5):
    return (lambda x, w, b: layer_norm(x, w, b, eps),
            lambda x, w, b: F.layer_norm(x, x.shape[-1:], w, b, eps))


def _rms_norm_pair(eps):
    return (lambda x, w, _: rms_norm(x, w, eps),
            lambda x, w, _: F.rms_norm(x, x.shape[-1:], w, eps))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("has_weight,has_bias", AFFINE)
def test_layer_norm_fp32(shape, has_weight, has_bias, device):
    x, w, b, dy = _inputs(shape, torch.float32, device)
    _check(*_layer_norm_pair(), x, w if has_weight else None, b if has_bias else None, dy)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("has_weight", [True, False])
@pytest.mark.parametrize("eps", [1e-6, None])
def test_rms_norm_fp32(shape, has_weight, eps, device):
    x, w, _, dy = _inputs(shape, torch.float32, device)
    _check(*_rms_norm_pair(eps), x, w if has_weight else None, None, dy)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("shape", [(3, 5, 37), (33, 24), (2, 1000)], ids=str)
def test_low_precision(shape, dtype, device):
    x, w, b, dy = _inputs(shape, dtype, device)
    _check(*_layer_norm_pair(), x, w, b, dy)
    _check(*_rms_norm_pair(1e-6), x, w, None, dy)


@pytest.mark.skipif(not ON_CUDA, reason="model-sized rows need a GPU (the interpreter is slow)")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("shape", [(4, 1024, 5120), (2048, 8192), (3, 333, 16384)], ids=str)
def test_model_sized_rows_on_gpu(shape, dtype):
    x, w, b, dy = _inputs(shape, dtype, "cuda")
    _check(*_layer_norm_pair(), x, w, b, dy)
    _check(*_rms_norm_pair(1e-6), x, w, None, dy)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(5, 37), (33, 24)], ids=str)
def test_loads_stay_inside_the_row(shape, device):
    """x and dy end where NaN starts (row stride > width): an unmasked column read past
    the row's end turns the row into NaN."""
    x, w, b, dy = _inputs(shape, torch.float32, device)
    x, dy = nan_padded(x, dim=-1), nan_padded(dy, dim=-1)
    assert x.stride(0) > x.shape[-1]
    _check(*_layer_norm_pair(), x, w, b, dy)
    _check(*_rms_norm_pair(1e-6), x, w, None, dy)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_input(device):
    """Column-major x and dy (unit stride along rows, not along the normalised dim)."""
    x, w, b, dy = _inputs((6, 37), torch.float32, device)
    x, dy = (t.t().contiguous().t() for t in (x, dy))
    assert x.stride(-1) != 1
    _check(*_layer_norm_pair(), x, w, b, dy)


@pytest.mark.parametrize("device", DEVICES)
def test_weight_gradients_are_bitwise_deterministic(device):
    x, w, b, dy = _inputs((67, 40), torch.float32, device)
    first = _run(_layer_norm_pair()[0], x, w, b, dy)
    second = _run(_layer_norm_pair()[0], x, w, b, dy)
    for a, c in zip(first, second):
        assert torch.equal(a, c)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_input(device):
    x = torch.zeros(0, 3, 8, device=device, requires_grad=True)
    w = torch.ones(8, device=device, requires_grad=True)
    y = layer_norm(x, w, None)
    y.sum().backward()
    assert y.shape == x.shape and x.grad.shape == x.shape and torch.equal(w.grad, 0 * w)


@pytest.mark.parametrize("call,match", [
    (lambda: layer_norm(torch.zeros(2, 8), torch.ones(7)), r"weight must have shape \(8,\)"),
    (lambda: layer_norm(torch.zeros(2, 8), None, torch.ones(9)), r"bias must have shape"),
    (lambda: rms_norm(torch.zeros(2, 70000), None), "1..65536"),
    (lambda: rms_norm(torch.zeros(2, 8, dtype=torch.float64), None), "dtype"),
])
def test_rejects_unsupported_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
