"""Per-rank optimizer-state sizes computed from the meta-built model."""
from megamed.config import (bucket_elements, count_parameters, count_parameters_by_part,
                            load_config, media_parameters_per_rank, resolve)
from megamed.parallel.data import ALIGN
from megamed.training.memory import optimizer_state_per_rank


def test_optimizer_state_of_medllm_32b_at_m32b_layout():
    """Per-rank sizes from the meta-built model against the parameter formula: every stage
    holds its parameters once (bf16) with fp32 main gradients, and 1/DP of the fp32 master
    weights and moments, padding aside."""
    cfg = resolve(load_config("m-32b"), world_size=32, device_type="cuda")
    rows = optimizer_state_per_rank(cfg)
    m, tp, dp = cfg.model, cfg.parallel.tp, cfg.parallel.dp
    total = count_parameters(m, tp)
    norms = (2 * m.num_layers + 1) * m.hidden_size  # replicated on every TP rank
    # + the encoders' replicated parameters (patch embeddings, positions, norms, biases)
    media = total - count_parameters_by_part(m, tp)["decoder"]
    norms += round((media_parameters_per_rank(m, tp) - media / tp) * tp / (tp - 1))
    padding = sum(r["buckets"] for r in rows) * dp * ALIGN
    excess = sum(r["params"] for r in rows) * tp - total - (tp - 1) * norms
    assert 0 <= excess <= tp * padding
    for r in rows:
        assert r["main_grads"] == r["params"]
        assert r["master"] == r["exp_avg"] == r["exp_avg_sq"]
        assert 0 <= r["exp_avg"] * dp - r["params"] < r["buckets"] * dp * ALIGN
    assert bucket_elements(cfg.parallel.bucket_mb) == 40 * 2**20 // 4
