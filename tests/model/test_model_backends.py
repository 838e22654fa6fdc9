"""The decoder on the Triton kernels (attention and norms) gives the logits and gradients of
the torch backend. On a CPU the kernels run in the Triton interpreter (tests/conftest.py)."""
import pytest
import torch

pytest.importorskip("triton", reason="the triton backend needs the triton package")

from megamed.config import load_config  # noqa: E402
from megamed.model.transformer import DecoderStage  # noqa: E402
from megamed.parallel.tensor import initialize_parameters  # noqa: E402
from distributed import run_distributed  # noqa: E402


def _count_calls(module, name, calls):
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return original(*args, **kwargs)
    setattr(module, name, counted)


def backend_worker(backend, norm):
    """Loss and gradients of a 2-layer model, and how often each Triton op ran."""
    import megamed.kernels.attention as attention
    import megamed.kernels.norm as norms
    from megamed.parallel.state import ParallelState
    calls = {}
    for module, name in ((attention, "flash_attention"), (norms, "layer_norm"),
                         (norms, "rms_norm")):
        _count_calls(module, name, calls)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = load_config("tiny", {"model": {"attention_backend": backend, "norm_backend": backend,
                                         "num_layers": 2, "seq_length": 24, "norm": norm}})
    state = ParallelState.create(1, 1)
    model = DecoderStage(cfg.model, state.tp_group, range(2), device=device)
    initialize_parameters(model, seed=4)
    tokens = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    tokens = tokens.to(device)
    loss = model(tokens, tokens.roll(-1, 1)).mean()
    loss.backward()
    return loss.item(), {n: p.grad.cpu() for n, p in model.named_parameters()}, calls


@pytest.mark.parametrize("norm", ["rmsnorm", "layernorm"])
def test_triton_backends_match_torch(norm):
    ref_loss, ref_grads, ref_calls = run_distributed(backend_worker, 1, "torch", norm)[0]
    loss, grads, calls = run_distributed(backend_worker, 1, "triton", norm)[0]
    assert ref_calls == {}
    norm_op = "rms_norm" if norm == "rmsnorm" else "layer_norm"
    assert calls == {"flash_attention": 2, norm_op: 5}  # 2 layers x (1 attention, 2 norms) + final
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6,
                                   msg=lambda m: f"{name}: {m}")
