"""The op backend switch: which implementation computes attention and the norms.

    torch   torch.nn.functional (always available; the reference)
    triton  our kernels in this package (a GPU, or the interpreter with TRITON_INTERPRET=1)
    apex    NVIDIA apex's fused norms (norms only; apex must be built from source)
    auto    triton on CUDA when triton imports, else torch

An unavailable backend is a `BackendError`, never a silent fallback: a run configured for
a kernel must not quietly measure another one. This module imports neither triton nor
apex at import time, so a torch-only machine can resolve `auto` to `torch`.
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch
import torch.nn.functional as F

from .interpreter import triton_interpreter_on

BACKENDS = ("auto", "torch", "triton", "apex")
OPS = ("attention", "norm")


class BackendError(ValueError):
    """A backend that cannot run here, named with the op and what to install or change."""


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _check_triton(op: str, device: torch.device) -> None:
    if not _importable("triton"):
        raise BackendError(f"backend 'triton' for op '{op}': triton is not importable; "
                           "`pip install triton` or choose backend 'torch'")
    if device.type == "cpu" and not triton_interpreter_on():
        raise BackendError(f"backend 'triton' for op '{op}' on cpu needs the Triton "
                           "interpreter: set TRITON_INTERPRET=1 before megamed.kernels is "
                           "imported (slow, for tests), or choose backend 'torch'")


def _check_apex(op: str, device: torch.device) -> None:
    if op != "norm":
        raise BackendError(f"backend 'apex' has no '{op}' op: apex provides fused norms "
                           "only; choose 'torch' or 'triton' for attention")
    # Detect NVIDIA apex by its own module: PyPI's "apex" is an unrelated package.
    if not _importable("apex.normalization.fused_layer_norm"):
        raise BackendError("backend 'apex' for op 'norm': NVIDIA apex "
                           "(apex.normalization.fused_layer_norm) is not importable; build it "
                           "from https://github.com/NVIDIA/apex with --cpp_ext --cuda_ext "
                           "(do not `pip install apex`: that is an unrelated package), or "
                           "choose backend 'torch' or 'triton'")
    if device.type != "cuda":
        raise BackendError(f"backend 'apex' for op 'norm' runs on CUDA only, not on "
                           f"'{device}'; choose backend 'torch' there")


def resolve_backend(name: str, op: str, device: torch.device | str = "cpu") -> str:
    """The concrete backend ("torch" | "triton" | "apex") for `op` on `device`.

    Raises BackendError for an unknown name or op, or a backend that cannot run here."""
    if op not in OPS:
        raise BackendError(f"unknown op {op!r}: expected one of {OPS}")
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} for op '{op}': expected one of "
                           f"{BACKENDS}")
    device = torch.device(device)
    if name == "auto":
        return "triton" if device.type == "cuda" and _importable("triton") else "torch"
    if name == "triton":
        _check_triton(op, device)
    elif name == "apex":
        _check_apex(op, device)
    return name


def _resolved(backend: str, op: str, allowed: tuple[str, ...]) -> None:
    if backend not in allowed:
        raise BackendError(f"backend {backend!r} for op '{op}': expected a resolved backend "
                           f"from {allowed} (call resolve_backend first)")


def _torch_attention(q, k, v, causal: bool, scale: float | None) -> torch.Tensor:
    """SDPA; K/V may have fewer heads (query head h reads KV head h // group).
    [b, heads, s, d]."""
    group = q.shape[1] // k.shape[1]
    if group == 1:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    if torch.__version__ >= "2.5":  # enable_gqa spares the fused kernels a K/V copy
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale,
                                              enable_gqa=True)
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)


def attention_fn(backend: str) -> Callable:
    """fn(q, k, v, causal, scale) -> out, all [b, heads, s, head_dim]; K/V may have fewer
    heads (grouped-query attention)."""
    _resolved(backend, "attention", ("torch", "triton"))
    if backend == "torch":
        return _torch_attention
    from .attention import flash_attention
    return lambda q, k, v, causal, scale: flash_attention(q, k, v, causal=causal, scale=scale)


def _apex_layer_norm(x, weight, bias, eps):
    from apex.normalization.fused_layer_norm import fused_layer_norm, fused_layer_norm_affine
    shape = x.shape[-1:]
    if weight is None and bias is None:
        return fused_layer_norm(x, shape, eps)
    # apex's affine op takes both; an absent one is the identity (ones / zeros).
    weight = torch.ones(shape, device=x.device, dtype=x.dtype) if weight is None else weight
    bias = torch.zeros(shape, device=x.device, dtype=x.dtype) if bias is None else bias
    return fused_layer_norm_affine(x, weight, bias, shape, eps)


def _apex_rms_norm(x, weight, eps):
    from apex.normalization.fused_layer_norm import fused_rms_norm, fused_rms_norm_affine
    shape = x.shape[-1:]
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    if weight is None:
        return fused_rms_norm(x, shape, eps)
    return fused_rms_norm_affine(x, weight, shape, eps)


def layer_norm_fn(backend: str) -> Callable:
    """fn(x, weight, bias, eps) -> F.layer_norm over the last dim; weight/bias may be None."""
    _resolved(backend, "norm", ("torch", "triton", "apex"))
    if backend == "torch":
        return lambda x, weight, bias, eps: F.layer_norm(x, x.shape[-1:], weight, bias, eps)
    if backend == "apex":
        return _apex_layer_norm
    from .norm import layer_norm
    return layer_norm


def rms_norm_fn(backend: str) -> Callable:
    """fn(x, weight, eps) -> F.rms_norm over the last dim; weight may be None, eps None
    means torch.finfo(x.dtype).eps as in F.rms_norm."""
    _resolved(backend, "norm", ("torch", "triton", "apex"))
    if backend == "torch":
        return lambda x, weight, eps: F.rms_norm(x, x.shape[-1:], weight, eps)
    if backend == "apex":
        return _apex_rms_norm
    from .norm import rms_norm
    return rms_norm
