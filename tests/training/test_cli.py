"""The entry point as users run it: torchrun, flags, the metrics JSONL contract, and the
same losses from 2 processes at TP=2 as from 1 process."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu"}


def _torchrun(nproc, tmp_path, *flags):
    out = tmp_path / f"metrics{nproc}.jsonl"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           str(ROOT / "examples" / "pretrain_32b.py"), "--profile", "tiny", "--steps", "3",
           "--seed", "7", "--metrics-jsonl", str(out), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in out.read_text().splitlines()], done.stdout


def test_torchrun_tp2_matches_one_process(tmp_path):
    one, _ = _torchrun(1, tmp_path, "--tp", "1")
    two, stdout = _torchrun(2, tmp_path, "--tp", "2")
    assert "328,768 parameters" in stdout and "TP 2 x PP 1 x DP 1" in stdout
    assert [r["step"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two):
        assert FIELDS <= a.keys()
        assert a["mfu"] is None  # no GPU
        assert a["tokens"] == b["tokens"] == a["step"] * 8 * 64
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * a["loss"]


def test_bad_layout_is_a_clear_error(tmp_path):
    cmd = [sys.executable, str(ROOT / "examples" / "pretrain_32b.py"), "--profile", "tiny",
           "--global-batch", "1024", "--micro-batch", "4", "--grad-accum-steps", "32"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "global batch 1024 != micro batch x accumulation steps x DP = 4 x 32 x 1 = 128" \
        in done.stderr
