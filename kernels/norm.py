"""Fused LayerNorm and RMSNorm over the last dimension, forward and backward, in Triton.

Semantics of `F.layer_norm(x, x.shape[-1:], weight, bias, eps)` and
`F.rms_norm(x, x.shape[-1:], weight, eps)`; x has any leading shape and is viewed as rows
[rows, n]. Statistics are fp32 whatever the input dtype. The forward keeps a whole row in
registers (n <= 65536) and handles several rows per program when rows are narrow, so a
program still moves a useful amount of memory. The backward splits the rows into
contiguous chunks, one per program; each program accumulates its chunk's dweight/dbias
in registers and writes one partial row, and the partials are summed afterwards:
no atomics, so the gradients are bitwise reproducible.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_FUSED_SIZE = 65536
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

# ---------------------------------------------------------------------------------------
# Triton kernels
# ---------------------------------------------------------------------------------------


@triton.jit
def _norm_fwd(X, Y, W, B, MEAN, RSTD, stride_x, stride_y, N_ROWS, N, eps,
              RMS: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
              ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    """Y [rows, n] = normalize(X) * W + B for ROWS rows; saves MEAN, RSTD [rows] (fp32).
    RMS: no centring (MEAN is not written)."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_N)
    row_ok = rows < N_ROWS
    mask = row_ok[:, None] & (cols[None, :] < N)
    rows64 = rows.to(tl.int64)
    x = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=mask,
                other=0.0).to(tl.float32)
    if RMS:
        xc = x
    else:
        mean = tl.sum(x, 1) / N
        xc = tl.where(mask, x - mean[:, None], 0.0)
        tl.store(MEAN + rows, mean, mask=row_ok)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, 1) / N + eps)
    tl.store(RSTD + rows, rstd, mask=row_ok)
    y = xc * rstd[:, None]
    if HAS_W:
        y = y * tl.load(W + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    if HAS_B:
        y = y + tl.load(B + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    tl.store(Y + rows64[:, None] * stride_y + cols[None, :], y.to(Y.dtype.element_ty),
             mask=mask)


@triton.jit
def _row_tile(PTR, stride, rows, last, cols, col_ok):
    """Rows [ROWS, BLOCK_N] of a matrix, in its own dtype; rows >= last read as 0."""
    mask = (rows < last)[:, None] & col_ok[None, :]
    return tl.load(PTR + rows.to(tl.int64)[:, None] * stride + cols[None, :], mask=mask,
                   other=0.0)


@triton.jit
def _norm_bwd(X, DY, DX, W, MEAN, RSTD, DW_PART, DB_PART, stride_x, stride_dy, stride_dx,
              N_ROWS, N, rows_per_program,
              RMS: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
              ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    """DX [rows, n] for a contiguous chunk of rows, and this chunk's partial sums
    DW_PART, DB_PART [programs, n] (fp32) of dy * x_hat and dy."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < N
    w = 1.0
    if HAS_W:
        w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_N], dtype=tl.float32)
    db = tl.zeros([BLOCK_N], dtype=tl.float32)
    first = pid * rows_per_program
    last = tl.minimum(first + rows_per_program, N_ROWS)
    rows = first + tl.arange(0, ROWS)
    x_next = _row_tile(X, stride_x, rows, last, cols, col_ok)
    dy_next = _row_tile(DY, stride_dy, rows, last, cols, col_ok)
    for start in range(first, last, ROWS):
        rows = start + tl.arange(0, ROWS)
        x = x_next.to(tl.float32)
        dy = dy_next.to(tl.float32)
        # The accumulators leave room for one program per SM, so overlap by hand: the
        # next rows' loads are in flight while this row reduces.
        x_next = _row_tile(X, stride_x, rows + ROWS, last, cols, col_ok)
        dy_next = _row_tile(DY, stride_dy, rows + ROWS, last, cols, col_ok)
        rstd = tl.load(RSTD + rows, mask=rows < last, other=0.0)
        # x_hat is junk in padded columns, but dy loads as 0 there, so it adds nothing.
        if RMS:
            x_hat = x * rstd[:, None]
        else:
            mean = tl.load(MEAN + rows, mask=rows < last, other=0.0)
            x_hat = (x - mean[:, None]) * rstd[:, None]
        w_dy = w * dy
        # d(x_hat)/dx projects out the directions the statistics remove: the mean of
        # w*dy (LayerNorm only) and the component along x_hat.
        dx = w_dy - x_hat * (tl.sum(x_hat * w_dy, 1) / N)[:, None]
        if not RMS:
            dx -= (tl.sum(w_dy, 1) / N)[:, None]
        tl.store(DX + rows.to(tl.int64)[:, None] * stride_dx + cols[None, :],
                 (dx * rstd[:, None]).to(DX.dtype.element_ty),
                 mask=(rows < last)[:, None] & col_ok[None, :])
        if HAS_W:
            dw += tl.sum(dy * x_hat, 0)
        if HAS_B:
            db += tl.sum(dy, 0)
    if HAS_W:
        tl.store(DW_PART + pid * N + cols, dw, mask=col_ok)
    if HAS_B:
        tl.store(DB_PART + pid * N + cols, db, mask=col_ok)


# ---------------------------------------------------------------------------------------
# autograd.Function
# ---------------------------------------------------------------------------------------


def _launch_shape(n: int) -> tuple[int, int, int]:
    """(BLOCK_N, ROWS per program, forward num_warps): a whole row per block; narrow rows
    are packed until a program holds ~4096 elements; forward warps grow with the row so
    each thread holds ~16 elements (Liger-Kernel's `calculate_settings` rule)."""
    block_n = triton.next_power_of_2(n)
    rows = max(1, min(16, 4096 // block_n))
    return block_n, rows, min(32, max(4, block_n * rows // 512))


def _backward_warps(block_n: int, rows: int) -> int:
    """~32 elements per thread: the backward's row accumulators allow one program per SM
    at n=8192, so each thread keeps more loads in flight instead of more threads."""
    return min(32, max(4, block_n * rows // 1024))


def _num_programs(n_rows: int, device: torch.device) -> int:
    """Backward chunks: enough programs to fill the GPU a few times over, few enough that
    the [programs, n] partial sums stay ~1% of the traffic."""
    if device.type == "cuda":
        return min(n_rows, 4 * torch.cuda.get_device_properties(device).multi_processor_count)
    return min(n_rows, 3)  # the interpreter: several rows per chunk, one ragged chunk


def _rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """t as [rows, n] with a unit column stride (a view when possible)."""
    t = t.reshape(-1, n)
    return t if t.stride(-1) == 1 else t.contiguous()


def _forward(x2, weight, bias, eps: float, rms: bool):
    n_rows, n = x2.shape
    y = torch.empty((n_rows, n), device=x2.device, dtype=x2.dtype)
    rstd = torch.empty(n_rows, device=x2.device, dtype=torch.float32)
    mean = None if rms else torch.empty_like(rstd)
    block_n, rows, warps = _launch_shape(n)
    _norm_fwd[(triton.cdiv(n_rows, rows),)](
        x2, y, weight, bias, mean, rstd, x2.stride(0), y.stride(0), n_rows, n, eps,
        RMS=rms, HAS_W=weight is not None, HAS_B=bias is not None, ROWS=rows,
        BLOCK_N=block_n, num_warps=warps)
    return y, mean, rstd


def _backward(dy2, x2, weight, bias, mean, rstd, rms: bool):
    n_rows, n = x2.shape
    dx = torch.empty((n_rows, n), device=x2.device, dtype=x2.dtype)
    programs = _num_programs(n_rows, x2.device)
    parts = torch.empty((2, programs, n), device=x2.device, dtype=torch.float32)
    block_n, rows, _ = _launch_shape(n)
    _norm_bwd[(programs,)](
        x2, dy2, dx, weight, mean, rstd, parts[0], parts[1], x2.stride(0), dy2.stride(0),
        dx.stride(0), n_rows, n, triton.cdiv(n_rows, programs),
        RMS=rms, HAS_W=weight is not None, HAS_B=bias is not None, ROWS=rows,
        BLOCK_N=block_n, num_warps=_backward_warps(block_n, rows))
    dw = parts[0].sum(0).to(weight.dtype) if weight is not None else None
    db = parts[1].sum(0).to(bias.dtype) if bias is not None else None
    return dx, dw, db


class NormFunction(torch.autograd.Function):
    """LayerNorm (rms=False) or RMSNorm (rms=True) over the last dim; saves x and the
    fp32 statistics [rows]."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, rms: bool):
        x2 = _rows(x, x.shape[-1])
        if x2.shape[0] == 0:
            y, mean, rstd = torch.empty_like(x2), None, None
        else:
            y, mean, rstd = _forward(x2, weight, bias, eps, rms)
        ctx.save_for_backward(x2, weight, bias, mean, rstd)
        ctx.rms = rms
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, bias, mean, rstd = ctx.saved_tensors
        if x2.shape[0] == 0:
            dx = torch.zeros_like(x2)
            dw = None if weight is None else torch.zeros_like(weight)
            db = None if bias is None else torch.zeros_like(bias)
        else:
            dx, dw, db = _backward(_rows(dy, x2.shape[1]), x2, weight, bias, mean, rstd,
                                   ctx.rms)
        return dx.view(dy.shape), dw, db, None, None


# ---------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------


def _check(op: str, x: torch.Tensor, weight, bias) -> None:
    n = x.shape[-1] if x.dim() else 0
    if x.dtype not in _DTYPES:
        raise ValueError(f"{op}: x dtype {x.dtype} is not one of {_DTYPES}")
    if not 1 <= n <= MAX_FUSED_SIZE:
        raise ValueError(f"{op}: the last dim must hold 1..{MAX_FUSED_SIZE} elements (one "
                         f"row per register block), got shape {tuple(x.shape)}; use the "
                         "torch backend for wider rows")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (n,):
            raise ValueError(f"{op}: {name} must have shape ({n},) to match x's last dim, "
                             f"got {tuple(t.shape)}")
        if t is not None and t.device != x.device:
            raise ValueError(f"{op}: {name} is on {t.device}, x on {x.device}")


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """F.layer_norm(x, x.shape[-1:], weight, bias, eps). x [..., n]; weight, bias [n] or
    None; returns [..., n] in x's dtype."""
    _check("layer_norm", x, weight, bias)
    return NormFunction.apply(x, weight, bias, float(eps), False)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None,
             eps: float | None = None) -> torch.Tensor:
    """F.rms_norm(x, x.shape[-1:], weight, eps). x [..., n]; weight [n] or None; eps None
    means torch.finfo(x.dtype).eps, as in torch."""
    _check("rms_norm", x, weight, None)
    eps = torch.finfo(x.dtype).eps if eps is None else float(eps)
    return NormFunction.apply(x, weight, None, eps, True)
