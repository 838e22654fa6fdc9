"""Validation (--eval-interval): val_loss against a plain-torch cross-entropy over the
held-out samples, the same on every layout, training untouched by it, and held-out samples
never in a training batch (token files and shards)."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from curves import LOSS_RTOL
from distributed import run_distributed
from megamed.config import ConfigError, load_config, resolve
from megamed.data.sampler import held_out_samples
from megamed.data.synthetic import SyntheticBigramDataset
from megamed.data.tokens import TokenFileDataset
from megamed.model.build import build_chunks
from megamed.parallel.pipeline import dry_run, forward_only
from megamed.parallel.random import seed_streams
from megamed.parallel.state import ParallelState
from megamed.training.arguments import parse_config
from megamed.monitoring.prometheus import PrometheusExporter
from megamed.training.metrics import MetricsLogger
from megamed.training.telemetry import step_metrics
from megamed.training.trainer import pretrain

STEPS, EVAL_ITERS, SEED = 2, 2, 5
VAL_RTOL = 1e-5  # fp32 forward over the same samples; layouts differ by summation order


def tiny(parallel=None, train=None, model=None, data=None):
    return load_config("tiny", {"parallel": parallel or {}, "model": model or {},
                                "data": data or {},
                                "train": {"steps": STEPS, "seed": SEED, "log_interval": 100,
                                          "eval_iters": EVAL_ITERS, **(train or {})}})


def _records(cfg, metrics_jsonl=None):
    return pretrain(cfg, metrics_jsonl=metrics_jsonl)


# -- val_loss is the cross-entropy of the model over the held-out samples ---------------------

def _val_and_reference(cfg, rows):
    """(the trainer's val_loss at step 1 with lr 0, i.e. on the initial model; plain torch
    cross-entropy of a freshly built single-process model over `rows` [n, seq + 1])."""
    records = pretrain(cfg)
    cfg = resolve(cfg, 1, "cpu")
    state = ParallelState.create(1, 1)
    rng = seed_streams(cfg.train.seed, 0, 0)
    chunk = build_chunks(cfg, state.tp_group, 0, torch.device("cpu"), rng,
                         seed=cfg.train.seed)[0]
    rows = torch.from_numpy(rows)
    with torch.no_grad():
        logits = chunk(rows[:, :-1])[..., :cfg.model.vocab_size]
    reference = F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten())
    return records[0]["val_loss"], float(reference)


def _cases(cases):
    return [_val_and_reference(cfg, rows) for cfg, rows in cases]  # one process launch


FROZEN = {"lr": 0.0, "min_lr": 0.0, "eval_interval": 1, "steps": 1}  # the initial model


def test_val_loss_equals_torch_cross_entropy_over_the_held_out_samples(tmp_path):
    """Synthetic stream: its reserved range; token files: the held-out fraction, rows
    sliced from the file here."""
    cfg = tiny(train=FROZEN)
    m, n, s = cfg.model, EVAL_ITERS * cfg.train.global_batch, cfg.model.seq_length
    stream = SyntheticBigramDataset(m.vocab_size, m.seq_length, SEED)
    synthetic = np.stack([stream[(1 << 62) + i] for i in range(n)])
    tokens = np.random.default_rng(0).integers(0, m.vocab_size, 80 * s + 1)
    np.save(tmp_path / "corpus.npy", tokens.astype(np.uint16))
    files = tiny(train=FROZEN, data={"path": str(tmp_path / "*.npy"), "source": "tokens",
                                     "eval_fraction": 0.25})
    held = held_out_samples(80, 0.25)[:n]
    sliced = np.stack([tokens[j * s:(j + 1) * s + 1] for j in held]).astype(np.int64)
    for val, reference in run_distributed(_cases, 1, [(cfg, synthetic), (files, sliced)])[0]:
        assert val == pytest.approx(reference, rel=VAL_RTOL)


# -- layout invariance -------------------------------------------------------------------------

EVAL = {"eval_interval": 2}  # validation after the second step only


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    path = tmp_path_factory.mktemp("metrics") / "m.jsonl"
    records = run_distributed(_records, 1, tiny(train=EVAL), str(path))[0]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return records, lines


def _assert_same_val(got, expected):
    assert [("val_loss" in r) for r in got] == [("val_loss" in r) for r in expected]
    for g, e in zip(got, expected):
        assert g["loss"] == pytest.approx(e["loss"], rel=LOSS_RTOL), g["step"]
        if "val_loss" in e:
            assert g["val_loss"] == pytest.approx(e["val_loss"], rel=VAL_RTOL), g["step"]


def test_val_loss_in_the_metrics_jsonl_on_evaluation_steps_only(single):
    records, lines = single
    assert ["val_loss" in r for r in lines] == [False, True]
    assert lines[1]["val_loss"] == records[1]["val_loss"]
    assert lines[1]["val_ppl"] == pytest.approx(math.exp(lines[1]["val_loss"]), rel=1e-12)


# Both 4-process layouts, one after another in one launch.
WORLD_4 = {"tp2_pp2_vp2": {"tp": 2, "pp": 2, "virtual_stages": 2},
           "tp2_dp2_sp_zero3": {"tp": 2, "sequence_parallel": True, "zero_stage": 3}}


def _world_4():
    return {name: _records(tiny(parallel, EVAL)) for name, parallel in WORLD_4.items()}


@pytest.fixture(scope="module")
def world_4():
    return run_distributed(_world_4, 4)[0]


def test_tp2_pp2_with_virtual_stages_gives_the_single_process_val_loss(single, world_4):
    _assert_same_val(world_4["tp2_pp2_vp2"], single[0])


def test_tp2_dp2_sequence_parallel_zero3_gives_the_single_process_val_loss(single, world_4):
    _assert_same_val(world_4["tp2_dp2_sp_zero3"], single[0])


# -- validation leaves training alone ------------------------------------------------------------

def _with_and_without(cfg, no_eval):
    return pretrain(cfg), pretrain(no_eval)  # pretrain reseeds every stream: same start


def test_evaluation_does_not_change_the_training_curve_bitwise():
    """Dropout on (the default and the tensor-parallel streams drawn every step) and PP2:
    the training losses and norms of a run that validates every step equal those of one
    that never does, bit for bit."""
    dropout = {"hidden_dropout": 0.1, "attention_dropout": 0.1}
    with_eval, without = run_distributed(
        _with_and_without, 2, tiny({"pp": 2}, {"eval_interval": 1, "steps": 3}, dropout),
        tiny({"pp": 2}, {"steps": 3}, dropout))[0]
    assert [(r["loss"], r["grad_norm"]) for r in with_eval] == \
        [(r["loss"], r["grad_norm"]) for r in without]
    assert all("val_loss" in r for r in with_eval) and not any("val_loss" in r for r in without)


# -- held-out samples never reach training -------------------------------------------------------

def test_token_file_split_is_disjoint_and_seed_independent(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(101 * 16 + 1, dtype=np.uint16) % 50)
    pattern = str(tmp_path / "*.npy")
    plain = TokenFileDataset(pattern, 50, 16, seed=1)
    for seed in (1, 2):
        train = TokenFileDataset(pattern, 50, 16, seed, eval_fraction=0.1)
        held = train.held_out()
        assert len(held) == 10 and len(train) == 91
        assert not set(train.order) & set(held.order)
        assert sorted([*train.order, *held.order]) == list(range(101))
        assert list(held.order) == list(held_out_samples(101, 0.1))  # same for every seed
    # Without a fraction the training order is what it always was.
    assert list(TokenFileDataset(pattern, 50, 16, seed=1, eval_fraction=0.0).order) == \
        list(plain.order)


def test_held_out_fraction_bounds():
    assert len(held_out_samples(1000, 0.0)) == 0
    assert len(held_out_samples(10, 0.001)) == 1  # a fraction > 0 holds out at least one
    with pytest.raises(ValueError, match="leaves none to train on"):
        held_out_samples(3, 0.9)


def test_validation_needs_held_out_token_samples(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(1000, dtype=np.uint16))
    cfg = tiny(train={"eval_interval": 5}, data={"path": str(tmp_path / "*.npy"),
                                                 "source": "tokens"})
    with pytest.raises(ConfigError, match="--eval-fraction F .* or --eval-data GLOB"):
        resolve(cfg, 1, "cpu")
    with pytest.raises(ConfigError, match=r"--eval-fraction\) must be in \[0, 1\)"):
        resolve(tiny(data={"eval_fraction": 1.5}), 1, "cpu")


def test_cli_flags_reach_the_config():
    cfg, _, _ = parse_config(["--profile", "tiny", "--eval-interval", "50", "--eval-iters",
                              "3", "--eval-fraction", "0.02", "--eval-data", "held/*.npy"])
    assert (cfg.train.eval_interval, cfg.train.eval_iters) == (50, 3)
    assert (cfg.data.eval_fraction, cfg.data.eval_path) == (0.02, "held/*.npy")


def test_progress_line_shows_val_loss_and_ppl(capsys):
    logger = MetricsLogger(None, 10, 1.0, 1, log_interval=100)
    record = logger.log(3, 2.0, 1e-3, 0.5, 64, 1.0, 192,
                        validation={"val_loss": 1.5, "val_ppl": math.exp(1.5)})
    assert record["val_loss"] == 1.5
    assert "| val_loss 1.5000 | val_ppl 4.48 |" in capsys.readouterr().out


def test_forward_only_runs_every_chunk_of_every_micro_batch_once():
    for pp, vp, micro in [(1, 1, 3), (2, 1, 5), (4, 2, 8), (2, 2, 4)]:
        for events in dry_run(pp, vp, micro, forward_only):
            assert sorted(events) == sorted(("F", m, c) for m in range(micro)
                                            for c in range(vp))


def _gauges(exporter):
    return {s.name: s.value for f in exporter.registry.collect() for s in f.samples}


def test_val_loss_reaches_prometheus_from_the_step_record():
    exporter = PrometheusExporter()
    assert math.isnan(_gauges(exporter)["megamed_val_loss"])  # before the first validation
    record = {"step": 2, "step_time_s": 1.0, "loss": 2.0, "lr": 1e-3, "grad_norm": 1.0,
              "val_loss": 1.5, "val_ppl": math.exp(1.5)}
    exporter.step(step_metrics(record, 0.0))
    gauges = _gauges(exporter)
    assert (gauges["megamed_val_loss"], gauges["megamed_val_ppl"]) == (1.5, math.exp(1.5))
