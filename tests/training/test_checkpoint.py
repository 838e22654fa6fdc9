"""Save and resume: a run resumed from a checkpoint continues exactly as the uninterrupted
run; a damaged checkpoint (flipped bit, truncated or missing shard, a save killed half way)
is reported and the previous one used; a mismatched one (layout, model shape, vocabulary,
profile) is refused with the difference named; background saves write the same bytes as
synchronous ones; a failing save is counted and training goes on; retention keeps the
newest and the best; the time cadence is rank 0's decision."""
import contextlib
import io
import json
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import torch

from distributed import ChildError, run_distributed
from megamed.checkpoint import format as fmt
from megamed.config import load_config, resolve
from megamed.parallel.state import ParallelState
from megamed.training import checkpointing
from megamed.training.checkpointing import Checkpointer
from megamed.training.trainer import pretrain


def _train(pp, steps, save=None, load=None, save_interval=0, model=None, profile="tiny",
           train=None):
    cfg = load_config(profile, {"parallel": {"pp": pp}, "model": model or {},
                                "train": {"steps": steps, "seed": 3, "log_interval": 100,
                                          "save_interval": save_interval, **(train or {})}})
    return [r["loss"] for r in pretrain(cfg, save=save, load=load)]


@pytest.mark.parametrize("pp", [1, 2])
def test_resume_continues_the_same_curve(tmp_path, pp):
    full = run_distributed(_train, pp, pp, 8, str(tmp_path), None, 4)[0]
    # As if the job had died after step 4: point `latest` back at that checkpoint.
    (tmp_path / "latest").write_text("step_0000004\n")
    resumed = run_distributed(_train, pp, pp, 8, None, str(tmp_path))[0]
    assert resumed == full[4:]  # bit-identical: same data, same state


def _mismatches(tmp, other_profile):
    out = []
    for args in ((2, 4, None, tmp), (1, 4, None, tmp, 0, {"hidden_size": 128}),
                 (1, 4, None, tmp, 0, {"vocab_size": 512}),
                 (1, 4, None, tmp, 0, None, other_profile), (1, 4, None, f"{tmp}/nowhere")):
        try:
            _train(*args)
            out.append(None)
        except fmt.CheckpointError as e:
            out.append(f"{type(e).__name__}: {e}")
    return out


def test_mismatched_checkpoints_are_refused(tmp_path):
    ckpt = tmp_path / "ckpt"
    run_distributed(_train, 1, 1, 2, str(ckpt))
    other = tmp_path / "other.yaml"  # the same model under another profile name
    other.write_text("base: tiny\n")
    layout, shape, vocab, profile, nowhere = run_distributed(_mismatches, 2, str(ckpt),
                                                             str(other))[0]
    assert "Mismatch: " in layout and "TP 1 x PP 1, this run is TP 1 x PP 2" in layout
    assert "model.hidden_size: checkpoint 64, this run 128" in shape
    assert "model.vocab_size: checkpoint 256, this run 512" in vocab
    assert f"saved with profile 'tiny', this run uses profile '{other}'" in profile
    assert "nowhere: no 'latest' file" in nowhere


# -- damaged checkpoints: fall back to the previous one ---------------------------------------

def tensor_offset(path: Path) -> int:
    """The offset of the middle byte of the largest tensor stored in a torch.save file."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    raw = path.read_bytes()
    name_len, extra_len = (int.from_bytes(raw[info.header_offset + k:info.header_offset + k + 2],
                                          "little") for k in (26, 28))
    return info.header_offset + 30 + name_len + extra_len + info.file_size // 2


def flip_bit(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[tensor_offset(path)] ^= 0x10
    path.write_bytes(bytes(raw))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


DAMAGES = {"flip_bit": (flip_bit, "checksum mismatch"),
           "truncate": (truncate, "truncated or damaged"),
           "missing": (Path.unlink, r"shard missing \(written by rank 0\)")}


def _killed_during_save(root):
    """Exits like kill -9 while the background thread writes step 4's file."""
    real = fmt._HashingWriter.write

    def write(self, data):
        if "step_0000004" in self.f.name and self.bytes > 10_000:
            os._exit(9)
        return real(self, data)
    fmt._HashingWriter.write = write
    _train(1, 6, root, None, 2)


def _resume_each(roots, loads):
    """Resumes in each folder (--load auto, or --save alone): (losses, what was printed)."""
    out = []
    for root, load in zip(roots, loads):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            losses = _train(1, 6, root, load, 2)
        out.append((losses, printed.getvalue()))
    return out


@pytest.fixture(scope="module")
def recovered(tmp_path_factory):
    """A run of 6 steps saved every 2 (the reference); copies of its checkpoints with step
    4's model file damaged in each way of DAMAGES, and a run killed while writing step 4;
    each then resumed from its folder."""
    tmp = tmp_path_factory.mktemp("recovered")
    full = run_distributed(_train, 1, 1, 6, str(tmp / "saved"), None, 2)[0]
    (tmp / "saved" / "latest").write_text("step_0000004\n")  # as if it had died after 4
    for name, (damage, _) in DAMAGES.items():
        shutil.copytree(tmp / "saved", tmp / name)
        damage(tmp / name / "step_0000004" / "tp00_pp00.pt")
    with pytest.raises(ChildError, match="exited with code 9"):
        run_distributed(_killed_during_save, 1, str(tmp / "killed"))
    killed = {"tmp_left": (tmp / "killed" / ".tmp_step_0000004").is_dir(),
              "step_4": (tmp / "killed" / "step_0000004").exists(),
              "latest": (tmp / "killed" / "latest").read_text()}
    names = list(DAMAGES) + ["killed"]
    loads = ["auto"] * len(DAMAGES) + [None]  # the killed run: --save DIR alone resumes
    resumed = run_distributed(_resume_each, 1, [str(tmp / n) for n in names], loads)[0]
    return tmp, full, killed, dict(zip(names, resumed))


@pytest.mark.parametrize("name", list(DAMAGES))
def test_damaged_latest_falls_back_to_the_previous(recovered, name):
    tmp, full, _, resumed = recovered
    losses, printed = resumed[name]
    assert losses == full[2:]  # from step 2, exactly
    reason = DAMAGES[name][1]
    assert any(f"{tmp / name}/step_0000004/tp00_pp00.pt" in line and re.search(reason, line)
               and "skipped, trying the previous" in line
               for line in printed.splitlines()), printed
    assert f"resuming from {tmp / name / 'step_0000002'} (step 2)" in printed
    assert (tmp / name / "latest").read_text() == "step_0000006\n"  # saved again, intact


def test_kill_during_a_save_leaves_the_previous_checkpoint(recovered):
    tmp, full, killed, resumed = recovered
    assert killed == {"tmp_left": True, "step_4": False, "latest": "step_0000002\n"}
    losses, printed = resumed["killed"]
    assert losses == full[2:]
    assert f"resuming from {tmp / 'killed' / 'step_0000002'} (step 2)" in printed
    assert not (tmp / "killed" / ".tmp_step_0000004").exists()  # removed at start


def test_flipped_bit_lands_inside_a_tensor(recovered, tmp_path):
    """The flip of the test above changes a tensor value, not the zip structure: without
    the checksum the file would load silently."""
    path = tmp_path / "f.pt"
    shutil.copy(recovered[0] / "saved" / "step_0000004" / "tp00_pp00.pt", path)
    before = torch.load(path, weights_only=False)
    flip_bit(path)
    after = torch.load(path, weights_only=False)
    flat = [(a, b) for ca, cb in zip(before["model"], after["model"])
            for a, b in zip(ca.values(), cb.values())]
    flat += [(a[m], b[m]) for a, b in zip(before["optimizer"]["shards"],
                                          after["optimizer"]["shards"])
             for m in ("master", "exp_avg", "exp_avg_sq")]
    assert sum(not torch.equal(a, b) for a, b in flat) == 1


# -- background vs synchronous saves, failures, retention --------------------------------------

VAL_LOSSES, BLOCKED = [5.0, 1.0, 4.0, 3.0, 2.0, 6.0], 3


def _checkpointer_run(root):
    """Saves steps 1..6 with VAL_LOSSES through a Checkpointer (keep last 2, best 1); the
    save of step BLOCKED cannot create its folder."""
    cfg = resolve(load_config("tiny", {"train": {"save_interval": 1, "keep_last": 2,
                                                 "keep_best": 1}}), 1, "cpu")
    ckpt = Checkpointer(cfg, ParallelState.create(1, 1), save=root)
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / f".tmp_step_{BLOCKED:07d}").write_text("in the way\n")
    published = []
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        for step, loss in enumerate(VAL_LOSSES, 1):
            payload = {"step": step, "model": [{"w": torch.full((4,), float(step))}],
                       "extra": {"position": step}}
            out = ckpt.maybe_save(step, lambda s: (payload, {"steps": s}), val_loss=loss)
            published.append(out and out.name)
        ckpt.finish(len(VAL_LOSSES), None)
    return published, dict(ckpt.counters), printed.getvalue()


def _saves(root):
    losses = [_train(1, 4, f"{root}/{mode}", None, 2, train={"async_save": mode})
              for mode in (True, False)]  # background, then synchronous
    Path(f"{root}/a_file").write_text("not a folder\n")
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):  # every save fails: training goes on
        cfg = load_config("tiny", {"train": {"steps": 4, "seed": 3, "save_interval": 2}})
        records = pretrain(cfg, save=f"{root}/a_file/ckpt")
    failing = ([r["loss"] for r in records], records[-1].get("checkpoint_save_failures"),
               printed.getvalue())
    return losses, failing, _checkpointer_run(f"{root}/retention")


@pytest.fixture(scope="module")
def saves(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saves")
    return tmp, run_distributed(_saves, 1, str(tmp))[0]


def test_background_save_writes_the_same_bytes(saves):
    tmp, ((background, synchronous), _, _) = saves
    assert background == synchronous
    for step in ("step_0000002", "step_0000004"):
        a, b = tmp / "True" / step, tmp / "False" / step
        names = sorted(p.name for p in a.iterdir())
        assert names == sorted(p.name for p in b.iterdir()) == ["meta.json", "tp00_pp00.pt"]
        assert (a / "tp00_pp00.pt").read_bytes() == (b / "tp00_pp00.pt").read_bytes()
        ma, mb = (json.loads((d / "meta.json").read_text()) for d in (a, b))
        assert ma["files"] == mb["files"]
        assert ma["files"]["tp00_pp00.pt"]["bytes"] == (a / "tp00_pp00.pt").stat().st_size


def test_a_failing_save_is_counted_and_training_goes_on(saves):
    tmp, ((background, _), (losses, failures, printed), _) = saves
    assert losses == background
    assert failures == 1  # step 2's, found at step 3; step 4's after the last record
    lines = [line for line in printed.splitlines() if "checkpoint save of step" in line]
    assert len(lines) == 2 and all(f"{tmp}/a_file/ckpt" in line and "Not a directory" in line
                                   for line in lines), printed


def test_retention_and_a_failing_save(saves):
    tmp, (_, _, (published, counters, printed)) = saves
    root = tmp / "retention"
    assert counters == {"checkpoint_save_failures": 1}
    assert f"checkpoint save of step {BLOCKED} failed on rank 0" in printed
    # Published one step late (the write runs behind training) or at the next save.
    assert [p for p in published if p] == ["step_0000001", "step_0000002", "step_0000004",
                                           "step_0000005"]
    kept = sorted(p.name for p in root.glob("step_*"))
    assert kept == ["step_0000002", "step_0000005", "step_0000006"]  # best 1, last 2
    assert (root / "latest").read_text() == "step_0000006\n"
    saved = torch.load(root / "step_0000006" / "tp00_pp00.pt", weights_only=False)
    assert saved["extra"] == {"position": 6} and torch.equal(saved["model"][0]["w"],
                                                            torch.full((4,), 6.0))
    meta = json.loads((root / "step_0000002" / "meta.json").read_text())
    assert meta["val_loss"] == 1.0 and set(meta["files"]) == {"tp00_pp00.pt"}


def _timed_saves(root):
    """Saves every 0.6 s (--save-interval-minutes 0.01), with rank 1's clock stopped: only
    rank 0's clock decides, for both. Returns the last saved step after each step."""
    cfg = resolve(load_config("tiny", {"train": {"save_interval_minutes": 0.01}}), 2, "cpu")
    state = ParallelState.create(1, 1)
    if state.rank == 1:
        checkpointing.time.monotonic = lambda: 0.0
    ckpt = Checkpointer(cfg, state, save=root)
    saved = []
    for step in range(1, 5):
        if step in (2, 4):
            time.sleep(1.0)
        payload = {"step": step, "model": [{"w": torch.zeros(2)}]}
        ckpt.maybe_save(step, lambda s: (payload, {"steps": s}))
        saved.append(ckpt.last_saved)
    ckpt.finish(4, None)
    return saved


def test_save_interval_minutes_is_decided_by_rank_0(tmp_path):
    rank0, rank1 = run_distributed(_timed_saves, 2, str(tmp_path))
    assert rank0 == rank1 == [None, 2, 2, 4]
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_0000002", "step_0000004"]
