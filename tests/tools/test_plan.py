"""The planner's numbers against the real model (built on the meta device, no memory)."""
import json
import sys
from pathlib import Path

import pytest

from megamed.config import count_parameters, load_config
from megamed.model.build import meta_chunks
from megamed.parallel import collectives as C

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import plan  # noqa: E402


@pytest.mark.parametrize("tp, pp", [(4, 2), (8, 2), (2, 4)])
def test_stage_parameters_match_the_built_stage(monkeypatch, tp, pp):
    monkeypatch.setattr(C, "group_size", lambda g: tp)
    monkeypatch.setattr(C, "group_rank", lambda g: 0)
    cfg = load_config("medllm-32b", {"parallel": {"tp": tp, "pp": pp}})
    m = cfg.model
    first = meta_chunks(cfg, 0)[0]  # with the encoders and projectors
    real = sum(p.numel() for p in first.parameters())
    assert plan.stage_parameters(m, tp, pp) == pytest.approx(real, rel=1e-3)


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
    assert m32["fits"] and m32["dp"] == 4
    assert m32["total_gb"] == pytest.approx(m32["weights_gb"] + m32["grads_gb"] +
                                            m32["optimizer_gb"] + m32["activations_gb"])


def test_zero1_divides_optimizer_state_by_dp():
    m = load_config("medllm-32b").model
    gpu = plan.GPUS["h200"]
    plain = plan.plan_layout(m, gpu, 32, 4, 2, 1, 512, "selective", zero=0)
    sharded = plan.plan_layout(m, gpu, 32, 4, 2, 1, 512, "selective", zero=1)
    assert sharded.optimizer_gb == pytest.approx(plain.optimizer_gb / 4)
