"""The pipeline partition counts the encoders' FLOPs on stage 0 (issue 13): without
encoders it is Megatron's equal assignment; with them stage 0 holds fewer decoder layers,
the same split everywhere it is used (build_chunks, the memory calculator, the start-up
table)."""
import pytest

from megamed.config import load_config, resolve
from megamed.model.build import meta_chunks
from megamed.model.flops import encoder_cost_in_layers, encoder_flops_per_sample, \
    layer_flops_per_token
from megamed.parallel.pipeline import describe_partition, partition
from megamed.training.memory import optimizer_state_per_rank


def megatron(num_layers, pp, v, stage, chunk):
    """Megatron-LM's assignment: virtual stage c * P + s holds L / (P V) layers in order."""
    per = num_layers // (pp * v)
    return range((chunk * pp + stage) * per, (chunk * pp + stage + 1) * per)


def stage_cost(layers, stage, encoder_layers):
    return sum(len(r) for r in layers[stage]) + (encoder_layers if stage == 0 else 0)


@pytest.mark.parametrize("num_layers, pp, v", [(8, 2, 1), (8, 2, 2), (8, 4, 2), (64, 4, 1),
                                               (64, 2, 4), (12, 3, 1), (5, 1, 1)])
def test_without_encoders_it_is_megatrons_equal_split(num_layers, pp, v):
    layers = partition(num_layers, pp, v)
    assert layers == [[megatron(num_layers, pp, v, s, c) for c in range(v)]
                      for s in range(pp)]


@pytest.mark.parametrize("num_layers, pp, v", [(8, 2, 1), (8, 2, 2), (64, 4, 1), (64, 4, 2),
                                               (30, 3, 2)])
@pytest.mark.parametrize("encoder_layers", [0.4, 1.0, 2.5, 7.0, 100.0])
def test_encoders_take_layers_off_stage_0_and_balance_the_busiest_stage(num_layers, pp, v,
                                                                          encoder_layers):
    layers = partition(num_layers, pp, v, encoder_layers)
    # Every layer once, in virtual-stage order (chunk c of stage s is c * P + s), none empty.
    ordered = [layers[s][c] for c in range(v) for s in range(pp)]
    assert [i for r in ordered for i in r] == list(range(num_layers))
    assert all(len(r) >= 1 for r in ordered)
    busiest = max(stage_cost(layers, s, encoder_layers) for s in range(pp))
    # No other split with stage 0 holding n layers (the rest even) has a busier stage.
    for n in range(v, num_layers - (pp - 1) * v + 1):
        rest = -(-(num_layers - n) // (pp - 1))
        assert busiest <= max(n + encoder_layers, rest)
    # More encoder cost never gives stage 0 more layers.
    cheaper = partition(num_layers, pp, v, encoder_layers / 2)
    assert sum(map(len, layers[0])) <= sum(map(len, cheaper[0]))


def test_a_costly_encoder_moves_layers_and_every_user_agrees():
    # tiny-mm with a 16-layer ECG encoder: worth ~3.4 decoder layers of FLOPs.
    cfg = load_config("tiny-mm", {"parallel": {"pp": 2, "virtual_stages": 2}})
    ecg = {**cfg.model.ecg_encoder.__dict__, "num_layers": 16}
    cfg = resolve(load_config("tiny-mm", {"parallel": {"pp": 2, "virtual_stages": 2},
                                          "model": {"ecg_encoder": ecg}}), 2, "cpu")
    m = cfg.model
    cost = encoder_cost_in_layers(m)
    encoders = sum(encoder_flops_per_sample(e, m.hidden_size) for e in m.encoders().values())
    assert cost == pytest.approx(encoders / (layer_flops_per_token(m) * m.seq_length))
    assert 2 < cost < 5
    layers = partition(m.num_layers, 2, 2, cost)
    assert [list(r) for r in layers[0]] == [[0], [4]]  # 2 of 8 layers on stage 0
    for stage in range(2):  # the model built for the stage holds exactly those layers
        built = [sorted(int(k) for k in chunk.layers) for chunk in meta_chunks(cfg, stage)]
        assert built == [list(r) for r in layers[stage]]
    # The memory calculator builds the same chunks: stage 0 holds the encoders and 2
    # decoder layers, stage 1 six layers and the output layer.
    rows = optimizer_state_per_rank(cfg)
    sizes = [sum(p.numel() for c in meta_chunks(cfg, s) for p in c.parameters())
             for s in range(2)]
    assert [r["params"] for r in rows] == pytest.approx(sizes, rel=0.01)
    table = describe_partition(m.num_layers, 2, 2, False, cost)
    assert "stage 0: chunk 0: layers 0-0; chunk 1: layers 4-4" in table
    assert f"the encoders cost {cost:.2f} decoder layers" in table
