"""Resharding a checkpoint: a run saved on TP2 x DP2 (ZeRO-1, small buckets) and converted
to PP2 x DP2 (ZeRO-2) continues the uninterrupted run's loss curve; a checkpoint converted
to interleaved PP2 (ZeRO-0) and back equals the original; a missing shard is named with
the rank that wrote it. The embeddings are tied, so the last stage's copy of the embedding
is written and read too."""
import json
import sys
from pathlib import Path

import pytest
import torch

from distributed import run_distributed
from megamed.config import load_config
from megamed.checkpoint import CheckpointError, reshard
from megamed.training.trainer import pretrain

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import convert_checkpoint  # noqa: E402  (the CLI; its work is megamed.checkpoint.reshard)


def _train(parallel, steps, save=None, load=None, save_interval=0):
    cfg = load_config("tiny", {"parallel": parallel, "model": {"tie_embeddings": True},
                               "train": {"steps": steps, "seed": 5, "log_interval": 100,
                                         "save_interval": save_interval}})
    return [r["loss"] for r in pretrain(cfg, save=save, load=load)]


A = {"tp": 2, "zero_stage": 1, "bucket_mb": 0.05}
B = {"pp": 2, "zero_stage": 2, "bucket_mb": 0.1}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Layout A trained 8 steps, saving every 4; `latest` points back at step 4."""
    src = tmp_path_factory.mktemp("tp2_dp2")
    full = run_distributed(_train, 4, A, 8, str(src), None, 4)[0]
    (src / "latest").write_text("step_0000004\n")
    return src, full


def test_resume_on_another_layout_continues_the_curve(saved, tmp_path):
    src, full = saved
    reshard(str(src), str(tmp_path), tp=1, pp=2, dp=2, zero_stage=2, bucket_mb=0.1,
            log=lambda msg: None)
    resumed = run_distributed(_train, 4, B, 8, None, str(tmp_path))[0]
    assert len(resumed) == 4
    for step, (loss, ref) in enumerate(zip(resumed, full[4:]), 5):
        assert abs(loss - ref) <= 1e-5 * abs(ref), f"step {step}: {loss} vs {ref}"


def test_round_trip_through_interleaved_zero0_is_exact(saved, tmp_path):
    src, _ = saved
    mid, back = tmp_path / "mid", tmp_path / "back"
    quiet = dict(log=lambda msg: None)
    reshard(str(src), str(mid), tp=1, pp=2, dp=1, zero_stage=0, virtual_stages=2, **quiet)
    reshard(str(mid), str(back), tp=2, pp=1, dp=2, zero_stage=1, bucket_mb=0.05,
            virtual_stages=1, **quiet)
    for f in sorted((src / "step_0000004").glob("*.pt")):
        a = torch.load(f, weights_only=False)
        b = torch.load(back / "step_0000004" / f.name, weights_only=False)
        if "model" in a:
            for ca, cb in zip(a["model"], b["model"]):
                assert ca.keys() == cb.keys()
                for k in ca:
                    assert torch.equal(ca[k], cb[k]), (f.name, k)
        oa, ob = a.get("optimizer"), b.get("optimizer")
        if oa is not None:
            assert oa["numels"] == ob["numels"] and oa["steps"] == ob["steps"]
            for sa, sb in zip(oa["shards"], ob["shards"]):
                for m in ("master", "exp_avg", "exp_avg_sq"):
                    assert torch.equal(sa[m], sb[m]), (f.name, m)


def test_missing_shard_is_named(saved, tmp_path):
    src, _ = saved
    broken = tmp_path / "src"
    (broken / "step_0000004").mkdir(parents=True)
    (broken / "latest").write_text("step_0000004\n")
    for f in (src / "step_0000004").iterdir():
        if f.name != "tp01_pp00_dp01.pt":
            (broken / "step_0000004" / f.name).write_bytes(f.read_bytes())
    writer = json.loads((src / "step_0000004" / "meta.json").read_text())["files"][
        "tp01_pp00_dp01.pt"]["rank"]
    assert writer == 3  # TP rank 1 of DP rank 1
    with pytest.raises(CheckpointError,
                       match=r"tp01_pp00_dp01.pt: shard missing \(written by rank 3\)"):
        reshard(str(broken), str(tmp_path / "dst"), tp=1, pp=2, dp=2, log=lambda msg: None)
    assert convert_checkpoint.main([str(broken), str(tmp_path / "dst"), "--tp", "1", "--pp",
                                    "2", "--dp", "2"]) == 1
