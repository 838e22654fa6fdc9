"""The op backend switch: resolution, clear errors, and that each resolved backend computes
what torch.nn.functional computes."""
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from kernel_tolerance import DEVICES, assert_fp32_close

from megamed.kernels.backend import (BackendError, attention_fn, layer_norm_fn,
                                     resolve_backend, rms_norm_fn)


def _nvidia_apex_importable() -> bool:
    try:
        import apex.normalization.fused_layer_norm  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("op", ["attention", "norm"])
def test_auto_is_torch_on_cpu_and_triton_on_cuda(op):
    assert resolve_backend("auto", op, "cpu") == "torch"
    assert resolve_backend("auto", op, torch.device("cuda")) == "triton"


@pytest.mark.parametrize("op", ["attention", "norm"])
def test_explicit_backends(op):
    assert resolve_backend("torch", op, "cpu") == "torch"
    assert resolve_backend("triton", op, DEVICES[0]) == "triton"


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendError, match="TRITON_INTERPRET=1"):
        resolve_backend("triton", "norm", "cpu")


@pytest.mark.skipif(_nvidia_apex_importable(), reason="NVIDIA apex is installed here")
def test_missing_apex_is_a_clear_error():
    with pytest.raises(BackendError) as err:
        resolve_backend("apex", "norm", "cuda")
    message = str(err.value)
    for needed in ("'apex'", "'norm'", "github.com/NVIDIA/apex", "unrelated"):
        assert needed in message


def test_apex_has_no_attention():
    with pytest.raises(BackendError, match="apex provides fused norms only"):
        resolve_backend("apex", "attention", "cuda")


@pytest.mark.parametrize("name,op,match", [
    ("cudnn", "norm", "unknown backend 'cudnn'"),
    ("torch", "mlp", "unknown op 'mlp'"),
])
def test_unknown_names_are_errors(name, op, match):
    with pytest.raises(BackendError, match=match):
        resolve_backend(name, op)
    assert issubclass(BackendError, ValueError)


def test_unresolved_names_are_refused():
    with pytest.raises(BackendError, match="resolve_backend"):
        attention_fn("auto")
    with pytest.raises(BackendError, match="resolve_backend"):
        attention_fn("apex")
    with pytest.raises(BackendError, match="resolve_backend"):
        rms_norm_fn("auto")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("causal", [True, False])
def test_attention_fn_matches_sdpa(backend, causal, device):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 21, 16, generator=gen).to(device)
    k, v = (torch.randn(2, 2, 21, 16, generator=gen).to(device) for _ in range(2))
    ref = F.scaled_dot_product_attention(q.double(), k.double().repeat_interleave(2, 1),
                                         v.double().repeat_interleave(2, 1), is_causal=causal)
    out = attention_fn(resolve_backend(backend, "attention", device))(q, k, v, causal, None)
    assert_fp32_close("out", out, ref)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_norm_fns_match_torch(backend, device):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 40, generator=gen).to(device)
    w, b = (torch.randn(40, generator=gen).to(device) for _ in range(2))
    name = resolve_backend(backend, "norm", device)
    assert_fp32_close("layer_norm", layer_norm_fn(name)(x, w, b, 1e-5),
                      F.layer_norm(x.double(), (40,), w.double(), b.double(), 1e-5))
    assert_fp32_close("rms_norm", rms_norm_fn(name)(x, w, 1e-6),
                      F.rms_norm(x.double(), (40,), w.double(), 1e-6))


def test_package_imports_without_triton():
    """A torch-only machine imports megamed.kernels and its backend switch; triton is
    imported only when a kernel is first used."""
    script = textwrap.dedent("""
        import sys
        import megamed.kernels, megamed.kernels.backend
        assert "triton" not in sys.modules, "megamed.kernels imported triton eagerly"
        sys.modules["triton"] = None  # now `import triton` raises ImportError
        from megamed.kernels.backend import BackendError, resolve_backend
        assert resolve_backend("auto", "norm", "cuda") == "torch"
        try:
            resolve_backend("triton", "attention", "cuda")
        except BackendError as err:
            assert "pip install triton" in str(err), err
        else:
            raise AssertionError("triton resolved without triton")
        try:
            from megamed.kernels import flash_attention
        except ImportError:
            pass
        else:
            raise AssertionError("flash_attention imported without triton")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
