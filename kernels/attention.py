"""Flash attention forward and backward (FlashAttention-2, Dao 2023) in Triton.

Layout and semantics are those of `F.scaled_dot_product_attention`: q [b, h, s_q, d],
k and v [b, h_kv, s_k, d] with h % h_kv == 0 (grouped-query attention: query head i reads
KV head i // (h / h_kv), without repeating K/V in memory), causal = SDPA's `is_causal`,
i.e. the top-left aligned mask key <= query (also when s_q != s_k).

Forward: one program per (query block, batch x head); an online softmax over key blocks
in exp2 with log2(e)-scaled scores; only the log-sum-exp [b, h, s_q] is saved. Key blocks
that need no mask (strictly below the diagonal and inside s_k) run in a loop without
`where`; the diagonal and the ragged edge run in a second, masked loop.
Backward (FA2 section 3.1.2): delta = rowsum(dO * O); a dK/dV kernel per key block that
iterates over query blocks (and, for GQA, over the query heads of its group, so no
atomics and no repeated K/V); a dQ kernel per query block that iterates over key blocks.
Every output element is written by exactly one program: results are deterministic.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .tuning import autotune

LOG2E = 1.4426950408889634
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

# ---------------------------------------------------------------------------------------
# Triton kernels
# ---------------------------------------------------------------------------------------


@triton.jit
def _fwd_loop(acc, l_i, m_i, q, K, V, lo, hi, offs_m, stride_kn, stride_vn, SEQ_K,
              qk_scale, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr,
              MASKED: tl.constexpr, CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Online softmax over key blocks [lo, hi) for one query block.
    acc [BLOCK_M, HEAD_DIM] fp32, l_i and m_i [BLOCK_M] fp32 (m_i in log2 units)."""
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k_ptrs = K + offs_n[:, None] * stride_kn + offs_d[None, :]
        v_ptrs = V + offs_n[:, None] * stride_vn + offs_d[None, :]
        if MASKED:
            k = tl.load(k_ptrs, mask=offs_n[:, None] < SEQ_K, other=0.0)
            v = tl.load(v_ptrs, mask=offs_n[:, None] < SEQ_K, other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        if MASKED:
            keep = offs_n[None, :] < SEQ_K
            if CAUSAL:
                keep = keep & (offs_n[None, :] <= offs_m[:, None])
            # Every row keeps a key in the first block it visits, so m_new stays finite.
            qk = tl.where(keep, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _query_block_spans(start_m, SEQ_K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       CAUSAL: tl.constexpr):
    """Key ranges for the query rows [start_m, start_m + BLOCK_M): [0, full_end) needs no
    mask, [full_end, hi) holds the diagonal and/or the ragged end of the keys."""
    if CAUSAL:
        # Rows >= start_m see every key <= start_m (top-left aligned mask).
        full_end = tl.minimum(start_m + 1, SEQ_K) // BLOCK_N * BLOCK_N
        hi = tl.minimum(start_m + BLOCK_M, SEQ_K)
    else:
        full_end = SEQ_K // BLOCK_N * BLOCK_N
        hi = SEQ_K
    return full_end, hi


@triton.jit
def _attn_fwd(Q, K, V, O, LSE, sq_b, sq_h, sq_s, sk_b, sk_h, sk_s, sv_b, sv_h, sv_s,
              so_b, so_h, so_s, H, GROUP, SEQ_Q, SEQ_K, qk_scale,
              HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, PRECISION: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """O [b, h, s_q, d] and LSE [b, h, s_q] (log2 units) for one query block of one head."""
    # Last query blocks first: under a causal mask they hold the most work, and starting
    # them early leaves short blocks to fill the tail of the grid.
    start_m = (tl.num_programs(0) - 1 - tl.program_id(0)) * BLOCK_M
    bh = tl.program_id(1)
    b, h = bh // H, bh % H
    b64 = b.to(tl.int64)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m[:, None] < SEQ_Q
    q = tl.load(Q + b64 * sq_b + h * sq_h + offs_m[:, None] * sq_s + offs_d[None, :],
                mask=row_ok, other=0.0)
    K += b64 * sk_b + (h // GROUP) * sk_h
    V += b64 * sv_b + (h // GROUP) * sv_h
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    full_end, hi = _query_block_spans(start_m, SEQ_K, BLOCK_M, BLOCK_N, CAUSAL)
    acc, l_i, m_i = _fwd_loop(acc, l_i, m_i, q, K, V, 0, full_end, offs_m, sk_s, sv_s, SEQ_K,
                              qk_scale, BLOCK_N, HEAD_DIM, False, CAUSAL, PRECISION)
    acc, l_i, m_i = _fwd_loop(acc, l_i, m_i, q, K, V, full_end, hi, offs_m, sk_s, sv_s, SEQ_K,
                              qk_scale, BLOCK_N, HEAD_DIM, True, CAUSAL, PRECISION)
    acc = acc / l_i[:, None]
    tl.store(LSE + bh.to(tl.int64) * SEQ_Q + offs_m, m_i + tl.math.log2(l_i),
             mask=offs_m < SEQ_Q)
    tl.store(O + b64 * so_b + h * so_h + offs_m[:, None] * so_s + offs_d[None, :],
             acc.to(O.dtype.element_ty), mask=row_ok)


@triton.jit
def _attn_bwd_delta(O, DO, DELTA, so_b, so_h, so_s, sdo_b, sdo_h, sdo_s, H, SEQ_Q,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr):
    """DELTA [b, h, s_q] fp32 = rowsum(dO * O): the softmax-Jacobian term of dS."""
    bh = tl.program_id(1)
    b64, h = (bh // H).to(tl.int64), bh % H
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m[:, None] < SEQ_Q
    o = tl.load(O + b64 * so_b + h * so_h + offs_m[:, None] * so_s + offs_d[None, :],
                mask=row_ok, other=0.0).to(tl.float32)
    do = tl.load(DO + b64 * sdo_b + h * sdo_h + offs_m[:, None] * sdo_s + offs_d[None, :],
                 mask=row_ok, other=0.0).to(tl.float32)
    tl.store(DELTA + bh.to(tl.int64) * SEQ_Q + offs_m, tl.sum(o * do, 1), mask=offs_m < SEQ_Q)


@triton.jit
def _dkdv_loop(dk, dv, k, v, Q, DO, LSE, DELTA, lo, hi, offs_n, sq_s, sdo_s, SEQ_Q, qk_scale,
               BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
               CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Adds query blocks [lo, hi) of one head to dK, dV [BLOCK_N, HEAD_DIM] (fp32).
    Works on transposed scores [BLOCK_N, BLOCK_M] so no tile needs a transpose."""
    offs_d = tl.arange(0, HEAD_DIM)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_ptrs = Q + offs_m[:, None] * sq_s + offs_d[None, :]
        do_ptrs = DO + offs_m[:, None] * sdo_s + offs_d[None, :]
        if MASKED:
            q = tl.load(q_ptrs, mask=offs_m[:, None] < SEQ_Q, other=0.0)
            do = tl.load(do_ptrs, mask=offs_m[:, None] < SEQ_Q, other=0.0)
            lse = tl.load(LSE + offs_m, mask=offs_m < SEQ_Q, other=0.0)
            delta = tl.load(DELTA + offs_m, mask=offs_m < SEQ_Q, other=0.0)
        else:
            q = tl.load(q_ptrs)
            do = tl.load(do_ptrs)
            lse = tl.load(LSE + offs_m)
            delta = tl.load(DELTA + offs_m)
        p_t = tl.math.exp2(tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale
                           - lse[None, :])
        # Rows past SEQ_Q need no mask: their q and dO load as zeros, so they add zero.
        if MASKED and CAUSAL:
            p_t = tl.where(offs_m[None, :] >= offs_n[:, None], p_t, 0.0)
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=PRECISION)
    return dk, dv


@triton.jit
def _key_block_spans(start_n, SEQ_Q, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     CAUSAL: tl.constexpr):
    """Query ranges for the keys [start_n, start_n + BLOCK_N): [lo, full_lo) holds the
    diagonal (masked), [full_lo, full_hi) needs no mask, [tail, SEQ_Q) is the ragged end."""
    full_hi = SEQ_Q // BLOCK_M * BLOCK_M
    if CAUSAL:
        lo = start_n // BLOCK_M * BLOCK_M
        # A query block sees all of these keys once its first row >= the last key.
        full_lo = tl.cdiv(start_n + BLOCK_N - 1, BLOCK_M) * BLOCK_M
    else:
        lo = 0
        full_lo = 0
    return lo, full_lo, full_hi, tl.maximum(full_lo, full_hi)


@triton.jit
def _attn_bwd_dkdv(Q, K, V, DO, DK, DV, LSE, DELTA, sq_b, sq_h, sq_s, sk_b, sk_h, sk_s,
                   sv_b, sv_h, sv_s, sdo_b, sdo_h, sdo_s, sdk_b, sdk_h, sdk_s,
                   H, GROUP, SEQ_Q, SEQ_K, qk_scale, sm_scale,
                   HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, PRECISION: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """dK, dV [b, h_kv, s_k, d] for one key block of one KV head, summed over its group."""
    start_n = tl.program_id(0) * BLOCK_N
    bh_kv = tl.program_id(1)
    h_kv = bh_kv % (H // GROUP)
    b64 = (bh_kv // (H // GROUP)).to(tl.int64)
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    key_ok = offs_n[:, None] < SEQ_K
    k = tl.load(K + b64 * sk_b + h_kv * sk_h + offs_n[:, None] * sk_s + offs_d[None, :],
                mask=key_ok, other=0.0)
    v = tl.load(V + b64 * sv_b + h_kv * sv_h + offs_n[:, None] * sv_s + offs_d[None, :],
                mask=key_ok, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo, full_lo, full_hi, tail = _key_block_spans(start_n, SEQ_Q, BLOCK_M, BLOCK_N, CAUSAL)
    for g in range(GROUP):
        h = h_kv * GROUP + g
        q_h = Q + b64 * sq_b + h * sq_h
        do_h = DO + b64 * sdo_b + h * sdo_h
        row = (b64 * H + h) * SEQ_Q
        dk, dv = _dkdv_loop(dk, dv, k, v, q_h, do_h, LSE + row, DELTA + row, lo,
                            tl.minimum(full_lo, SEQ_Q), offs_n, sq_s, sdo_s, SEQ_Q, qk_scale,
                            BLOCK_M, HEAD_DIM, True, CAUSAL, PRECISION)
        dk, dv = _dkdv_loop(dk, dv, k, v, q_h, do_h, LSE + row, DELTA + row, full_lo, full_hi,
                            offs_n, sq_s, sdo_s, SEQ_Q, qk_scale,
                            BLOCK_M, HEAD_DIM, False, CAUSAL, PRECISION)
        dk, dv = _dkdv_loop(dk, dv, k, v, q_h, do_h, LSE + row, DELTA + row, tail, SEQ_Q,
                            offs_n, sq_s, sdo_s, SEQ_Q, qk_scale,
                            BLOCK_M, HEAD_DIM, True, CAUSAL, PRECISION)
    out = b64 * sdk_b + h_kv * sdk_h + offs_n[:, None] * sdk_s + offs_d[None, :]
    tl.store(DK + out, (dk * sm_scale).to(DK.dtype.element_ty), mask=key_ok)
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=key_ok)


@triton.jit
def _dq_loop(dq, q, do, lse, delta, K, V, lo, hi, offs_m, sk_s, sv_s, SEQ_K, qk_scale,
             BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
             CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Adds key blocks [lo, hi) to dQ [BLOCK_M, HEAD_DIM] (fp32, unscaled)."""
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k_ptrs = K + offs_n[:, None] * sk_s + offs_d[None, :]
        v_ptrs = V + offs_n[:, None] * sv_s + offs_d[None, :]
        if MASKED:
            k = tl.load(k_ptrs, mask=offs_n[:, None] < SEQ_K, other=0.0)
            v = tl.load(v_ptrs, mask=offs_n[:, None] < SEQ_K, other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        p = tl.math.exp2(tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
                         - lse[:, None])
        # Keys past SEQ_K need no mask: they load as zeros, so ds @ k adds zero.
        if MASKED and CAUSAL:
            p = tl.where(offs_n[None, :] <= offs_m[:, None], p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=PRECISION)
    return dq


@triton.jit
def _attn_bwd_dq(Q, K, V, DO, DQ, LSE, DELTA, sq_b, sq_h, sq_s, sk_b, sk_h, sk_s,
                 sv_b, sv_h, sv_s, sdo_b, sdo_h, sdo_s, sdq_b, sdq_h, sdq_s,
                 H, GROUP, SEQ_Q, SEQ_K, qk_scale, sm_scale,
                 HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, PRECISION: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """dQ [b, h, s_q, d] for one query block of one head."""
    start_m = (tl.num_programs(0) - 1 - tl.program_id(0)) * BLOCK_M
    bh = tl.program_id(1)
    b64, h = (bh // H).to(tl.int64), bh % H
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m[:, None] < SEQ_Q
    q = tl.load(Q + b64 * sq_b + h * sq_h + offs_m[:, None] * sq_s + offs_d[None, :],
                mask=row_ok, other=0.0)
    do = tl.load(DO + b64 * sdo_b + h * sdo_h + offs_m[:, None] * sdo_s + offs_d[None, :],
                 mask=row_ok, other=0.0)
    row = bh.to(tl.int64) * SEQ_Q + offs_m
    lse = tl.load(LSE + row, mask=offs_m < SEQ_Q, other=0.0)
    delta = tl.load(DELTA + row, mask=offs_m < SEQ_Q, other=0.0)
    K += b64 * sk_b + (h // GROUP) * sk_h
    V += b64 * sv_b + (h // GROUP) * sv_h
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    full_end, hi = _query_block_spans(start_m, SEQ_K, BLOCK_M, BLOCK_N, CAUSAL)
    dq = _dq_loop(dq, q, do, lse, delta, K, V, 0, full_end, offs_m, sk_s, sv_s, SEQ_K,
                  qk_scale, BLOCK_N, HEAD_DIM, False, CAUSAL, PRECISION)
    dq = _dq_loop(dq, q, do, lse, delta, K, V, full_end, hi, offs_m, sk_s, sv_s, SEQ_K,
                  qk_scale, BLOCK_N, HEAD_DIM, True, CAUSAL, PRECISION)
    tl.store(DQ + b64 * sdq_b + h * sdq_h + offs_m[:, None] * sdq_s + offs_d[None, :],
             (dq * sm_scale).to(DQ.dtype.element_ty), mask=row_ok)


# Hopper candidates. Compiled for sm_90 at d=128 bf16, the 8-warp tiles fit in registers
# without spilling; the 4-warp BLOCK_M=128 ones spill there and are for smaller head dims;
# the last, tiny one is the fallback when nothing else fits (fp32 at d=128). Forward:
# FA2's BLOCK_M 128; dK/dV hold a key block for a whole pass over the queries; dQ mirrors
# it. The interpreter gets unequal small blocks so the diagonal spans several blocks.
_KEY = ["SEQ_Q", "SEQ_K", "HEAD_DIM", "CAUSAL", "GROUP"]


def _configs(shapes):
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
            for m, n, w, s in shapes]


def _row_bytes(args) -> int:
    return args["HEAD_DIM"] * args["Q"].element_size()


# Shared memory per config: the tiles a program holds, once, plus the tiles it streams,
# once per pipeline stage (checked against Triton's own figures for sm_90).
def _fwd_smem(c, args):  # holds q, streams k and v
    return (c.kwargs["BLOCK_M"] + 2 * c.kwargs["BLOCK_N"] * c.num_stages) * _row_bytes(args)


def _dkdv_smem(c, args):  # holds k and v, streams q and dO
    return (2 * c.kwargs["BLOCK_N"] + 2 * c.kwargs["BLOCK_M"] * c.num_stages) * _row_bytes(args)


def _dq_smem(c, args):  # holds q and dO, streams k and v
    return (2 * c.kwargs["BLOCK_M"] + 2 * c.kwargs["BLOCK_N"] * c.num_stages) * _row_bytes(args)


FWD_CONFIGS = _configs([(128, 64, 8, 3), (128, 128, 8, 3), (128, 64, 8, 4), (128, 64, 4, 3),
                        (64, 64, 4, 3), (64, 32, 4, 2)])
DKDV_CONFIGS = _configs([(32, 128, 8, 3), (64, 64, 8, 3), (32, 64, 8, 3), (32, 64, 4, 4),
                         (16, 32, 4, 2)])
DQ_CONFIGS = _configs([(128, 32, 8, 3), (128, 64, 8, 3), (64, 32, 4, 4), (64, 64, 4, 3),
                       (128, 32, 4, 3), (32, 16, 4, 2)])
_attn_fwd = autotune(FWD_CONFIGS, triton.Config({"BLOCK_M": 32, "BLOCK_N": 16}), _KEY,
                     _fwd_smem, "Q")(_attn_fwd)
_attn_bwd_dkdv = autotune(DKDV_CONFIGS, triton.Config({"BLOCK_M": 16, "BLOCK_N": 32}), _KEY,
                          _dkdv_smem, "Q")(_attn_bwd_dkdv)
_attn_bwd_dq = autotune(DQ_CONFIGS, triton.Config({"BLOCK_M": 32, "BLOCK_N": 16}), _KEY,
                        _dq_smem, "Q")(_attn_bwd_dq)

# ---------------------------------------------------------------------------------------
# autograd.Function
# ---------------------------------------------------------------------------------------


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _unit_last_stride(t: torch.Tensor) -> torch.Tensor:
    """Kernels address rows by stride and assume the head dim is dense."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs are the exact reference path: tf32 would cost ~1e-3 relative error.
    return "ieee" if dtype == torch.float32 else "tf32"


def _forward(q, k, v, causal: bool, sm_scale: float):
    """out [b, h, s_q, d] and lse [b, h, s_q] fp32 (log2 units)."""
    b, h, s_q, d = q.shape
    s_k = k.shape[2]
    out = torch.empty((b, h, s_q, d), device=q.device, dtype=q.dtype)
    lse = torch.empty((b, h, s_q), device=q.device, dtype=torch.float32)
    grid = lambda meta: (triton.cdiv(s_q, meta["BLOCK_M"]), b * h)  # noqa: E731
    _attn_fwd[grid](q, k, v, out, lse, *_strides(q), *_strides(k), *_strides(v),
                    *_strides(out), h, h // k.shape[1], s_q, s_k, sm_scale * LOG2E,
                    HEAD_DIM=d, CAUSAL=causal, PRECISION=_precision(q.dtype))
    return out, lse


def _backward(do, q, k, v, out, lse, causal: bool, sm_scale: float):
    """dq, dk, dv with the shapes of q, k, v."""
    b, h, s_q, d = q.shape
    h_kv, s_k = k.shape[1], k.shape[2]
    delta = torch.empty_like(lse)
    _attn_bwd_delta[(triton.cdiv(s_q, 64), b * h)](
        out, do, delta, *_strides(out), *_strides(do), h, s_q, HEAD_DIM=d, BLOCK_M=64)
    dq = torch.empty((b, h, s_q, d), device=q.device, dtype=q.dtype)
    dk = torch.empty((b, h_kv, s_k, d), device=q.device, dtype=k.dtype)
    dv = torch.empty_like(dk)
    common = dict(HEAD_DIM=d, CAUSAL=causal, PRECISION=_precision(q.dtype))
    scales = (h, h // h_kv, s_q, s_k, sm_scale * LOG2E, sm_scale)
    grid = lambda meta: (triton.cdiv(s_k, meta["BLOCK_N"]), b * h_kv)  # noqa: E731
    _attn_bwd_dkdv[grid](q, k, v, do, dk, dv, lse, delta, *_strides(q), *_strides(k),
                         *_strides(v), *_strides(do), *_strides(dk), *scales, **common)
    grid = lambda meta: (triton.cdiv(s_q, meta["BLOCK_M"]), b * h)  # noqa: E731
    _attn_bwd_dq[grid](q, k, v, do, dq, lse, delta, *_strides(q), *_strides(k),
                       *_strides(v), *_strides(do), *_strides(dq), *scales, **common)
    return dq, dk, dv


class FlashAttentionFunction(torch.autograd.Function):
    """Differentiable flash attention; saves q, k, v, out and the log-sum-exp only."""

    @staticmethod
    def forward(ctx, q, k, v, causal: bool, sm_scale: float):
        q, k, v = (_unit_last_stride(t) for t in (q, k, v))
        out, lse = _forward(q, k, v, causal, sm_scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.sm_scale = causal, sm_scale
        return out

    @staticmethod
    def backward(ctx, do):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _backward(_unit_last_stride(do), q, k, v, out, lse, ctx.causal,
                               ctx.sm_scale)
        return dq, dk, dv, None, None


# ---------------------------------------------------------------------------------------
# Public function
# ---------------------------------------------------------------------------------------


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"flash_attention expects [batch, heads, seq, head_dim] tensors, got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape != v.shape or k.shape[0] != q.shape[0] or k.shape[3] != q.shape[3]:
        raise ValueError(f"flash_attention: k and v must be [batch, kv_heads, seq_k, head_dim]"
                         f" matching q's batch and head_dim; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"flash_attention: query heads ({q.shape[1]}) must be a multiple of "
                         f"KV heads ({k.shape[1]}) for grouped-query attention")
    d = q.shape[3]
    if d < 16 or d > 128 or d & (d - 1):
        raise ValueError(f"flash_attention: head_dim must be a power of two in [16, 128], "
                         f"got {d}; use the torch backend for other sizes")
    if q.dtype not in _DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"flash_attention: q, k, v must share one dtype of {_DTYPES}; got "
                         f"{q.dtype}, {k.dtype}, {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"flash_attention: q, k, v must be on one device; got {q.device}, "
                         f"{k.device}, {v.device}")
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError("flash_attention: sequence lengths must be at least 1")


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                    scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale [+ causal mask]) v, as F.scaled_dot_product_attention.

    q [b, h, s_q, d]; k, v [b, h_kv, s_k, d] with h % h_kv == 0; returns [b, h, s_q, d]
    in q's dtype. scale defaults to 1/sqrt(d); causal is SDPA's top-left aligned mask."""
    _check(q, k, v)
    sm_scale = 1.0 / math.sqrt(q.shape[3]) if scale is None else float(scale)
    return FlashAttentionFunction.apply(q, k, v, bool(causal), sm_scale)
