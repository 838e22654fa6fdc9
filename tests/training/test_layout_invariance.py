"""Layout invariance, the project's core property: the same seed, data and global batch on
any TP x PP x DP layout reproduce the single-process loss curve (fp32, relative 1e-4 per
step; gradient norms to 1e-3). The references run in one process launch, the layouts of
4 processes in one 4-process launch."""
import pytest

from curves import assert_same_curve
from distributed import run_distributed
from megamed.config import load_config
from megamed.training.trainer import pretrain

STEPS = 8
TIED = {"tie_embeddings": True}
# The layouts of 4 processes, run one after another in one launch (each `pretrain` builds
# its own mesh from the same 4 ranks): name -> (tp, pp, virtual stages).
WORLD_4 = {"tp2_dp2": (2, 1, 1), "pp2_dp2": (1, 2, 1), "interleaved_pp4": (1, 4, 2)}


def run(world, tp=1, pp=1, vp=1, model=None):
    return run_distributed(_losses, world, tp, pp, vp, model or {})[0]


def _losses(tp, pp, vp, model):
    cfg = load_config("tiny", {"parallel": {"tp": tp, "pp": pp, "virtual_stages": vp},
                               "train": {"steps": STEPS, "seed": 7, "log_interval": 100},
                               "model": model})
    records = pretrain(cfg)
    return [(r["loss"], r["grad_norm"]) for r in records]


def _references():
    return {"untied": _losses(1, 1, 1, {}), "tied": _losses(1, 1, 1, TIED)}


def _world_4():
    return {name: _losses(*layout, {}) for name, layout in WORLD_4.items()}


@pytest.fixture(scope="module")
def references():
    return run_distributed(_references, 1)[0]


@pytest.fixture(scope="module")
def reference(references):
    return references["untied"]


@pytest.fixture(scope="module")
def world_4():
    return run_distributed(_world_4, 4)[0]


def test_single_process_loss_falls(reference):
    losses = [loss for loss, _ in reference]
    assert losses[-1] < losses[0] - 0.3, losses


def test_tp2_dp2_reproduces_single_process(reference, world_4):
    assert_same_curve(world_4["tp2_dp2"], reference, STEPS)


def test_pp2_dp2_reproduces_single_process(reference, world_4):
    assert_same_curve(world_4["pp2_dp2"], reference, STEPS)


def test_tp2_pp2_dp2_reproduces_single_process(reference):
    assert_same_curve(run(8, tp=2, pp=2), reference, STEPS)


def test_interleaved_pp4_reproduces_single_process(reference, world_4):
    assert_same_curve(world_4["interleaved_pp4"], reference, STEPS)


def test_pp2_with_tied_embeddings_reproduces_single_process(references):
    assert_same_curve(run(2, pp=2, model=TIED), references["tied"], STEPS)
