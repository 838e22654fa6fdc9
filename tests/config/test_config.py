"""Profiles load, flags override them, and every inconsistency is rejected with its arithmetic."""
import pytest

from megamed.config import (ConfigError, count_parameters, count_parameters_by_part, load_config,
                            resolve)
from megamed.model.build import meta_chunks
from megamed.model.multimodal import part_of
from megamed.training.arguments import parse_config


def tiny(**train):
    return load_config("tiny", {"train": train})


def test_tiny_profile_matches_the_issue():
    m = load_config("tiny").model
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads) == (8, 64, 4, 2)
    assert (m.vocab_size, m.seq_length, m.norm, m.activation) == (256, 64, "rmsnorm", "swiglu")


def test_flags_override_profile():
    cfg, args, _ = parse_config(["--profile", "tiny", "--tp", "2", "--steps", "3",
                                 "--seed", "7", "--lr", "0.5"])
    assert (cfg.parallel.tp, cfg.train.steps, cfg.train.seed, cfg.train.lr) == (2, 3, 7, 0.5)
    assert cfg.model.hidden_size == 64


def test_hardware_profile_inherits_model():
    assert load_config("m-32b").model == load_config("medllm-32b").model


def test_seed_batch_arithmetic_is_rejected():
    # The seed plan: global batch 1024 with micro 4 x accumulation 32 on DP 4 (= 512).
    cfg = load_config("medllm-32b", {"train": {"global_batch": 1024, "micro_batch": 4,
                                               "grad_accum_steps": 32},
                                     "parallel": {"tp": 4, "pp": 2}})
    with pytest.raises(ConfigError, match=r"1024 != .* 4 x 32 x 4 = 512"):
        resolve(cfg, world_size=32)


def test_batch_not_divisible():
    with pytest.raises(ConfigError, match=r"global batch 8 is not divisible by .* 3"):
        resolve(tiny(micro_batch=3), world_size=1)


def test_accumulation_is_derived():
    cfg = tiny(micro_batch=2)
    cfg = resolve(cfg, world_size=2)
    assert cfg.train.grad_accum_steps == 2 and cfg.parallel.dp == 2


@pytest.mark.parametrize("tp, what", [(3, "num_heads 4 is not divisible by TP 3"),
                                      (4, "num_kv_heads 2 is not divisible by TP 4")])
def test_heads_divisible_by_tp(tp, what):
    cfg = load_config("tiny", {"parallel": {"tp": tp}})
    with pytest.raises(ConfigError, match=what):
        resolve(cfg, world_size=tp * 2)


def test_layers_divisible_by_stages():
    cfg = load_config("tiny", {"parallel": {"pp": 3}})
    with pytest.raises(ConfigError, match=r"num_layers 8 is not divisible by PP x virtual "
                                          r"stages = 3 x 1 = 3"):
        resolve(cfg, world_size=3)


def test_world_size_must_match_layout():
    cfg = load_config("tiny", {"parallel": {"tp": 2, "pp": 2}})
    with pytest.raises(ConfigError, match=r"world size 6 is not divisible by TP x PP"):
        resolve(cfg, world_size=6)
    cfg = load_config("tiny", {"parallel": {"tp": 2, "dp": 2}})
    with pytest.raises(ConfigError, match=r"world size 8 != TP x PP x DP = 2 x 1 x 2 = 4"):
        resolve(cfg, world_size=8)


@pytest.mark.parametrize("tp, padded", [(1, 50304), (2, 50432), (4, 50688), (8, 51200)])
def test_vocab_padding(tp, padded):
    m = load_config("seed-15b").model
    assert m.padded_vocab_size(tp) == padded
    assert padded % (128 * tp) == 0 and padded - m.vocab_size < 128 * tp


def test_unknown_profile_and_key():
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match=r"unknown keys \['hiden_size'\]"):
        load_config("tiny", {"model": {"hiden_size": 3}})


@pytest.mark.parametrize("profile", ["tiny", "tiny-mm", "demo", "poc-7b", "seed-15b",
                                     "medllm-32b"])
def test_parameter_formula_matches_real_model(profile):
    """count_parameters (printed at start-up) equals the numel of the built model, encoders
    included, and each part's count its parameters'; large profiles are built on the meta
    device, which allocates nothing."""
    cfg = load_config(profile, {"parallel": {"tp": 1, "pp": 1, "sequence_parallel": False}})
    model = meta_chunks(cfg, 0)[0]
    assert sum(p.numel() for p in model.parameters()) == count_parameters(cfg.model)
    by_part = {}
    for p in model.parameters():
        by_part[part_of(p)] = by_part.get(part_of(p), 0) + p.numel()
    assert by_part == count_parameters_by_part(cfg.model)


def test_model_sizes_are_what_the_names_say():
    assert 31.5e9 < count_parameters(load_config("medllm-32b").model) < 32.5e9
    assert 15.2e9 < count_parameters(load_config("seed-15b").model) < 15.6e9
