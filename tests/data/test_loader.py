"""megamed.data.loader against references computed here: webdataset's own streaming reader,
a packing written out in the test, and single-process / uninterrupted runs of the loader."""
import hashlib
import io
import json
import logging
import pickle

import numpy as np
import pytest
import torch
import webdataset as wds

from megamed.data.batch import INPUTS, LABELS
from megamed.data.loader import (LoaderConfig, LoaderStateError, ShardLoader, SkipLimitError)
from megamed.data.packing import TokenBudget
from megamed.data.shard_reader import ShardError
from megamed.parallel.state import ParallelState
from shard_fixture import make_study, preprocess_hash, train_tokenizer, write_shards

MODALITY_MIX = [{"image", "ecg"}, {"image"}, {"ecg"}, set(), {"eeg", "image"}, {"ecg", "eeg"}]
BUDGET = TokenBudget(image=8, ecg=4, eeg=4)
NUM_SAMPLES, PER_SHARD = 23, 5  # 5 shards: not divisible by DP 2 or 3


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


def studies(n=NUM_SAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    samples = [make_study(rng, f"study{i:04d}", MODALITY_MIX[i % len(MODALITY_MIX)],
                          text=i % 7 != 3) for i in range(n)]
    samples[6] = make_study(rng, "study0006", {"image"}, image_shape=(1, 16, 16))  # an MR
    samples[8]["ecg.npy"] = samples[8]["ecg.npy"].astype(np.float32)  # not the usual dtype
    return samples


@pytest.fixture
def shards(tmp_path):
    write_shards(tmp_path, studies(), PER_SHARD)
    return tmp_path


def config(**overrides):
    base = dict(seq_length=48, global_batch=6, micro_batch=1, seed=7, num_workers=0,
                budget=BUDGET, max_skip_fraction=0.5, skip_check_after=1000)
    return LoaderConfig(**{**base, **overrides})


def global_batch(loader_per_rank, step):
    """Concatenation over DP ranks (and micro batches) of one step: field -> tensor."""
    parts = [loader.micro_batch(step, m) for loader in loader_per_rank
             for m in range(loader.micro_batches_per_step)]
    return {name: torch.cat([getattr(p, name) for p in parts])
            for name in ("sample_ids", "tokens", "targets", "loss_mask", "images", "ecg", "eeg")}


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_offset_reads_equal_webdataset_streaming(shards, tokenizer):
    """Every member read by manifest offset equals webdataset's streaming read, and the
    batch holds the decoded arrays and the reference packing of the text."""
    urls = [str(p) for p in sorted(shards.glob("shard-*.tar"))]
    streamed = {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False)}
    loader = ShardLoader(shards, tokenizer, config(global_batch=NUM_SAMPLES, micro_batch=1))
    files = loader._assembler.files
    assert sorted(streamed) == sorted(loader.manifest.keys)
    for index, key in enumerate(loader.manifest.keys):
        exts = [e for e in streamed[key] if not e.startswith("__")]
        for ext in exts:
            assert files.read(index, ext) == streamed[key][ext], (key, ext)
    pad, bos, eos = tokenizer.pad_id(), tokenizer.bos_id(), tokenizer.eos_id()
    for m in range(NUM_SAMPLES):
        batch = loader.micro_batch(0, m)
        key = loader.manifest.keys[int(batch.sample_ids[0])]
        ref = streamed[key]
        row = []
        for modality, ext, n in (("image", "img.npy", 8), ("ecg", "ecg.npy", 4),
                                 ("eeg", "eeg.npy", 4)):
            if ext in ref:
                row += [tokenizer.piece_to_id(f"<{modality}>")] * n
        text = tokenizer.encode(ref["txt"].decode("utf-8")) if "txt" in ref else []
        n_prefix = len(row)
        row = (row + [bos] + text + [eos])[:49]
        row += [pad] * (49 - len(row))
        assert batch.tokens[0].tolist() == row[:-1] and batch.targets[0].tolist() == row[1:]
        mask = [1.0 if n_prefix <= i < n_prefix + len(text) + 1 else 0.0 for i in range(48)]
        assert batch.loss_mask[0].tolist() == mask
        for name, ext, has in (("images", "img.npy", batch.has_image),
                               ("ecg", "ecg.npy", batch.has_ecg), ("eeg", "eeg.npy", batch.has_eeg)):
            assert bool(has[0]) == (ext in ref)
            expected = wds.autodecode.npy_loads(ref[ext]) if ext in ref else 0.0
            assert torch.equal(getattr(batch, name)[0],
                               torch.as_tensor(expected, dtype=torch.float16)
                               .expand_as(getattr(batch, name)[0]))


def test_order_depends_only_on_seed_and_index(shards, tokenizer):
    """DP1, DP2 and DP3 slices concatenate to the same global batch (across an epoch end),
    every epoch is a permutation of the manifest, and the seed changes the order."""
    one = [ShardLoader(shards, tokenizer, config())]
    two = [ShardLoader(shards, tokenizer, config(micro_batch=3), r, 2) for r in range(2)]
    three = [ShardLoader(shards, tokenizer, config(micro_batch=1), r, 3) for r in range(3)]
    for step in range(6):  # 36 samples: the second epoch starts inside step 3
        reference = global_batch(one, step)
        assert_same(global_batch(two, step), reference)
        assert_same(global_batch(three, step), reference)
    orders = [[one[0].global_sample(epoch * NUM_SAMPLES + i) for i in range(NUM_SAMPLES)]
              for epoch in range(3)]
    assert all(sorted(order) == list(range(NUM_SAMPLES)) for order in orders)
    assert orders[0] != orders[1] != orders[2]  # reshuffled every epoch
    other_seed = ShardLoader(shards, tokenizer, config(seed=8))
    assert ([other_seed.global_sample(i) for i in range(NUM_SAMPLES)]
            != [one[0].global_sample(i) for i in range(NUM_SAMPLES)])


def test_workers_and_prefetch_do_not_change_batches(shards, tokenizer):
    synchronous = iter(ShardLoader(shards, tokenizer, config(micro_batch=2, num_workers=0)))
    workers = iter(ShardLoader(shards, tokenizer, config(micro_batch=2, num_workers=2,
                                                         prefetch=3)))
    for _ in range(5):
        for a, b in zip(next(synchronous), next(workers), strict=True):
            assert_same(vars(a), vars(b))
            assert_same(vars(b.to("cpu")), vars(b))
    # Under a spawn/forkserver start method (Python 3.14's default) workers get a pickled
    # copy: it must rebuild the same batches, opening its own shard descriptors.
    loader = ShardLoader(shards, tokenizer, config(micro_batch=2))
    clone = pickle.loads(pickle.dumps(loader._assembler))
    assert_same(vars(clone.build(3, 1)[0]), vars(loader.micro_batch(3, 1)))


def test_every_rank_same_count_and_tp_pp_roles(shards, tokenizer):
    """TP2 x PP2 x DP2 on 5 shards: every rank the same number of samples, TP peers
    identical batches, inputs only on the first stage, labels only on the last, and the DP
    slices make up the single-process global batch."""
    single = [ShardLoader(shards, tokenizer, config())]
    loaders = {r: ShardLoader.for_rank(shards, tokenizer, config(micro_batch=1),
                                       ParallelState(tp=2, pp=2, world_size=8, rank=r))
               for r in range(8)}
    for step in range(4):
        batches = {r: [loader.micro_batch(step, m) for m in range(loader.micro_batches_per_step)]
                   for r, loader in loaders.items()}
        assert {sum(len(b.sample_ids) for b in bs) for bs in batches.values()} == {3}
        for r, bs in batches.items():
            state = ParallelState(tp=2, pp=2, world_size=8, rank=r)
            peer = r ^ 1  # the other TP rank of the same DP rank and stage
            for mine, theirs in zip(bs, batches[peer]):
                assert_same({k: v for k, v in vars(mine).items() if v is not None},
                            {k: v for k, v in vars(theirs).items() if v is not None})
            first, last = state.pp_rank == 0, state.pp_rank == 1
            assert all((b.tokens is not None) == first and (b.images is not None) == first
                       and (b.targets is not None) == last and (b.loss_mask is not None) == last
                       for b in bs)
        reference = global_batch(single, step)
        first_stage = [batches[0], batches[2]]   # tp 0, dp 0 and 1, pp 0
        last_stage = [batches[4], batches[6]]    # tp 0, dp 0 and 1, pp 1
        assert torch.equal(torch.cat([b.tokens for bs in first_stage for b in bs]),
                           reference["tokens"])
        assert torch.equal(torch.cat([b.targets for bs in last_stage for b in bs]),
                           reference["targets"])


def test_micro_batch_fields_as_the_trainer_asks(shards, tokenizer):
    """micro_batch(step, micro, fields) as batch.TokenSource takes it: only the fields
    asked for, the same values as a full read, nothing for an empty set."""
    loader = ShardLoader(shards, tokenizer, config(micro_batch=3))
    full = loader.micro_batch(2, 1)
    for fields in (INPUTS, LABELS, INPUTS | LABELS, {"images", "ecg"}):
        part = loader.micro_batch(2, 1, fields)
        filled = {k for k, v in vars(part).items() if v is not None}
        has = {f"has_{'image' if f == 'images' else f}" for f in fields & {"images", "ecg", "eeg"}}
        assert filled == set(fields) | has | {"sample_ids"}, fields
        assert all(torch.equal(getattr(part, k), getattr(full, k)) for k in filled)
    assert all(v is None for v in vars(loader.micro_batch(2, 1, frozenset())).values())
    with pytest.raises(ValueError, match="unknown fields \\['waveforms'\\]"):
        loader.micro_batch(0, 0, {"tokens", "waveforms"})


def test_resume_from_consumed_samples(shards, tokenizer):
    """Stop after step 2, resume (with workers, and under another DP size): the same
    batches as the uninterrupted run."""
    uninterrupted = iter(ShardLoader(shards, tokenizer, config(micro_batch=2)))
    steps = [next(uninterrupted) for _ in range(6)]
    first = ShardLoader(shards, tokenizer, config(micro_batch=2, num_workers=1))
    it = iter(first)
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint stores it
    assert state["consumed_samples"] == 18
    resumed = ShardLoader(shards, tokenizer, config(micro_batch=2, num_workers=2))
    resumed.load_state_dict(state)
    for expected, got in zip(steps[3:], resumed):
        for a, b in zip(expected, got, strict=True):
            assert_same(vars(a), vars(b))
    halves = [ShardLoader(shards, tokenizer, config(micro_batch=3), r, 2) for r in range(2)]
    for h in halves:
        h.load_state_dict(state)
    per_rank = [next(iter(h)) for h in halves]
    assert torch.equal(torch.cat([b.sample_ids for bs in per_rank for b in bs]),
                       torch.cat([b.sample_ids for b in steps[3]]))
    with pytest.raises(LoaderStateError, match="seed"):
        ShardLoader(shards, tokenizer, config(seed=99)).load_state_dict(state)


def _rewrite_manifest(root, mutate):
    manifest = json.loads((root / "manifest.json").read_text())
    mutate(manifest)
    for shard in manifest["shards"]:
        data = (root / shard["name"]).read_bytes()
        shard["bytes"], shard["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (root / "manifest.json").write_text(json.dumps(manifest))


def corrupt_shards(root):
    """Plants one corrupt sample of each kind; returns their keys. Checksums are recomputed,
    so only the samples themselves are bad (as when a writer stored broken members)."""
    samples = studies()
    samples[1]["img.npy"] = b"\x93NUMPY garbage"                      # bad npy header
    samples[2]["txt"] = "PATIENT Zhang San".encode("utf-16")           # not UTF-8 (+ "PHI")
    good = np.zeros((3, 16, 16), np.float16)
    samples[4]["img.npy"] = _npy_bytes(good)[:-10]                     # truncated array
    samples[5]["json"] = b"{not json"
    write_shards(root, samples, PER_SHARD)
    # A broken tar header checksum in front of sample 7's json (a "checksum" failure).
    manifest = json.loads((root / "manifest.json").read_text())
    offset = manifest["shards"][1]["members"][2]["files"]["json"][0]
    tar = root / manifest["shards"][1]["name"]
    data = bytearray(tar.read_bytes())
    data[offset - 512 + 150] ^= 0x01
    tar.write_bytes(bytes(data))

    def shorten_member(m):  # the manifest and the tar header disagree: a truncated member
        m["shards"][1]["members"][4]["files"]["txt"][1] -= 3

    _rewrite_manifest(root, shorten_member)
    return {"study0001", "study0002", "study0004", "study0005", "study0007", "study0009"}


def _npy_bytes(array):
    f = io.BytesIO()
    np.save(f, array)
    return f.getvalue()


def test_corrupt_samples_replaced_identically_and_logged(tmp_path, tokenizer, caplog):
    bad = corrupt_shards(tmp_path)
    caplog.set_level(logging.WARNING, logger="megamed.data.loader")
    roles = {"both": (True, True), "inputs": (True, False), "labels": (False, True)}
    names = ShardLoader(tmp_path, tokenizer, config()).manifest.keys
    reference = ShardLoader(tmp_path, tokenizer, config())
    expected, skips = [], 0  # the next good sample of the same epoch's permutation
    for g in range(24):
        epoch, p = divmod(g, NUM_SAMPLES)
        while names[reference.global_sample(epoch * NUM_SAMPLES + p % NUM_SAMPLES)] in bad:
            p, skips = p + 1, skips + 1
        expected.append(reference.global_sample(epoch * NUM_SAMPLES + p % NUM_SAMPLES))
    for role, (inputs, labels) in roles.items():
        loader = ShardLoader(tmp_path, tokenizer, config(num_workers=2 if role == "both" else 0),
                             need_inputs=inputs, need_labels=labels)
        it = iter(loader)
        ids = torch.cat([b.sample_ids for _ in range(4) for b in next(it)])  # one epoch+
        assert ids.tolist() == expected, role
        assert (loader.skipped, loader.read) == (skips, 24 + skips), role
    assert skips >= len(bad)
    middle = ShardLoader(tmp_path, tokenizer, config(), need_inputs=False, need_labels=False)
    batches = next(iter(middle)) + [middle.micro_batch(1, 0)]
    assert all(v is None for b in batches for v in vars(b).values())
    assert middle.read == 0 and middle._assembler.files.verified == set()
    assert middle.state_dict()["consumed_samples"] == 6
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for key in bad:
        assert key in logged
    assert "Zhang" not in logged and "PATIENT" not in logged
    for reason in ("not valid UTF-8", "checksum", "truncated", "announces", "npy header", "JSON"):
        assert reason in logged, reason


def test_skip_limit_raises(tmp_path, tokenizer):
    corrupt_shards(tmp_path)  # 5 of 23 bad
    for workers in (0, 2):
        loader = ShardLoader(tmp_path, tokenizer, config(num_workers=workers,
                                                         max_skip_fraction=0.1,
                                                         skip_check_after=10))
        with pytest.raises(SkipLimitError, match="max_skip_fraction"):
            for _ in zip(range(10), loader):
                pass
    broken = studies()
    for sample in broken:
        sample["json"] = b"{"
    write_shards(tmp_path / "broken", broken, PER_SHARD)
    with pytest.raises(SkipLimitError, match="64 consecutive unreadable samples"):
        ShardLoader(tmp_path / "broken", tokenizer, config()).micro_batch(0, 0)


def test_bad_shards_and_manifests_are_refused_by_name(shards, tokenizer):
    tar = shards / "shard-000003.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[:-1024])                                     # truncated tar
    with pytest.raises(ShardError, match="shard-000003.tar.*truncated"):
        for _ in ShardLoader(shards, tokenizer, config(num_workers=2, global_batch=24,
                                                       micro_batch=24)):
            pass
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    tar.write_bytes(bytes(flipped))                                   # same size, other bytes
    loader = ShardLoader(shards, tokenizer, config(global_batch=23, micro_batch=23))
    with pytest.raises(ShardError, match="shard-000003.tar.*sha256"):
        loader.micro_batch(0, 0)
    tar.write_bytes(data)
    _rewrite_manifest(shards, lambda m: m["shards"][2]["members"][1]["files"]["json"]
                      .__setitem__(0, m["shards"][2]["bytes"] - 10))
    with pytest.raises(ShardError, match="manifest.json.*study0011.json lies outside shard-000002"):
        ShardLoader(shards, tokenizer, config())
    write_shards(shards, studies(), PER_SHARD)
    with pytest.raises(ShardError, match="manifest.json.*preprocess_hash"):
        ShardLoader(shards, tokenizer, config(preprocess_hash=preprocess_hash({"other": 1})))
    ShardLoader(shards, tokenizer, config(preprocess_hash=preprocess_hash(
        json.loads((shards / "manifest.json").read_text())["preprocess"])))


def test_each_shard_hashed_once_per_rank_with_workers(shards, tokenizer, monkeypatch, tmp_path_factory):
    """The dispatching process checks the shards and tells its workers: two workers over a
    whole epoch hash each of the 5 shards once in all, not once per worker."""
    from megamed.data.shard_reader import ShardFiles
    record = tmp_path_factory.mktemp("hashes") / "calls"
    real = ShardFiles._sha256

    def counted(fd, size):
        with open(record, "a") as f:  # forked workers append here too
            f.write(f"{size}\n")
        return real(fd, size)

    monkeypatch.setattr(ShardFiles, "_sha256", staticmethod(counted))
    loader = ShardLoader(shards, tokenizer, config(micro_batch=2, num_workers=2))
    for _ in zip(range(4), loader):  # 24 samples: every shard is read
        pass
    calls = record.read_text().split()
    assert len(calls) == len(list(shards.glob("shard-*.tar"))), calls


def test_inconsistent_settings_are_refused(shards, tokenizer):
    with pytest.raises(ValueError, match="global batch 6 is not a multiple of DP 4 x micro"):
        ShardLoader(shards, tokenizer, config(), dp_rank=0, dp_size=4)
    with pytest.raises(ValueError, match="seq_length 16 cannot hold"):
        ShardLoader(shards, tokenizer, config(seq_length=16))
    loader = ShardLoader(shards, tokenizer, config())
    with pytest.raises(LoaderStateError, match="not a whole number of global batches"):
        loader.load_state_dict({**loader.state_dict(), "consumed_samples": 7})
