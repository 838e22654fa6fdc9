"""TP layers at TP = 2 and 4 against their single-process torch twins: outputs, input
gradients and weight gradients (each rank's slice of the reference's)."""
import pytest
import torch
import torch.nn.functional as F

from distributed import run_distributed
from megamed.parallel.state import ParallelState
from megamed.parallel.tensor import (ColumnParallelLinear, RowParallelLinear,
                                     VocabParallelEmbedding, full_value, initialize_parameters,
                                     vocab_parallel_cross_entropy)

SEED = 3
TOL = dict(rtol=1e-5, atol=1e-6)


def _full(p, name):
    return full_value(p.init_spec, SEED, name)


def _shard(full, p):
    spec = p.init_spec
    if spec.partition_dim is None:
        return full
    return full.chunk(spec.tp_size, dim=spec.partition_dim)[spec.tp_rank]


def _inputs(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(11), requires_grad=True)


def _check_linear(layer, reference_fn, x_shape, grad_shape):
    initialize_parameters(layer, SEED)
    x = _inputs(*x_shape)
    y = layer(x)
    upstream = torch.randn(grad_shape, generator=torch.Generator().manual_seed(5))
    (y * upstream).sum().backward()
    weight = _full(layer.weight, "weight").requires_grad_()
    bias = _full(layer.bias, "bias").requires_grad_() if layer.bias is not None else None
    x_ref = x.detach().clone().requires_grad_()
    y_ref = reference_fn(x_ref, weight, bias)
    (y_ref * upstream).sum().backward()
    return x, y, x_ref, y_ref, weight, bias


def column_worker(tp):
    state = ParallelState.create(tp, 1)
    layer = ColumnParallelLinear(16, 24, state.tp_group, bias=True, gather_output=True)
    x, y, x_ref, y_ref, w, b = _check_linear(layer, F.linear, (2, 5, 16), (2, 5, 24))
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(x.grad, x_ref.grad, **TOL)
    torch.testing.assert_close(layer.weight.grad, _shard(w.grad, layer.weight), **TOL)
    torch.testing.assert_close(layer.bias.grad, _shard(b.grad, layer.bias), **TOL)


def row_worker(tp):
    state = ParallelState.create(tp, 1)
    layer = RowParallelLinear(24, 16, state.tp_group, bias=True, input_is_parallel=False)
    x, y, x_ref, y_ref, w, b = _check_linear(layer, F.linear, (2, 5, 24), (2, 5, 16))
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(x.grad, x_ref.grad, **TOL)
    torch.testing.assert_close(layer.weight.grad, _shard(w.grad, layer.weight), **TOL)
    torch.testing.assert_close(layer.bias.grad, b.grad, **TOL)


def embedding_and_loss_worker(tp):
    """Embedding lookup and vocab-parallel cross-entropy against F.embedding and
    F.cross_entropy over the real (unpadded) vocabulary."""
    state = ParallelState.create(tp, 1)
    vocab, padded, hidden = 200, 256 * tp, 8   # padded rows must not change anything
    emb = VocabParallelEmbedding(padded, vocab, hidden, state.tp_group)
    initialize_parameters(emb, SEED)
    tokens = torch.randint(0, vocab, (3, 7), generator=torch.Generator().manual_seed(2))
    out = emb(tokens)
    out.pow(2).sum().backward()
    w_full = _full(emb.weight, "weight").requires_grad_()
    ref = F.embedding(tokens, w_full)
    ref.pow(2).sum().backward()
    # The lookup is data movement (rows outside this rank's vocab range are zero before
    # the TP all-reduce, and x + 0 is x): exact.
    assert torch.equal(out, ref)
    torch.testing.assert_close(emb.weight.grad, _shard(w_full.grad, emb.weight), **TOL)

    logits_full = torch.randn(3, 7, padded, generator=torch.Generator().manual_seed(4))
    logits_full[..., vocab:] = 1e4  # padding columns must be ignored, whatever they hold
    local = logits_full.chunk(tp, dim=-1)[state.tp_rank].clone().requires_grad_()
    loss = vocab_parallel_cross_entropy(local, tokens, state.tp_group, vocab)
    weights = torch.randn(3, 7, generator=torch.Generator().manual_seed(9))
    (loss * weights).sum().backward()
    ref_logits = logits_full[..., :vocab].clone().requires_grad_()
    ref_loss = F.cross_entropy(ref_logits.reshape(-1, vocab), tokens.reshape(-1),
                               reduction="none").view(3, 7)
    (ref_loss * weights).sum().backward()
    torch.testing.assert_close(loss, ref_loss, **TOL)
    ref_grad = F.pad(ref_logits.grad, (0, padded - vocab))
    torch.testing.assert_close(local.grad, ref_grad.chunk(tp, dim=-1)[state.tp_rank], **TOL)


def all_layers_worker(tp):
    # One process group per TP size keeps process start-up (seconds each) out of the suite.
    column_worker(tp)
    row_worker(tp)
    embedding_and_loss_worker(tp)


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_layers_match_torch(tp):
    run_distributed(all_layers_worker, tp, tp)
