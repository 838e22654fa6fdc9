"""Faults as an operator meets them (training/fault.py): SIGTERM to a plain and to a torchrun
launch (saved, exit 0, resumable), a second signal, a killed torchrun agent, NaN steps
(skipped, then the run stops with a report), and a hung rank (stacks, non-zero exit)."""
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from distributed import free_port, run_distributed
from megamed.config import ConfigError, load_config
from megamed.training.fault import INJECT_ENV, REPEAT_WINDOW_S, NonFiniteError, parse_injections
from megamed.training.trainer import pretrain

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "examples" / "pretrain_32b.py"
PREEMPTED = r"pre-empted by SIGTERM: stopped after step (\d+) of 200; checkpoint of step \1 in "


class Launch:
    """A training process (`nproc` > 0: under torchrun) whose output is collected while it
    runs. It gets its own session, so that `kill` can end everything it started."""

    def __init__(self, args, nproc=0, inject=None):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env.pop(INJECT_ENV, None)
        if inject:
            env[INJECT_ENV] = inject
        # A free rendezvous port, not torchrun's fixed 29500: other launches may be running.
        launcher = (["-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                     "--master-port", str(free_port())] if nproc else [])
        self.proc = subprocess.Popen(
            [sys.executable, *launcher, str(ENTRY), "--profile", "tiny", "--seed", "5",
             "--log-interval", "1", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the output:\n{self.output[-3000:]}")

    def finish(self, timeout: float = 120.0) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(10)
        return code

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def launches():
    started = []
    yield lambda *args, **kwargs: started.append(Launch(*args, **kwargs)) or started[-1]
    for launch in started:  # a failed test leaves no training behind
        launch.kill()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] \
            != "Z"
    except OSError:
        return False


def _steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_sigterm_saves_and_exits_0_then_resume_and_a_second_signal(tmp_path, launches):
    ckpt, first, second = tmp_path / "ckpt", tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    run = launches(["--steps", "200", "--save", str(ckpt), "--metrics-jsonl", str(first)])
    run.wait_for(r"step +3/200")
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 0, run.output[-3000:]
    step = int(re.search(PREEMPTED + re.escape(str(ckpt)), run.output).group(1))
    assert step >= 3 and _steps(first) == list(range(1, step + 1))
    assert (ckpt / "latest").read_text().strip() == f"step_{step:07d}"

    # The resumed run starts at the next step; it hangs (injected) in the one after, where
    # a first SIGTERM waits for the step to end and a second exits at once, saving nothing.
    run = launches(["--steps", "200", "--load", str(ckpt), "--save", str(ckpt),
                    "--metrics-jsonl", str(second)], inject=f"hang@{step + 2}")
    run.wait_for(f"hanging in step {step + 2}")
    assert _steps(second) == [step + 1]
    run.proc.send_signal(signal.SIGTERM)
    run.wait_for("received SIGTERM: finishing this step")
    time.sleep(REPEAT_WINDOW_S + 0.2)
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish(30) == 128 + signal.SIGTERM
    assert "received SIGTERM again: exiting at once, without saving" in run.output
    assert (ckpt / "latest").read_text().strip() == f"step_{step:07d}"


def test_torchrun_sigterm_saves_then_a_killed_agent_takes_its_workers(tmp_path, launches):
    """SIGTERM to every worker (as Slurm signals every task): both ranks agree on the step,
    save once, and torchrun exits 0. The resumed run starts after that step; kill -9 of
    its agent then ends both workers within seconds (no training left behind)."""
    ckpt = tmp_path / "ckpt"
    run = launches(["--steps", "200", "--save", str(ckpt)], nproc=2)
    run.wait_for(r"step +3/200")
    workers = _children(run.proc.pid)
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    assert run.finish() == 0, run.output[-3000:]
    step = int(re.search(PREEMPTED + re.escape(str(ckpt)), run.output).group(1))
    assert run.output.count("saved checkpoint") == 1

    run = launches(["--steps", "200", "--load", str(ckpt)], nproc=2)
    assert run.wait_for(r"step +(\d+)/200").group(1) == str(step + 1)
    workers = _children(run.proc.pid)
    assert len(workers) == 2
    os.kill(run.proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers)), "workers outlived their torchrun agent"


def test_parent_watch_thread_alone(tmp_path):
    """The watch thread without prctl's death signal (systems without it)."""
    child = ("from megamed.training.fault import exit_with_parent; import time; "
             "assert exit_with_parent(poll_s=0.1, use_prctl=False); "
             "print('watching', flush=True); time.sleep(600)")
    middle = ("import subprocess, sys, time; "
              f"p = subprocess.Popen([sys.executable, '-c', {child!r}]); "
              "print(p.pid, flush=True); time.sleep(600)")
    env = dict(os.environ, TORCHELASTIC_RUN_ID="test", OMP_NUM_THREADS="1")
    parent = subprocess.Popen([sys.executable, "-c", middle], stdout=subprocess.PIPE,
                              text=True, env=env, start_new_session=True)
    try:
        pid = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "watching"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5.0
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the worker outlived its parent"
    finally:
        os.killpg(parent.pid, signal.SIGKILL)


def test_hung_rank_ends_the_job_with_every_stack(launches):
    timeout = 3.0
    run = launches(["--steps", "200", "--step-timeout-s", str(timeout)], nproc=2,
                   inject="hang@3:1")
    run.wait_for(r"step +2/200")
    hung_at = time.monotonic()
    code = run.finish(60)
    took = time.monotonic() - hung_at
    out = run.output
    assert code != 0 and took < timeout + 10.0, (code, took, out[-3000:])
    waiting = re.search(r"megamed rank 0: step 3 has run [\d.]+ s, over --step-timeout-s 3; "
                        r"waiting in (\w+)", out)
    assert waiting and waiting.group(1) in {"all_reduce", "reduce_scatter", "all_gather",
                                            "exchange", "barrier"}, out[-3000:]
    assert "megamed rank 1: step 3 has run" in out and "not waiting in a collective" in out
    assert out.count("(most recent call first)") >= 4, out  # per rank: main and watchdog
    assert "in step_started" in out and "in train_step" in out, out  # rank 1, rank 0


def _train_with_nans(save, metrics):
    cfg = load_config("tiny", {"parallel": {"zero_stage": 1},
                               "train": {"steps": 8, "seed": 3, "log_interval": 100,
                                         "save_interval": 1, "max_nonfinite_steps": 2}})
    try:
        pretrain(cfg, save=save, metrics_jsonl=metrics)
    except NonFiniteError as e:
        return str(e)
    return None


def _tensors(step_dir: Path) -> dict:
    """Every tensor of a checkpoint folder but the step number and the RNG states."""
    found = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in ("step", "rng", "torch_rng"):
                    walk(f"{prefix}.{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
        else:
            found[prefix] = value

    for path in sorted(step_dir.glob("*.pt")):
        walk(path.name, torch.load(path, weights_only=False))
    return found


def _same(a: dict, b: dict) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
               for k in a)


def test_nan_steps_are_skipped_then_the_run_stops(tmp_path, monkeypatch):
    """DP 2 with ZeRO-1, so the poisoned gradient lives on one rank's shard only: step 3
    is skipped on both ranks (model and optimizer state equal step 2's, Adam's count
    included), step 4 trains again, steps 5-6 stop the run (--max-nonfinite-steps 2)."""
    name = "layers.1.attention.wq.weight"
    monkeypatch.setenv(INJECT_ENV, f"nan@3:{name},nan@5-8:{name}")
    metrics = tmp_path / "metrics.jsonl"
    errors = run_distributed(_train_with_nans, 2, str(tmp_path), str(metrics))
    assert errors[0] == errors[1] == (
        f"stopped at step 6: steps 5-6 in a row (--max-nonfinite-steps 2) had a non-finite "
        f"gradient norm nan; first non-finite gradient: {name}")
    records = {r["step"]: r for r in map(json.loads, metrics.read_text().splitlines())}
    assert sorted(records) == [1, 2, 3, 4, 5, 6]
    assert [(records[s]["skipped_steps"], records[s]["nonfinite"]) for s in records] == \
        [(0, 0), (0, 0), (1, 1), (1, 0), (2, 1), (3, 2)]
    assert math.isnan(records[3]["grad_norm"]) and math.isfinite(records[4]["loss"])
    step = {s: _tensors(tmp_path / f"step_{s:07d}") for s in (2, 3, 4)}
    assert _same(step[2], step[3])
    assert not _same(step[3], step[4])


def test_the_command_line_reports_a_stop_in_one_line(monkeypatch, capsys):
    """examples/pretrain_32b.py in this process (one rank): exit status 1 and one line."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("pretrain_32b", ENTRY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for key, value in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=str(free_port()),
                           **{INJECT_ENV: "nan@2-9:embedding.tokens.weight"}).items():
        monkeypatch.setenv(key, value)
    assert module.main(["--profile", "tiny", "--steps", "6", "--log-interval", "100",
                        "--max-nonfinite-steps", "2"]) == 1
    err = capsys.readouterr().err
    assert err == ("error: stopped at step 3: steps 2-3 in a row (--max-nonfinite-steps 2) "
                   "had a non-finite gradient norm nan; first non-finite gradient: "
                   "embedding.tokens.weight\n")


def test_bad_injection_is_a_config_error():
    assert parse_injections("nan@3-5:layers.0.mlp.w1.weight, hang@7:1")[1].target == "1"
    with pytest.raises(ConfigError, match=INJECT_ENV):
        parse_injections("hang@x")
