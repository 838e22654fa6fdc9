"""Layout invariance, the project's core property: the same seed, data and global batch on
any TP x PP x DP layout reproduce the single-process loss curve (fp32, relative 1e-4 per
step; gradient norms to 1e-3)."""
import pytest

from curves import assert_same_curve
from distributed import run_distributed
from megamed.config import load_config
from megamed.training.trainer import pretrain

STEPS = 8


def run(world, tp=1, pp=1, vp=1, model=None):
    return run_distributed(_losses, world, tp, pp, vp, model or {})[0]


def _losses(tp, pp, vp, model):
    cfg = load_config("tiny", {"parallel": {"tp": tp, "pp": pp, "virtual_stages": vp},
                               "train": {"steps": STEPS, "seed": 7, "log_interval": 100},
                               "model": model})
    records = pretrain(cfg)
    return [(r["loss"], r["grad_norm"]) for r in records]


@pytest.fixture(scope="module")
def reference():
    return run(1, 1)



def test_single_process_loss_falls(reference):
    losses = [loss for loss, _ in reference]
    assert losses[-1] < losses[0] - 0.3, losses


def test_tp2_dp2_reproduces_single_process(reference):
    assert_same_curve(run(4, 2), reference, STEPS)


def test_pp2_dp2_reproduces_single_process(reference):
    assert_same_curve(run(4, pp=2), reference, STEPS)


def test_tp2_pp2_dp2_reproduces_single_process(reference):
    assert_same_curve(run(8, tp=2, pp=2), reference, STEPS)


def test_interleaved_pp4_reproduces_single_process(reference):
    assert_same_curve(run(4, pp=4, vp=2), reference, STEPS)


def test_pp2_with_tied_embeddings_reproduces_single_process():
    tied = {"tie_embeddings": True}
    assert_same_curve(run(2, pp=2, model=tied), run(1, model=tied), STEPS)
