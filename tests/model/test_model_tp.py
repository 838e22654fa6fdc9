"""The whole decoder at TP = 2 gives the logits and gradients of TP = 1."""
import pytest
import torch

from distributed import run_distributed
from megamed.config import load_config
from megamed.model.transformer import DecoderStage
from megamed.parallel import collectives as C
from megamed.parallel.state import ParallelState
from megamed.parallel.tensor import initialize_parameters


def _full_grad(p, group):
    spec = p.init_spec
    if spec.partition_dim is None:
        return p.grad
    return C.all_gather(p.grad, group, spec.partition_dim)


def model_worker(tp, overrides):
    cfg = load_config("tiny", {"model": overrides})
    state = ParallelState.create(tp, 1)
    model = DecoderStage(cfg.model, state.tp_group, range(cfg.model.num_layers))
    initialize_parameters(model, seed=5)
    tokens = torch.randint(0, cfg.model.vocab_size, (2, cfg.model.seq_length),
                           generator=torch.Generator().manual_seed(1))
    logits = model(tokens)
    targets = tokens.roll(-1, dims=1)
    from megamed.parallel.tensor import vocab_parallel_cross_entropy
    vocab_parallel_cross_entropy(logits, targets, state.tp_group, cfg.model.vocab_size).mean().backward()
    full_logits = C.all_gather(logits.detach(), state.tp_group, -1)[..., :cfg.model.vocab_size]
    grads = {n: _full_grad(p, state.tp_group)[: p.init_spec.valid_rows or None]
             for n, p in model.named_parameters()}
    return full_logits, grads


@pytest.mark.parametrize("overrides", [
    {},  # RMSNorm + SwiGLU + RoPE, untied
    {"norm": "layernorm", "activation": "gelu", "position_embedding": "learned",
     "add_bias": True, "tie_embeddings": True, "num_kv_heads": 4},
], ids=["llama-style", "gpt2-style"])
def test_tp2_matches_tp1(overrides):
    (ref_logits, ref_grads), = run_distributed(model_worker, 1, 1, overrides)
    logits, grads = run_distributed(model_worker, 2, 2, overrides)[0]
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6,
                                   msg=lambda m: f"{name}: {m}")
