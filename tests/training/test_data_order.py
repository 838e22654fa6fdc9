"""The data order depends only on (seed, global sample index): every layout reads the same
samples per step, and token files are cut and permuted reproducibly."""
import numpy as np
import pytest

from megamed.data.sampler import BatchLayout
from megamed.data.synthetic import SyntheticBigramDataset
from megamed.data.tokens import TokenFileDataset, TokenFileError


@pytest.mark.parametrize("dp, micro", [(1, 1), (2, 1), (4, 2), (8, 1)])
def test_every_layout_reads_the_same_samples_per_step(dp, micro):
    layout = BatchLayout(global_batch=8, micro_batch=micro, dp=dp)
    for step in range(3):
        seen = sorted(i for d in range(dp) for m in range(layout.micro_batches)
                      for i in layout.sample_indices(step, d, m))
        assert seen == list(range(step * 8, (step + 1) * 8))


def test_synthetic_samples_depend_only_on_seed_and_index():
    a, b = SyntheticBigramDataset(64, 16, seed=1), SyntheticBigramDataset(64, 16, seed=1)
    assert np.array_equal(a[12345], b[12345])
    assert not np.array_equal(a[1], a[2])
    assert not np.array_equal(a[1], SyntheticBigramDataset(64, 16, seed=2)[1])
    # Every transition is one the chain allows: the structure a model can learn.
    tokens = a[7]
    assert all(tokens[t + 1] in a.successors[tokens[t]] for t in range(16))


def test_token_files_are_concatenated_cut_and_permuted(tmp_path):
    stream = np.arange(1000) % 97
    np.save(tmp_path / "a.npy", stream[:600].astype(np.uint16))
    stream[600:].astype(np.uint16).tofile(tmp_path / "b.bin")
    ds = TokenFileDataset(str(tmp_path / "*"), vocab_size=97, seq_length=10, seed=0)
    assert len(ds) == 99
    samples = {tuple(ds[i]) for i in range(len(ds))}
    expected = {tuple(stream[k * 10:k * 10 + 11]) for k in range(99)}
    assert samples == expected  # a permutation of all windows, including the one across files
    again = TokenFileDataset(str(tmp_path / "*"), vocab_size=97, seq_length=10, seed=0)
    assert [tuple(again[i]) for i in range(5)] == [tuple(ds[i]) for i in range(5)]


def test_bad_token_files_name_the_file(tmp_path):
    with pytest.raises(TokenFileError, match="no file matches"):
        TokenFileDataset(str(tmp_path / "*.npy"), 10, 4, 0)
    (tmp_path / "odd.bin").write_bytes(b"abc")
    with pytest.raises(TokenFileError, match=r"odd.bin: size 3 is not a multiple of 2"):
        TokenFileDataset(str(tmp_path / "odd.bin"), 10, 4, 0)
    np.save(tmp_path / "big.npy", np.array([1, 2, 300, 4, 5, 6], dtype=np.int32))
    ds = TokenFileDataset(str(tmp_path / "big.npy"), 10, 4, 0)
    with pytest.raises(TokenFileError, match=r"big.npy: token id 300 outside"):
        ds[0]


def test_a_stage_reads_only_the_fields_it_uses():
    """A middle pipeline stage reads no sample; the first gets only inputs, the last only
    labels, each equal to the samples BatchLayout assigns (the same on every TP rank)."""
    from megamed.data.batch import INPUTS, LABELS, TokenSource

    class Counting(SyntheticBigramDataset):
        reads = 0

        def __getitem__(self, index):
            Counting.reads += 1
            return super().__getitem__(index)

    data = Counting(256, 16, seed=3)
    layout = BatchLayout(global_batch=8, micro_batch=2, dp=2)
    source = TokenSource(data, layout, dp_rank=1)
    empty = source.micro_batch(5, 1, frozenset())
    assert Counting.reads == 0 and empty.tokens is None and empty.targets is None
    first, last = source.micro_batch(5, 1, INPUTS), source.micro_batch(5, 1, LABELS)
    rows = np.stack([data[i] for i in layout.sample_indices(5, 1, 1)])
    assert first.targets is None and last.tokens is None and last.loss_mask is None
    assert np.array_equal(first.tokens.numpy(), rows[:, :-1])
    assert np.array_equal(last.targets.numpy(), rows[:, 1:])
