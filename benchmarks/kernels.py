"""Kernel benchmark: our Triton flash attention and fused norms against torch, same run.

    python benchmarks/kernels.py [--out DIR] [--seqs 1024,2048,...]

On a GPU (bf16):
- attention, forward and forward+backward, B*S = 16k tokens, 32 heads, head dim 128,
  causal and not, against F.scaled_dot_product_attention's flash and cuDNN backends.
  FLOPs: 4*B*H*S*S*D for the forward (half of it under a causal mask); forward+backward
  = 3.5x the forward (FlashAttention-2's convention: backward = 2.5x forward).
- LayerNorm and RMSNorm, forward and forward+backward, 16k rows of 5120 and 8192, against
  torch (and NVIDIA apex when importable). Bytes: activations only (x read, y written;
  backward: x and dy read, dx written); GB/s also as a fraction of a device-to-device copy
  measured in the same run, the practical ceiling of a memory-bound kernel.
Times are medians of `triton.testing.do_bench` (CUDA events, L2 flushed between runs);
the first call of each shape (autotuning, compilation) is not timed.
On a CPU the Triton interpreter runs the kernels: timings there are not performance, so
this only checks our kernels against torch at small shapes and reports the errors.
Prints a table; writes JSON to benchmarks/results/kernels.json (or DIR/kernels.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    # Must precede the first import of a kernel module (Triton reads it at decoration).
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402

from megamed.kernels import attention, flash_attention, layer_norm, rms_norm  # noqa: E402
from megamed.monitoring.plots import chart_table  # noqa: E402

CHARTS = {  # by result["mode"]: errors on a CPU (interpreter), times on a GPU
    "cpu-correctness": dict(x=("op", "dtype"), y=("max_err_out",), log=True,
                            ylabel="max |error| vs float64", title="Kernels vs torch (CPU)"),
    "gpu": dict(x=("op", "impl", "seq", "width"), y=("fwd_ms", "fwd_bwd_ms"), log=True,
                ylabel="ms", title="Kernels vs torch (GPU)")}

RESULTS = Path(__file__).resolve().parent / "results"
TOKENS, HEADS, HEAD_DIM, ROWS, WIDTHS = 16384, 32, 128, 16384, (5120, 8192)
ATTN_GRADS, NORM_GRADS = ("out", "dq", "dk", "dv"), ("y", "dx", "dweight", "dbias")
TARGETS = {"attention_fwd_tflops": 500.0, "norm_fwd_bwd_copy_fraction": 0.85,
           "attention_fwd_bwd_causal_s8k_vs_sdpa_flash": 1.0}


def median_ms(fn, grad_to_none=None) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none,
                                   return_mode="median")


def copy_gbps() -> float:
    """Device-to-device copy of 2 GiB (bytes read + written per second)."""
    src = torch.empty(2**30, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    return 2 * src.numel() * 2 / median_ms(lambda: dst.copy_(src)) / 1e6


def apex_norms():
    """NVIDIA apex's fused norms as (layer_norm, rms_norm) fns, or None."""
    try:
        from apex.normalization.fused_layer_norm import (fused_layer_norm_affine,
                                                         fused_rms_norm_affine)
    except ImportError:
        return None
    return (lambda x, w, b: fused_layer_norm_affine(x, w, b, x.shape[-1:], 1e-5),
            lambda x, w, b: fused_rms_norm_affine(x, w, x.shape[-1:], 1e-6))


# --------------------------------------------------------------------------- attention


def _sdpa_with(backend):
    from torch.nn.attention import sdpa_kernel

    def attend(q, k, v, causal):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return attend


def attention_impls() -> dict:
    from torch.nn.attention import SDPBackend
    impls = {"megamed-triton": lambda q, k, v, causal: flash_attention(q, k, v, causal)}
    impls["sdpa-flash"] = _sdpa_with(SDPBackend.FLASH_ATTENTION)
    if hasattr(SDPBackend, "CUDNN_ATTENTION"):
        impls["sdpa-cudnn"] = _sdpa_with(SDPBackend.CUDNN_ATTENTION)
    return impls


def _attention_case(impl, q, k, v, do, causal):
    """(out, grads) of one call, then fwd and fwd+bwd median ms."""
    for t in (q, k, v):
        t.grad = None
    out = impl(q, k, v, causal)
    out.backward(do)
    grads = [t.grad.clone() for t in (q, k, v)]
    fwd = median_ms(lambda: impl(q, k, v, causal))
    both = median_ms(lambda: impl(q, k, v, causal).backward(do), grad_to_none=[q, k, v])
    return out.detach(), grads, fwd, both


def _tuned_configs() -> dict:
    return {name: str(getattr(tuner, "best_config", None)) for name, tuner in
            (("fwd", attention._attn_fwd), ("dkdv", attention._attn_bwd_dkdv),
             ("dq", attention._attn_bwd_dq))}


def bench_attention(seqs: list[int], device: str = "cuda") -> list[dict]:
    rows, impls = [], attention_impls()
    for s in seqs:
        b = max(1, TOKENS // s)
        gen = torch.Generator(device=device).manual_seed(s)
        q, k, v, do = (torch.randn(b, HEADS, s, HEAD_DIM, device=device, dtype=torch.bfloat16,
                                   generator=gen) for _ in range(4))
        q, k, v = (t.requires_grad_() for t in (q, k, v))
        for causal in (False, True):
            fwd_flops = 4 * b * HEADS * s * s * HEAD_DIM / (2 if causal else 1)
            ours = None
            for name, impl in impls.items():
                row = {"op": "attention", "impl": name, "batch": b, "seq": s, "heads": HEADS,
                       "head_dim": HEAD_DIM, "causal": causal, "dtype": "bf16"}
                try:
                    out, grads, fwd, both = _attention_case(impl, q, k, v, do, causal)
                except Exception as err:  # noqa: BLE001 (e.g. cuDNN without this shape):
                    # recorded in the results rather than losing the rest of the run
                    rows.append({**row, "error": f"{type(err).__name__}: {err}"[:300]})
                    print(f"attention {name} S={s} causal={causal}: {rows[-1]['error']}")
                    continue
                row.update(fwd_ms=fwd, fwd_bwd_ms=both, fwd_tflops=fwd_flops / fwd / 1e9,
                           fwd_bwd_tflops=3.5 * fwd_flops / both / 1e9)
                if ours is None:
                    ours = (out, grads)
                    row["tuned"] = _tuned_configs()
                else:  # agreement with our result, as a sanity check of the tuned configs
                    row["max_abs_diff_vs_ours"] = {
                        n: (a.float() - b_.float()).abs().max().item()
                        for n, a, b_ in zip(("out", "dq", "dk", "dv"), [ours[0]] + ours[1],
                                            [out] + grads)}
                rows.append(row)
                print(_attention_line(row), flush=True)
    return rows


def _attention_line(r) -> str:
    return (f"attention {r['impl']:<15} S={r['seq']:<6} B={r['batch']:<3} "
            f"causal={str(r['causal']):<5} fwd {r['fwd_ms']:8.3f} ms {r['fwd_tflops']:7.1f} "
            f"TFLOP/s | fwd+bwd {r['fwd_bwd_ms']:8.3f} ms {r['fwd_bwd_tflops']:7.1f} TFLOP/s")


# --------------------------------------------------------------------------------- norms


def norm_impls() -> dict:
    impls = {
        ("layer_norm", "megamed-triton"): lambda x, w, b: layer_norm(x, w, b, 1e-5),
        ("layer_norm", "torch"): lambda x, w, b: F.layer_norm(x, x.shape[-1:], w, b, 1e-5),
        ("rms_norm", "megamed-triton"): lambda x, w, b: rms_norm(x, w, 1e-6),
        ("rms_norm", "torch"): lambda x, w, b: F.rms_norm(x, x.shape[-1:], w, 1e-6),
    }
    apex = apex_norms()
    if apex is not None:
        impls[("layer_norm", "apex")], impls[("rms_norm", "apex")] = apex
    return impls


def bench_norms(copy: float, device: str = "cuda") -> list[dict]:
    rows = []
    for n in WIDTHS:
        gen = torch.Generator(device=device).manual_seed(n)
        make = lambda *s: torch.randn(*s, device=device, dtype=torch.bfloat16,  # noqa: E731
                                      generator=gen)
        x, dy, w, b = make(ROWS, n), make(ROWS, n), make(n), make(n)
        x, w, b = (t.requires_grad_() for t in (x, w, b))
        elem = x.element_size()
        for (op, name), fn in norm_impls().items():
            fn(x, w, b).backward(dy)  # compile before timing
            fwd = median_ms(lambda: fn(x, w, b))
            both = median_ms(lambda: fn(x, w, b).backward(dy), grad_to_none=[x, w, b])
            fwd_gbps = 2 * ROWS * n * elem / fwd / 1e6
            both_gbps = 5 * ROWS * n * elem / both / 1e6
            row = {"op": op, "impl": name, "rows": ROWS, "width": n, "dtype": "bf16",
                   "fwd_ms": fwd, "fwd_bwd_ms": both, "fwd_gbps": fwd_gbps,
                   "fwd_bwd_gbps": both_gbps, "fwd_copy_fraction": fwd_gbps / copy,
                   "fwd_bwd_copy_fraction": both_gbps / copy}
            rows.append(row)
            print(f"{op:<10} {name:<15} n={n:<5} fwd {fwd:7.3f} ms {fwd_gbps:7.0f} GB/s "
                  f"({row['fwd_copy_fraction']:.2f} of copy) | fwd+bwd {both:7.3f} ms "
                  f"{both_gbps:7.0f} GB/s ({row['fwd_bwd_copy_fraction']:.2f})", flush=True)
    return rows


def target_checks(attn: list[dict], norms: list[dict]) -> dict:
    """The issue's targets, read off this run's rows (None where a row is missing)."""
    def find(rows, **want):
        return next((r for r in rows if all(r.get(k) == v for k, v in want.items())
                     and "error" not in r), None)
    ours = find(attn, impl="megamed-triton", seq=8192, causal=True)
    flash = find(attn, impl="sdpa-flash", seq=8192, causal=True)
    best_fwd = max((r["fwd_tflops"] for r in attn
                    if r["impl"] == "megamed-triton" and "error" not in r), default=None)
    fractions = [r["fwd_bwd_copy_fraction"] for r in norms if r["impl"] == "megamed-triton"]
    return {
        "attention_fwd_bwd_causal_s8k_ratio_to_sdpa_flash":
            ours["fwd_bwd_tflops"] / flash["fwd_bwd_tflops"] if ours and flash else None,
        "attention_best_fwd_tflops": best_fwd,
        "norm_min_fwd_bwd_copy_fraction": min(fractions, default=None),
        "targets": TARGETS,
    }


def machine() -> dict:
    info = {"node": platform.node(), "python": platform.python_version(),
            "torch": torch.__version__, "triton": triton.__version__,
            "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, sm_count=props.multi_processor_count,
                    memory_gib=props.total_memory / 2**30)
    else:
        info.update(gpu=None, cpus=os.cpu_count())
    return info


def run_gpu(seqs: list[int]) -> dict:
    copy = copy_gbps()
    print(f"device-to-device copy: {copy:.0f} GB/s ({torch.cuda.get_device_name()})")
    norms = bench_norms(copy)
    attn = bench_attention(seqs)
    checks = target_checks(attn, norms)
    for name, value in checks.items():
        print(f"{name}: {value}")
    return {"benchmark": "kernels", "mode": "gpu", "machine": machine(),
            "reference": {"copy_gbps": copy, "attention": "F.scaled_dot_product_attention "
                          "(flash, cuDNN) in this run", "norms": "torch.nn.functional "
                          "(and apex when importable) in this run"},
            "attention": attn, "norms": norms, "checks": checks}


# ------------------------------------------------------------------------- CPU: accuracy


def _errors(fn, ref_fn, inputs, grad_out, names) -> dict:
    """Max abs error of fn against ref_fn (float64) for the output and each input's grad,
    keyed by `names` (output first)."""
    results = []
    for f, dtype in ((fn, None), (ref_fn, torch.float64)):
        leaves = [t.detach().to(dtype or t.dtype).requires_grad_() for t in inputs]
        out = f(*leaves)
        out.backward(grad_out.to(out.dtype))
        results.append([out.detach()] + [t.grad for t in leaves])
    return {f"max_err_{name}": (a.double() - r).abs().max().item()
            for name, a, r in zip(names, *results)}


def run_cpu() -> dict:
    print("No CUDA device: the kernels run in the Triton interpreter, whose timings are "
          "not performance. Checking correctness against torch at small shapes instead.")
    gen = torch.Generator().manual_seed(0)
    rows = []
    for b, h, h_kv, s, d, causal in ((1, 4, 2, 45, 32, True), (2, 4, 1, 33, 64, False)):
        q, do = (torch.randn(b, h, s, d, generator=gen) for _ in range(2))
        k, v = (torch.randn(b, h_kv, s, d, generator=gen) for _ in range(2))

        def sdpa(q, k, v, causal=causal, group=h // h_kv):
            return F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1),
                                                  v.repeat_interleave(group, 1),
                                                  is_causal=causal)
        rows.append({"op": "attention", "shape": [b, h, h_kv, s, d], "causal": causal,
                     "dtype": "fp32", **_errors(lambda q, k, v: flash_attention(q, k, v, causal),
                                                sdpa, (q, k, v), do, ATTN_GRADS)})
    x, dy = (torch.randn(7, 33, 100, generator=gen) for _ in range(2))
    w, bias = torch.randn(100, generator=gen), torch.randn(100, generator=gen)
    rows.append({"op": "layer_norm", "shape": list(x.shape), "dtype": "fp32", **_errors(
        lambda x, w, b: layer_norm(x, w, b, 1e-5),
        lambda x, w, b: F.layer_norm(x, (100,), w, b, 1e-5), (x, w, bias), dy, NORM_GRADS)})
    rows.append({"op": "rms_norm", "shape": list(x.shape), "dtype": "fp32", **_errors(
        lambda x, w: rms_norm(x, w, 1e-6), lambda x, w: F.rms_norm(x, (100,), w, 1e-6),
        (x, w), dy, NORM_GRADS[:3])})
    for r in rows:
        errs = " ".join(f"{k[8:]}={v:.1e}" for k, v in r.items() if k.startswith("max_err"))
        print(f"{r['op']:<10} {str(r['shape']):<22} max abs error vs float64 torch: {errs}")
    return {"benchmark": "kernels", "mode": "cpu-correctness", "machine": machine(),
            "reference": "torch.nn.functional in float64, same inputs",
            "note": "Triton interpreter: no timings", "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Benchmark megamed's Triton kernels vs torch.")
    p.add_argument("--out", help="directory for kernels.json (default benchmarks/results)")
    p.add_argument("--seqs", default="1024,2048,4096,8192,16384",
                   help="attention sequence lengths (batch = 16384 tokens / seq)")
    args = p.parse_args(argv)
    if torch.cuda.is_available():
        result = run_gpu([int(s) for s in args.seqs.split(",")])
    else:
        result = run_cpu()
    out = Path(args.out) if args.out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernels.json").write_text(json.dumps(result, indent=1))
    chart = CHARTS["cpu-correctness" if result.get("mode") == "cpu-correctness" else "gpu"]
    print(f"wrote {out / 'kernels.json'} and "
          f"{chart_table(result, path=str(out / 'kernels.png'), **chart)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
