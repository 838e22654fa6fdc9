"""megamed.kernels: our Triton kernels (flash attention, fused LayerNorm/RMSNorm).

Each op lives in one file: Triton kernels, then a `torch.autograd.Function`, then a thin
public function with `torch.nn.functional` semantics. `torch` stays the reference.
"""
