"""Devices, dtypes and tolerances shared by the kernel tests.

References are computed in float64 from the same inputs.
- fp32 kernels: max |ours - ref| <= 1e-4 * max |ref| + 1e-6 (1e-4 relative to the
  tensor's scale; the 1e-6 floor is for tensors that are exactly zero in exact arithmetic,
  such as dq of a query that sees a single key, where fp32 rounding leaves ~1e-7).
- fp16/bf16 kernels (FlashAttention's rule, tests/test_flash_attn.py): our error against the
  float64 reference is at most twice the error of torch's own low-precision op against it,
  plus ATOL = twice the error of merely rounding the reference to that dtype (no result
  stored in that dtype can do better than its rounding).
"""
import torch

ON_CUDA = torch.cuda.is_available()
DEVICES = ["cuda"] if ON_CUDA else ["cpu"]
FP32_RTOL, FP32_ATOL = 1e-4, 1e-6
# The interpreter rounds fp32 -> bf16 by truncation and gets bf16 dots wrong, so bf16 is
# checked on CUDA only; fp16 goes through numpy's IEEE half and is checked on both.
LOW_PRECISION = [torch.float16, torch.bfloat16] if ON_CUDA else [torch.float16]


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def assert_fp32_close(name: str, ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    err, scale = max_err(ours, ref), ref.abs().max().item()
    assert err <= FP32_RTOL * scale + FP32_ATOL, (
        f"{name}: max error {err:.3e} > {FP32_RTOL} x max|ref| ({scale:.3e}) + {FP32_ATOL}")


def assert_low_precision_close(name: str, ours: torch.Tensor, ref: torch.Tensor,
                               torch_lowp: torch.Tensor) -> None:
    assert ours.dtype == torch_lowp.dtype, f"{name}: dtype {ours.dtype} != {torch_lowp.dtype}"
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    err, torch_err = max_err(ours, ref), max_err(torch_lowp, ref)
    atol = 2 * max_err(ref.to(ours.dtype), ref)
    assert err <= 2 * torch_err + atol, (
        f"{name}: max error {err:.3e} > 2 x torch {ours.dtype} error {torch_err:.3e} "
        f"+ rounding {atol:.3e}")


def assert_close(name: str, ours: torch.Tensor, ref: torch.Tensor,
                 torch_lowp: torch.Tensor) -> None:
    """The rule for ours.dtype (see the module docstring)."""
    if ours.dtype == torch.float32:
        assert_fp32_close(name, ours, ref)
    else:
        assert_low_precision_close(name, ours, ref, torch_lowp)


def nan_padded(t: torch.Tensor, dim: int, pad: int = 16) -> torch.Tensor:
    """A copy of t that is a view into a larger NaN-filled buffer, padded along `dim`: any
    load past t's extent along dim reads NaN, which the interpreter (which raises nothing
    on out-of-bounds loads) then shows in the result."""
    shape = list(t.shape)
    shape[dim] += pad
    buf = torch.full(shape, float("nan"), dtype=t.dtype, device=t.device)
    view = buf.narrow(dim, 0, t.shape[dim])
    view.copy_(t)
    return view
