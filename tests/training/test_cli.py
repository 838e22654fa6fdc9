"""The entry point as users run it: torchrun, flags, the metrics JSONL contract, and the
same losses from 2 processes at TP=2 as from 1 process (the entry point in a process
forked by run_distributed: one torchrun launch is what the test needs)."""
import json
import subprocess
import sys

import pytest

import entry_point
from distributed import free_port, run_distributed

FIELDS = {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu"}


def _flags(out, *flags):
    return ["--profile", "tiny", "--steps", "3", "--seed", "7", "--metrics-jsonl", str(out),
            *flags]


def _records(out):
    return [json.loads(line) for line in out.read_text().splitlines()]


def _torchrun(nproc, tmp_path, *flags):
    out = tmp_path / f"metrics{nproc}.jsonl"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master-port", str(free_port()),  # not 29500: other launches may be running
           str(entry_point.ENTRY), *_flags(out, *flags)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return _records(out), done.stdout


def test_torchrun_tp2_matches_one_process(tmp_path):
    out = tmp_path / "metrics1.jsonl"
    assert run_distributed(entry_point.main, 1, _flags(out, "--tp", "1")) == [0]
    one = _records(out)
    two, stdout = _torchrun(2, tmp_path, "--tp", "2")
    assert "328,768 parameters" in stdout and "TP 2 x PP 1 x DP 1" in stdout
    assert [r["step"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two):
        assert FIELDS <= a.keys()
        assert a["mfu"] is None  # no GPU
        assert a["tokens"] == b["tokens"] == a["step"] * 8 * 64
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * a["loss"]


def test_bad_layout_is_a_clear_error(tmp_path):
    cmd = [sys.executable, str(entry_point.ENTRY), "--profile", "tiny",
           "--global-batch", "1024", "--micro-batch", "4", "--grad-accum-steps", "32"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "global batch 1024 != micro batch x accumulation steps x DP = 4 x 32 x 1 = 128" \
        in done.stderr


@pytest.mark.parametrize("flags, world, message", [
    (["--profile", "nope"], 1, "unknown profile 'nope'"),
    (["--tp", "3"], 2, "world size 2 is not divisible by TP x PP = 3 x 1 = 3"),
    (["--global-batch", "7"], 2, "global batch 7 is not divisible by micro batch x DP"),
    (["--precision", "fp8"], 1, "argument --precision: invalid choice: 'fp8'"),
    (["--data", "/nonexistent/*.npy"], 1, "--data): no file matches this glob"),
    (["--steps", "-1"], 1, "train.steps=-1 (--steps) must be >= 1"),
    (["--pp", "4", "--global-batch", "6", "--micro-batch", "2"], 4, "1F1B needs at least"),
])
def test_user_errors_are_one_line_and_exit_2(flags, world, message, capsys, monkeypatch):
    """Checked before any process group exists (none is created here): one line on stderr,
    exit status 2, no traceback."""
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", "0")
    assert entry_point.main(["--profile", "tiny", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
