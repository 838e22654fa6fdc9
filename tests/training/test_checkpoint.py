"""Save and resume: a run resumed from step 4 continues exactly as the uninterrupted run;
a damaged or mismatched checkpoint is refused with the file and the reason."""
import pytest

from distributed import ChildError, run_distributed
from megamed.config import load_config
from megamed.training.trainer import pretrain


def _train(pp, steps, save=None, load=None, save_interval=0):
    cfg = load_config("tiny", {"parallel": {"pp": pp},
                               "train": {"steps": steps, "seed": 3, "log_interval": 100,
                                         "save_interval": save_interval}})
    return [r["loss"] for r in pretrain(cfg, save=save, load=load)]


@pytest.mark.parametrize("pp", [1, 2])
def test_resume_continues_the_same_curve(tmp_path, pp):
    full = run_distributed(_train, pp, pp, 8, str(tmp_path), None, 4)[0]
    # As if the job had died after step 4: point `latest` back at that checkpoint.
    (tmp_path / "latest").write_text("step_0000004\n")
    resumed = run_distributed(_train, pp, pp, 8, None, str(tmp_path))[0]
    assert resumed == full[4:]  # bit-identical: same data, same state


def test_broken_and_mismatched_checkpoints_are_refused(tmp_path):
    run_distributed(_train, 1, 1, 2, str(tmp_path))
    with pytest.raises(ChildError, match=r"saved with TP 1 x PP 1, this run is TP 1 x PP 2"):
        run_distributed(_train, 2, 2, 4, None, str(tmp_path))
    shard = tmp_path / "step_0000002" / "tp00_pp00.pt"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ChildError, match=r"tp00_pp00.pt: unreadable shard"):
        run_distributed(_train, 1, 1, 4, None, str(tmp_path))
    with pytest.raises(ChildError, match=r"no 'latest' file"):
        run_distributed(_train, 1, 1, 4, None, str(tmp_path / "nowhere"))
