"""Auto-resume under torchrun: rank 1 of 2 is killed with SIGKILL mid-run, torchrun
(--max-restarts 1) restarts the group, `--load auto` resumes from the newest checkpoint,
and every step's loss equals the uninterrupted run's bit for bit (CPU, gloo). The
uninterrupted run is the same entry point with the same flags in 2 processes forked by
run_distributed: torchrun's agent and worker start-ups (a torch import each) are paid
only where the restart is what is tested."""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import entry_point
from distributed import run_distributed

HERE = Path(__file__).resolve().parent
FLAGS = ["--profile", "tiny", "--steps", "8", "--seed", "11", "--save-interval", "2",
         "--log-interval", "100", "--load", "auto"]


def _losses(metrics: Path) -> dict:
    losses = {}
    for line in metrics.read_text().splitlines():  # a restarted step's later record wins
        record = json.loads(line)
        losses[record["step"]] = record["loss"]
    return losses


def _uninterrupted(tmp_path: Path, capfd) -> tuple[dict, str]:
    metrics = tmp_path / "reference.jsonl"
    flags = [*FLAGS, "--save", str(tmp_path / "reference"), "--metrics-jsonl", str(metrics)]
    assert run_distributed(entry_point.main, 2, flags) == [0, 0]
    out, err = capfd.readouterr()
    return _losses(metrics), out + err


def _torchrun(tmp_path: Path, name: str, kill_at: int) -> tuple[dict, str]:
    metrics = tmp_path / f"{name}.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1", KILL_AT_STEP=str(kill_at), KILL_RANK="1",
               KILL_MARKER=str(tmp_path / f"{name}.killed"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "--max-restarts", "1", "--monitor-interval", "0.2",
           str(HERE / "restart_worker.py"), *FLAGS, "--save", str(tmp_path / name),
           "--metrics-jsonl", str(metrics)]
    # Its own session, so a hang is cleaned up whole: workers outlive a killed agent.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):  # anything left behind
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-3000:]
    return _losses(metrics), stdout + stderr


def test_kill_9_under_torchrun_resumes_bitwise(tmp_path, capfd):
    reference, output = _uninterrupted(tmp_path, capfd)
    assert f"no checkpoint in {tmp_path / 'reference'}: starting from scratch" in output
    resumed, output = _torchrun(tmp_path, "killed", kill_at=6)
    assert (tmp_path / "killed.killed").exists()  # the fault did happen
    # Step 4's save is published by step 6's at the latest; step 6's may be in flight.
    assert re.search(r"resuming from \S+ \(step [46]\)", output), output[-3000:]
    assert sorted(resumed) == sorted(reference) == list(range(1, 9))
    assert resumed == reference  # bitwise: floats compared exactly
    assert (tmp_path / "killed" / "latest").read_text() == "step_0000008\n"
