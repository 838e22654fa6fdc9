"""The shard loader's validation split (LoaderConfig.eval_fraction): held-out manifest
samples never reach a training batch, over several epochs and as replacements of corrupt
samples; the eval split reads just them; without a fraction the order is unchanged."""
import numpy as np
import pytest

from megamed.data.loader import LoaderConfig, LoaderConfigError, LoaderStateError, ShardLoader
from megamed.data.packing import TokenBudget
from megamed.data.sampler import held_out_samples
from megamed.data.shard_reader import SampleError
from shard_fixture import make_study, train_tokenizer, write_shards

NUM_SAMPLES, PER_SHARD = 20, 4


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    write_shards(tmp_path, [make_study(rng, f"study{i:04d}", {"ecg"} if i % 2 else set())
                            for i in range(NUM_SAMPLES)], PER_SHARD)
    return tmp_path


def config(**overrides):
    base = dict(seq_length=32, global_batch=4, micro_batch=1, seed=7, num_workers=0,
                budget=TokenBudget(image=8, ecg=4, eeg=4), eval_fraction=0.25)
    return LoaderConfig(**{**base, **overrides})


def sample_ids(loader, steps):
    return [int(i) for step in range(steps) for m in range(loader.micro_batches_per_step)
            for i in loader.micro_batch(step, m).sample_ids]


def test_held_out_samples_never_reach_training_and_eval_reads_only_them(shards, tokenizer):
    held = set(held_out_samples(NUM_SAMPLES, 0.25).tolist())
    assert len(held) == 5
    seen = set()
    for dp_rank in range(2):
        train = ShardLoader(shards, tokenizer, config(), dp_rank, 2)
        seen |= set(sample_ids(train, 12))  # 48 samples: 3 epochs of the 15 training ones
        assert set(sample_ids(train.held_out(), 2)) <= held
    assert seen == set(range(NUM_SAMPLES)) - held
    # The eval split is the same for every seed and in manifest order.
    one = ShardLoader(shards, tokenizer, config(), 0, 1).held_out()
    other = ShardLoader(shards, tokenizer, config(seed=99), 0, 1).held_out()
    assert sample_ids(one, 1) == sample_ids(other, 1) == sorted(held)[:4]


def test_corrupt_training_sample_is_replaced_by_a_training_sample(shards, tokenizer):
    train = ShardLoader(shards, tokenizer, config(), 0, 1)
    first = train.global_sample(0)
    # The first sample unreadable: its replacement is the next of the training
    # permutation, never a held-out sample.
    files = train._assembler.files
    original = files.inspect_sample

    def inspect(index, shapes):
        if index == first:
            raise SampleError("study", "planted")
        return original(index, shapes)

    files.inspect_sample = inspect
    replaced = int(train.micro_batch(0, 0).sample_ids[0])
    assert replaced == train.global_sample(1)
    assert replaced not in set(held_out_samples(NUM_SAMPLES, 0.25).tolist())


def test_no_fraction_keeps_the_order_of_a_loader_without_a_split(shards, tokenizer):
    loader = ShardLoader(shards, tokenizer, config(eval_fraction=0.0))
    expected = [int(p) for epoch in range(2) for p in
                np.random.default_rng([7, epoch, 0x5A3D]).permutation(NUM_SAMPLES)]
    assert [loader.global_sample(g) for g in range(2 * NUM_SAMPLES)] == expected
    with pytest.raises(LoaderConfigError, match="validation split needs eval_fraction > 0"):
        loader.held_out()


def test_resume_with_another_fraction_is_refused(shards, tokenizer):
    saved = ShardLoader(shards, tokenizer, config()).state_dict()
    with pytest.raises(LoaderStateError, match="eval_fraction is 0.25, this loader's 0.1"):
        ShardLoader(shards, tokenizer, config(eval_fraction=0.1)).load_state_dict(saved)
    del saved["eval_fraction"]  # a checkpoint from before the split: nothing held out
    ShardLoader(shards, tokenizer, config(eval_fraction=0.0)).load_state_dict(saved)
