"""The memory and precision flags and profile defaults, and bad memory options rejected
with their reason."""
import pytest

from megamed.config import ConfigError, load_config, resolve
from megamed.training.arguments import parse_config


def test_memory_flags_override_profile():
    cfg, _, _ = parse_config(["--profile", "tiny", "--zero-stage", "2", "--sequence-parallel",
                              "--recompute", "full", "--recompute-every", "2", "--precision",
                              "bf16", "--bucket-mb", "0.5", "--no-overlap-grad-reduce"])
    p, t = cfg.parallel, cfg.train
    assert (p.zero_stage, p.sequence_parallel, p.bucket_mb, p.overlap_grad_reduce) == \
        (2, True, 0.5, False)
    assert (t.recompute, t.recompute_every, t.precision) == ("full", 2, "bf16")


@pytest.mark.parametrize("profile", ["medllm-32b", "m-32b"])
def test_32b_profiles_default_to_the_m32b_layout(profile):
    cfg = resolve(load_config(profile), world_size=32, device_type="cuda")
    p, t = cfg.parallel, cfg.train
    assert (p.tp, p.pp, p.dp, p.zero_stage, p.sequence_parallel, t.recompute) == \
        (4, 2, 4, 1, True, "selective")


@pytest.mark.parametrize("profile", ["tiny", "demo"])
def test_small_profiles_keep_memory_features_off(profile):
    cfg = resolve(load_config(profile), world_size=1, device_type="cpu")
    assert (cfg.parallel.zero_stage, cfg.parallel.sequence_parallel, cfg.train.recompute) == \
        (0, False, "none")


@pytest.mark.parametrize("parallel, train, world, message", [
    ({"bucket_mb": 0}, {}, 1, r"parallel.bucket_mb=0 \(--bucket-mb\) must be > 0"),
    ({"bucket_mb": 2}, {}, 1, r"parallel.bucket_mb=2 \(--bucket-mb\) holds 524,288 fp32 "
                              r"gradients, more than the whole model \(328,768 parameters"),
    ({"zero_stage": 3, "pp": 2}, {}, 2, r"parallel.zero_stage=3 \(--zero-stage 3\) with PP 2"),
    ({"zero_stage": 4}, {}, 1, r"parallel.zero_stage=4 is not one of"),
    ({}, {"precision": "fp16"}, 1, r"train.precision='fp16' \(--precision fp16\) needs a CUDA"),
    ({"tp": 2, "sequence_parallel": True}, {}, 2, None),
    ({}, {"recompute": "most"}, 1, r"train.recompute='most' is not one of"),
    ({}, {"recompute": "full", "recompute_every": 0}, 1, r"train.recompute_every must be >= 1"),
])
def test_bad_memory_options_are_rejected(parallel, train, world, message):
    cfg = load_config("tiny", {"parallel": parallel, "train": train})
    if message is None:  # seq 64 divides by TP 2: accepted; 63 does not
        resolve(cfg, world, device_type="cpu")
        cfg = load_config("tiny", {"parallel": parallel, "train": train,
                                   "model": {"seq_length": 63}})
        message = r"sequence_parallel needs model.seq_length 63 divisible by TP 2"
    with pytest.raises(ConfigError, match=message):
        resolve(cfg, world, device_type="cpu")
