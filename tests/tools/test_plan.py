"""The planner's numbers against the real model (built on the meta device, no memory) and
the training run's own shapes; tools/plan.py as a command line. Measured accuracy against a
real step: tests/training/test_plan_accuracy.py."""
import json
import math
import sys
from pathlib import Path

import pytest

from megamed.config import count_parameters, count_parameters_by_part, load_config
from megamed.hardware import GPUS, gpu_by_device_name
from megamed.model.build import meta_chunks
from megamed.parallel import collectives as C
from megamed.training import planner
from megamed.training.trainer import activation_shape

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import plan  # noqa: E402


def layout(profile, gpus, tp, pp, zero=None, **train):
    cfg = load_config(profile, {"train": train})
    return planner.layout_config(cfg, gpus, tp, pp, zero)


@pytest.mark.parametrize("tp, pp", [(4, 2), (8, 2), (2, 4)])
def test_first_stage_parameters_match_the_built_stage(monkeypatch, tp, pp):
    monkeypatch.setattr(C, "group_size", lambda g: tp)
    monkeypatch.setattr(C, "group_rank", lambda g: 0)
    cfg = layout("medllm-32b", 32, tp, pp, zero=0)
    m = cfg.model
    first = meta_chunks(cfg, 0)[0]  # with the encoders and projectors
    real = sum(p.numel() for p in first.parameters())
    predicted = planner.stage_memory(cfg)[0]
    assert predicted.params / 2 == pytest.approx(real, rel=1e-3)      # bf16
    assert predicted.main_grads / 4 == pytest.approx(real, rel=1e-3)  # fp32
    assert predicted.optimizer / 12 == pytest.approx(real, rel=1e-3)  # master + 2 moments


def test_model_state_follows_the_profile_dtype_and_zero_stage():
    bf16 = planner.stage_memory(layout("medllm-32b", 32, 4, 2, zero=0))[0]
    fp32 = planner.stage_memory(layout("medllm-32b", 32, 4, 2, zero=0, precision="fp32"))[0]
    assert fp32.params == pytest.approx(2 * bf16.params)
    assert fp32.optimizer == pytest.approx(bf16.optimizer * 8 / 12)  # no separate master copy
    zero1 = planner.stage_memory(layout("medllm-32b", 32, 4, 2, zero=1))[0]
    assert zero1.optimizer == pytest.approx(bf16.optimizer / 4, rel=1e-4)  # DP 4
    zero3 = planner.stage_memory(layout("medllm-32b", 32, 4, 1, zero=3))[0]
    unsharded = planner.stage_memory(layout("medllm-32b", 32, 4, 1, zero=0))[0]
    assert zero3.main_grads == pytest.approx(unsharded.main_grads / 8, rel=1e-3)
    # ZeRO-3 holds its shard plus the stage's own unit and two blocks, gathered.
    m = load_config("medllm-32b").model
    h, L = m.hidden_size, m.num_layers
    decoder = count_parameters_by_part(m, 4)["decoder"]
    sharded = decoder - m.padded_vocab_size(4) * h * 2 - h - L * 2 * h
    block = sharded / L / 4 + 2 * h  # TP-sharded matrices, replicated norm weights
    # Encoder blocks are ZeRO-3 units of their own (LayerNorm + GELU + biases): sharded
    # matrices and column biases, replicated norms and row-parallel biases.
    encoder_blocks = sum(e.num_layers * ((4 * e.hidden_size ** 2 + 2 * e.hidden_size *
                                          e.ffn_hidden_size + 3 * e.hidden_size +
                                          e.ffn_hidden_size) / 4 + 6 * e.hidden_size)
                         for e in m.encoders().values())
    gathered = zero3.params / 2 - unsharded.params / 2 / 8
    outer = unsharded.params / 2 - m.num_layers * block - encoder_blocks
    assert gathered == pytest.approx(outer + 2 * block, rel=1e-3)


def test_activations_follow_micro_batch_sequence_parallelism_and_recompute():
    one = planner.activation_bytes(layout("seed-15b", 32, 4, 2, micro_batch=1))
    four = planner.activation_bytes(layout("seed-15b", 32, 4, 2, micro_batch=4,
                                           global_batch=2048))
    assert four[0] == pytest.approx(4 * one[0], rel=1e-3)  # rope-free: all per token
    cfg = layout("medllm-32b", 32, 4, 2)
    sp = planner.layer_activation_bytes(cfg, planner.Kernels())
    no_sp = planner.layer_activation_bytes(cfg.replace(parallel={"sequence_parallel": False}),
                                           planner.Kernels())
    assert sp < no_sp
    full = planner.activation_bytes(layout("medllm-32b", 32, 4, 2, recompute="full"))
    assert full[0] < planner.activation_bytes(layout("medllm-32b", 32, 4, 2))[0] / 10


def test_pipeline_traffic_sends_the_shapes_the_pipeline_sends():
    cfg = layout("medllm-32b", 32, 4, 2)
    M = cfg.train.grad_accum_steps
    sent = planner.traffic(cfg)
    assert sent.pp == M * math.prod(activation_shape(cfg)) * 2  # bf16 [1, 4096 / 4, 5120]


def test_dp_traffic_counts_zero_parameter_gathers():
    zero0 = planner.traffic(layout("medllm-32b", 32, 4, 2, zero=0)).dp
    zero1 = planner.traffic(layout("medllm-32b", 32, 4, 2, zero=1)).dp
    zero2 = planner.traffic(layout("medllm-32b", 32, 4, 2, zero=2)).dp
    params = planner.stage_memory(layout("medllm-32b", 32, 4, 2, zero=0))[0].params / 2
    ring = 3 / 4
    assert zero0 == pytest.approx(2 * ring * 4 * params, rel=1e-3)
    assert zero1 == pytest.approx(zero0 + ring * 2 * params, rel=1e-3)
    assert zero2 == pytest.approx(zero1 - ring * 4 * params, rel=1e-3)


def test_plan_output(tmp_path, capsys):
    out = tmp_path / "plan.json"
    plan.main(["--profile", "medllm-32b", "--gpus", "32", "--gpu", "h200", "--json", str(out)])
    text = capsys.readouterr().out
    params = count_parameters(load_config("medllm-32b").model)
    assert f"{params:,} parameters" in text
    assert f"{18 * params / 1e9:,.0f} GB before sharding" in text
    data = json.loads(out.read_text())
    layouts = {(x["tp"], x["pp"]): x for x in data["layouts"]}
    m32 = layouts[(4, 2)]  # the M-32B layout fits an H200
    assert m32["fits"] and m32["dp"] == 4 and m32["zero_stage"] == 1
    assert m32["total_gb"] == pytest.approx(m32["weights_gb"] + m32["grads_gb"] +
                                            m32["optimizer_gb"] + m32["activations_gb"])


def test_zero3_layouts_have_no_pipeline(tmp_path, capsys):
    out = tmp_path / "plan.json"
    plan.main(["--profile", "tiny", "--gpus", "8", "--gpu", "a100-80gb", "--zero", "3",
               "--json", str(out)])
    rows = json.loads(out.read_text())["layouts"]
    assert rows and all(x["pp"] == 1 and x["zero_stage"] == 3 for x in rows)


def test_help_states_the_flop_convention(capsys):
    with pytest.raises(SystemExit):
        plan.main(["--help"])
    assert "causal attention" in capsys.readouterr().out


@pytest.mark.parametrize("name, key", [("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-80GB",
                                       "a100-80gb"), ("NVIDIA A10", "a10"),
                                       ("NVIDIA H100 80GB HBM3", "h100")])
def test_one_hardware_table(name, key):
    assert gpu_by_device_name(name) is GPUS[key]
    assert gpu_by_device_name("Tesla T4") is None
