"""Training on the demo corpus's real shards (pydicom's CT, MR and ECG files, de-identified
and sharded by the same code `examples/pretrain_32b.py` runs on first use), tiny-mm model:

- TP2 x PP2 x DP2 (8 processes) and DP2 (2 processes, reader processes on) give the
  single-process losses (fp32, relative 1e-4);
- the corpus has 5 shards, not divisible by DP 2: every rank reads G / DP samples a step,
  the DP ranks' samples together are the single-process global batch, and the TP ranks of
  one DP rank and the first and last pipeline stages read the same samples;
- a run stopped after step 2 and resumed with --load reads the same batches and gives the
  same losses as the uninterrupted run; the checkpoint holds the consumed samples;
- the tokenizer sets the vocabulary and the placeholder ids; shards whose arrays the
  encoders cannot take are refused before training (make_shards --model-profile writes ones
  they can); another global batch on resume is refused; no planted PHI is in the cache;
- the data flags' errors are one line and exit status 2.
"""
import dataclasses
from pathlib import Path

import pytest
import torch

from curves import assert_same_curve
from distributed import run_distributed
from megamed.config import ConfigError, load_config
from megamed.data.demo import PLANTED_PHI
from megamed.data.tokenizer import Tokenizer
from megamed.training import shard_data
from megamed.training.trainer import pretrain

STEPS, RESUME_AT, GLOBAL_BATCH = 4, 2, 8


def config(shards, parallel=None, data=None, steps=STEPS):
    return load_config("tiny-mm", {
        "model": {"vocab_size": 512},  # the tokenizer's bound; the real size comes from it
        "parallel": parallel or {},
        "train": {"steps": steps, "seed": 7, "log_interval": 100, "global_batch": GLOBAL_BATCH,
                  "micro_batch": 1},  # 2 micro batches per DP rank at DP4 (PP2 needs 2)
        "data": {"source": "shards", "shards": shards, "loader_workers": 0, **(data or {})}})


def recorded_run(cfg, save=None, load=None, save_interval=0):
    """(loss, grad norm) per step, and {step: [sample ids of each micro batch]} this rank read."""
    seen = {}
    read_step = shard_data.ShardSource._read_step

    def recording(self, step):
        batches = read_step(self, step)
        seen[step] = [b.sample_ids.tolist() for b in batches]
        return batches

    shard_data.ShardSource._read_step = recording
    try:
        cfg = cfg.replace(train={"save_interval": save_interval})
        records = pretrain(cfg, save=save, load=load)
    finally:
        shard_data.ShardSource._read_step = read_step
    return [(r["loss"], r["grad_norm"]) for r in records], seen


def single_worker(shards):
    return recorded_run(config(shards))


def dp2_resume_worker(shards, ckpt):
    """DP2 with one reader process per rank: the whole run (saving after step 2), then the
    run resumed from that checkpoint as if the job had died after step 2."""
    cfg = config(shards, data={"loader_workers": 1, "loader_prefetch": 2})
    full = recorded_run(cfg, save=ckpt, save_interval=RESUME_AT)
    (Path(ckpt) / "latest").write_text(f"step_{RESUME_AT:07d}\n")
    payload = torch.load(Path(ckpt) / f"step_{RESUME_AT:07d}" / "tp00_pp00.pt",
                         weights_only=False)
    resumed = recorded_run(cfg, load=ckpt)
    return {"full": full, "resumed": resumed, "data_state": payload.get("data")}


def layout_worker(shards):
    return recorded_run(config(shards, {"tp": 2, "pp": 2}))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The demo corpus for tiny-mm's encoders, built as the entry point builds it."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEGAMED_CACHE", str(cache))
        folder = shard_data.demo_corpus(config(None).model)
        assert shard_data.demo_corpus(config(None).model) == folder  # built once, reused
    return str(folder)


@pytest.fixture(scope="module")
def reference(shards):
    return run_distributed(single_worker, 1, shards)[0]


def global_batches(per_rank_seen):
    """{step: sample ids of the global batch} from each DP rank's reads, in DP order."""
    return {step: [i for seen in per_rank_seen for micro in seen[step] for i in micro]
            for step in per_rank_seen[0]}


def test_tokenizer_sets_vocab_and_placeholders_and_loss_falls(shards, reference):
    cfg = shard_data.prepare_data(config(shards))
    tokenizer = Tokenizer(cfg.data.tokenizer)
    assert cfg.model.vocab_size == tokenizer.vocab_size
    assert cfg.model.image_encoder.placeholder_id == tokenizer.image_id
    assert cfg.model.ecg_encoder.placeholder_id == tokenizer.ecg_id
    losses = [loss for loss, _ in reference[0]]
    assert losses[-1] < losses[0], losses
    assert len(list(Path(shards).glob("shard-*.tar"))) == 5  # divisible by neither DP below


def test_tp2_pp2_dp2_reproduces_single_process_with_uneven_shards(shards, reference):
    ranks = run_distributed(layout_worker, 8, shards)
    assert_same_curve(ranks[0][0], reference[0], STEPS)
    # Ranks: TP fastest, then DP, then PP. Stage 0 (ranks 0-3) reads inputs, stage 1
    # (ranks 4-7) labels; TP rank 1 of each DP rank reads what TP rank 0 reads.
    seen = [r[1] for r in ranks]
    for r in range(8):
        assert all(sum(map(len, seen[r][s])) == GLOBAL_BATCH // 2 for s in range(STEPS))
        assert seen[r] == seen[r - r % 2]
    expected = global_batches([reference[1]])
    assert global_batches([seen[0], seen[2]]) == global_batches([seen[4], seen[6]]) == expected


def test_dp2_and_resume_give_the_same_batches_and_losses(shards, reference, tmp_path):
    ranks = run_distributed(dp2_resume_worker, 2, shards, str(tmp_path))
    full, resumed = ranks[0]["full"], ranks[0]["resumed"]
    assert_same_curve(full[0], reference[0], STEPS)
    assert global_batches([r["full"][1] for r in ranks]) == global_batches([reference[1]])
    assert ranks[0]["data_state"]["consumed_samples"] == RESUME_AT * GLOBAL_BATCH
    assert resumed[0] == full[0][RESUME_AT:]  # bit-identical: same data, same state
    for r in ranks:
        assert r["resumed"][1] == {s: r["full"][1][s] for s in range(RESUME_AT, STEPS)}


def test_shards_the_encoders_cannot_take_are_refused(shards):
    other = dataclasses.replace(config(shards).model.image_encoder, shape=(8, 16, 16))
    cfg = config(shards).replace(model={"image_encoder": other})
    with pytest.raises(ConfigError, match=r"manifest.json: the shards hold image arrays "
                                          r"\[2, 4, 16, 16\], the profile's image encoder "
                                          r"takes \[2, 8, 16, 16\]"):
        shard_data.prepare_data(cfg)


def test_no_planted_phi_in_the_cached_corpus(shards):
    """Everything training reads (shards, manifest, tokenizer); the raw input is not read."""
    root = Path(shards).parent
    files = [p for p in root.rglob("*") if p.is_file() and "raw" not in p.relative_to(root).parts]
    assert any(p.name == "tokenizer.model" for p in files) and len(files) > 5
    for path in files:
        data = path.read_bytes()
        for phi in PLANTED_PHI:
            assert phi.encode() not in data, f"planted PHI {phi!r} in {path.name}"


def _entry_point():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "pretrain_32b", Path(__file__).resolve().parents[2] / "examples" / "pretrain_32b.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("flags, message", [
    (["--data-shards", "/nonexistent"], "(--data-shards): no manifest.json in this folder"),
    (["--tokenizer", "/nonexistent.model"], "(--tokenizer): no such file"),
    (["--max-skip-fraction", "1.5"], "(--max-skip-fraction) must be in [0, 1)"),
    (["--loader-workers", "-1"], "data.loader_workers (-1) must be >= 0"),
])
def test_data_flag_errors_are_one_line_and_exit_2(flags, message, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert _entry_point()(["--profile", "tiny-mm", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_make_shards_model_profile_writes_shards_the_model_takes(shards, tmp_path):
    """tools/make_shards.py --model-profile: shards whose arrays fit that profile's encoders
    (the default preset's 256 x 256 slices would be refused, as above)."""
    import importlib.util
    root = Path(shards).parent
    spec = importlib.util.spec_from_file_location(
        "make_shards", Path(__file__).resolve().parents[2] / "tools" / "make_shards.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "shards"
    assert tool.main([str(root / "raw"), str(out), "--key-file", str(root / "demo.key"),
                      "--model-profile", "tiny-mm", "--tokenizer",
                      str(root / "tokenizer.model"), "--no-progress"]) == 0
    cfg = shard_data.prepare_data(config(str(out)))
    assert cfg.data.tokenizer == str(root / "tokenizer.model")
    refused = load_config("demo", {"data": {"shards": str(out)}})
    with pytest.raises(ConfigError, match="--model-profile demo"):
        shard_data.prepare_data(refused)


def test_resume_with_another_global_batch_is_refused(shards):
    from megamed.data.batch import INPUTS
    from megamed.data.loader import LoaderStateError, ShardLoader

    def source(global_batch):
        cfg = shard_data.prepare_data(config(shards)).replace(
            train={"global_batch": global_batch})
        loader = ShardLoader(shards, Tokenizer(cfg.data.tokenizer), shard_data.loader_config(cfg))
        return shard_data.ShardSource(loader, "cpu")

    saved = source(8)
    saved.micro_batch(0, 0, INPUTS)
    saved.micro_batch(1, 0, frozenset())  # a middle stage's call still counts the step
    assert saved.state_dict()["consumed_samples"] == 16
    resumed = source(8)
    resumed.load_state_dict(saved.state_dict())
    assert torch.equal(resumed.micro_batch(2, 1, INPUTS).tokens,
                       source(8).micro_batch(2, 1, INPUTS).tokens)
    with pytest.raises(LoaderStateError, match="global batch 8, this run's is 4"):
        source(4).load_state_dict(saved.state_dict())
