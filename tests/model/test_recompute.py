"""Activation recomputation at TP2 with dropout 0.1 (hidden and attention): selective and full
(groups of 1 and 3 blocks) give exactly the gradients of no recomputation, with and without
sequence parallelism, while fewer activations stay saved for backward. Micro batches run
F0 F1 B0 F2 B1 B2, as in a pipeline, so a recomputation in between forwards must leave the
RNG streams where it found them."""
import pytest
import torch

from distributed import run_distributed
from megamed.config import load_config
from megamed.model.transformer import DecoderStage
from megamed.parallel.random import seed_streams
from megamed.parallel.state import ParallelState
from megamed.parallel.tensor import initialize_parameters
from megamed.training.memory import SavedActivations

RECOMPUTE = [("none", 1), ("selective", 1), ("full", 1), ("full", 3)]


def _run(cfg, state, tokens, sequence_parallel, recompute, every, dropout_seed):
    """Gradients (full over TP: gathered along each shard's dim) and the peak of saved
    activations for three micro batches."""
    rng = seed_streams(dropout_seed, state.tp_rank, 0)
    model = DecoderStage(cfg, state.tp_group, range(cfg.num_layers),
                         sequence_parallel=sequence_parallel, rng=rng, recompute=recompute,
                         recompute_every=every)
    initialize_parameters(model, seed=5)
    saved = SavedActivations()

    def forward(m):
        with saved.track():
            return model(tokens[m, :, :-1], tokens[m, :, 1:]).mean()
    losses = [forward(0), forward(1)]
    losses.pop(0).backward()
    losses.append(forward(2))
    for loss in losses:
        loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}, saved.peak


def recompute_worker():
    state = ParallelState.create(2, 1)
    cfg = load_config("tiny", {"model": {"hidden_dropout": 0.1,
                                         "attention_dropout": 0.1}}).model
    tokens = torch.randint(0, cfg.vocab_size, (3, 2, cfg.seq_length + 1),
                           generator=torch.Generator().manual_seed(1))
    results = {}
    for sp in (False, True):
        for recompute, every in RECOMPUTE:
            results[sp, recompute, every] = _run(cfg, state, tokens, sp, recompute, every, 11)
        results[sp, "other dropout seed"] = _run(cfg, state, tokens, sp, "none", 1, 12)
    return results


@pytest.fixture(scope="module")
def results():
    return run_distributed(recompute_worker, 2)[0]


@pytest.mark.parametrize("sequence_parallel", [False, True], ids=["tp", "tp+sp"])
def test_recomputation_gives_identical_gradients(results, sequence_parallel):
    reference, _ = results[sequence_parallel, "none", 1]
    for recompute, every in RECOMPUTE[1:]:
        grads, _ = results[sequence_parallel, recompute, every]
        for name, grad in reference.items():
            torch.testing.assert_close(grads[name], grad, rtol=0, atol=0,
                                       msg=lambda m: f"{recompute}/{every} {name}: {m}")
    # Dropout really shapes these gradients: other masks, other gradients.
    other, _ = results[sequence_parallel, "other dropout seed"]
    assert not torch.equal(other["layers.0.mlp.w1.weight"], reference["layers.0.mlp.w1.weight"])


@pytest.mark.parametrize("sequence_parallel", [False, True], ids=["tp", "tp+sp"])
def test_recomputation_keeps_fewer_activations(results, sequence_parallel):
    peak = {key[1:]: value[1] for key, value in results.items()
            if key[0] == sequence_parallel and key[1] != "other dropout seed"}
    assert peak["full", 3] < peak["full", 1] < peak["selective", 1] < peak["none", 1]
