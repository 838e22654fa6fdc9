"""megamed.kernels: our Triton kernels (flash attention, fused LayerNorm/RMSNorm).

Each op lives in one file: Triton kernels, then a `torch.autograd.Function`, then a thin
public function with `torch.nn.functional` semantics. `torch` stays the reference.
`backend` chooses between them and imports no triton, and the kernels are imported on
first use, so a torch-only machine can import this package and `megamed.kernels.backend`.

    from megamed.kernels import flash_attention, layer_norm, rms_norm
"""
import importlib

__all__ = ["flash_attention", "layer_norm", "rms_norm"]
_MODULE_OF = {"flash_attention": "attention", "layer_norm": "norm", "rms_norm": "norm"}


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
