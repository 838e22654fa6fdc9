"""What the training loop does when something goes wrong: pre-emption signals, a launcher
that died, non-finite steps and hung steps. The trainer holds one `FaultGuard` and calls it
at a few points of each step; the policies live here.

- Pre-emption. SIGTERM or SIGUSR1 (what Slurm and Kubernetes send before they kill a job)
  sets a flag; the step in progress finishes, every rank agrees at the step boundary (the
  flag is max-reduced over the world, one 8-byte all-reduce per step), the trainer saves
  and returns, and the process exits 0. A second signal exits at once with 128 + signal.
  A repeat within `REPEAT_WINDOW_S` counts as the same request: under Slurm every process
  of the job receives the signal, and torchrun forwards it to its workers again.
- Launcher death. Workers started by torchrun's agent ask the kernel for SIGKILL when
  their parent dies (prctl PR_SET_PDEATHSIG, Linux), and a thread also watches the parent
  pid (other systems, or a death signal lost to a setuid exec); see `exit_with_parent`.
- Non-finite steps. A step whose loss or global gradient norm is not finite makes no
  update (training/optimizer.py); the step counter and the data position advance. Every
  rank decides the same way, as the loss and the norm are reduced over all ranks. Skips
  are counted in the progress line and the metrics JSONL (`skipped_steps`, `nonfinite`);
  after `train.max_nonfinite_steps` in a row the run stops with `NonFiniteError`, naming
  the step and the first parameter (in model order) whose gradient is not finite. With
  fp16 an overflow only lowers the loss scale; it counts towards the stop once the scale is
  at its minimum (loss-scale underflow).
- Hung steps. With `train.step_timeout_s` > 0 a watchdog thread on every rank, armed at
  each step's start, writes the collective this rank is waiting in (parallel/collectives.py
  `blocked_in`) and every thread's Python stack (faulthandler) to stderr when the step
  overruns, then exits with `HANG_EXIT_CODE` (after `EXIT_GRACE_S`, in which the peers
  blocked in a collective with it write theirs) so that the launcher restarts the job. The
  step's whole iteration is timed: its logging and a checkpoint saved at it included.
  faulthandler's own timer, at twice the timeout (at least 10 s more), is the backstop for
  a main thread that holds the GIL and so would starve the watchdog thread.

Test-only fault injection: the environment variable MEGAMED_FAULT_INJECT holds
comma-separated `KIND@STEP[-LAST][:TARGET]`: `nan@3` puts a NaN into the gradient of the
first parameter this rank's optimizer holds at step 3 (`nan@3-9:layers.0.mlp.fc1.weight`:
of that parameter, steps 3 to 9); `hang@5:1` makes global rank 1 sleep for ever at the
start of step 5 (no target: every rank). Steps count from 1, as in the log.
"""
from __future__ import annotations

import ctypes
import faulthandler
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from megamed.config import ConfigError, TrainConfig
from megamed.parallel import collectives as C
from megamed.parallel.state import ParallelState

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
REPEAT_WINDOW_S = 1.0
HANG_EXIT_CODE = 124        # what timeout(1) returns for a command that ran out of time
EXIT_GRACE_S = 2.0          # a hung step's report waits this long before the exit
PARENT_GONE_EXIT_CODE = 129  # 128 + SIGHUP: the conventional status for a lost controller
INJECT_ENV = "MEGAMED_FAULT_INJECT"
_NAME_LEN = 200             # characters of a parameter name sent between ranks


class NonFiniteError(RuntimeError):
    """The run stopped: too many steps in a row had a non-finite loss or gradient."""


def _say(text: str) -> None:
    """One line to stderr without Python's buffered streams: safe inside a signal handler,
    which may interrupt a print in progress."""
    os.write(2, (text + "\n").encode())


def _who() -> str:
    rank = dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))
    return f"megamed rank {rank}"


# -- launcher death --------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_parent(poll_s: float = 1.0, use_prctl: bool = True) -> bool:
    """Under torchrun's agent (it sets TORCHELASTIC_RUN_ID), make this worker die with its
    agent: a killed launcher must not leave workers training (and holding GPUs) with
    nobody to collect them. Returns whether the process is now watched. A plain
    `python ...` launch is left alone: a shell that exits is no reason to stop training."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return False
    parent = os.getppid()
    if use_prctl and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl here: the thread below still watches
    threading.Thread(target=_watch_parent, args=(parent, poll_s), daemon=True,
                     name="megamed-parent-watch").start()
    return True


def _watch_parent(parent: int, poll_s: float) -> None:
    while os.getppid() == parent:
        time.sleep(poll_s)
    _say(f"{_who()}: the launcher (pid {parent}) is gone; exiting")
    os._exit(PARENT_GONE_EXIT_CODE)


# -- test-only fault injection ---------------------------------------------------------------

@dataclass(frozen=True)
class Injection:
    kind: str                 # "nan" | "hang"
    first: int                # steps first..last, counted from 1
    last: int
    target: Optional[str]     # nan: a parameter name; hang: a global rank; None: default

    def at(self, step: int) -> bool:
        return self.first <= step <= self.last


_INJECTION = re.compile(r"(nan|hang)@(\d+)(?:-(\d+))?(?::(.+))?")


def parse_injections(spec: str) -> list[Injection]:
    found = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        m = _INJECTION.fullmatch(item)
        if not m or (m.group(1) == "hang" and m.group(4) and not m.group(4).isdigit()):
            raise ConfigError(f"{INJECT_ENV}={spec!r}: cannot read {item!r}; expected "
                              f"nan@STEP[-LAST][:PARAMETER] or hang@STEP[-LAST][:RANK]")
        first = int(m.group(2))
        found.append(Injection(m.group(1), first, int(m.group(3) or first), m.group(4)))
    return found


# -- pre-emption -----------------------------------------------------------------------------

class Preemption:
    """SIGTERM / SIGUSR1 handlers (main thread only: Python delivers signals there)."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._first_at = 0.0
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for s in PREEMPTION_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum, self._first_at = signum, time.monotonic()
            _say(f"{_who()}: received {name}: finishing this step, then saving and exiting "
                 f"(send it again to exit at once)")
        elif time.monotonic() - self._first_at >= REPEAT_WINDOW_S:
            _say(f"{_who()}: received {name} again: exiting at once, without saving")
            os._exit(128 + signum)

    def close(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


# -- hang watchdog ---------------------------------------------------------------------------

class StepWatchdog:
    """Exits the process when a step runs longer than `timeout_s` (see the module
    docstring). `arm(step)` at a step's start, `disarm()` at its end."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._deadline: Optional[float] = None
        self._step, self._started, self._closed = 0, 0.0, False
        threading.Thread(target=self._watch, name="megamed-step-watchdog", daemon=True).start()

    def arm(self, step: int) -> None:
        with self._cond:
            self._step, self._started = step, time.monotonic()
            self._deadline = self._started + self.timeout_s
            self._cond.notify()
        faulthandler.dump_traceback_later(self.timeout_s + max(self.timeout_s, 10.0),
                                          exit=True)

    def disarm(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        with self._cond:
            self._deadline = None  # the thread wakes at the old deadline and waits again

    def close(self) -> None:
        self.disarm()
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                left = None if self._deadline is None else self._deadline - time.monotonic()
                if left is not None and left <= 0:
                    self._fire()
                self._cond.wait(left)

    def _fire(self) -> None:
        ran, waits = time.monotonic() - self._started, C.blocked_in()
        report = (f"{_who()}: step {self._step} has run {ran:.1f} s, over --step-timeout-s "
                  f"{self.timeout_s:g}; "
                  + ("waiting in " + "; ".join(waits) if waits else "not waiting in a collective")
                  + f". Stacks of every thread follow; exiting with status {HANG_EXIT_CODE} so "
                    f"that the launcher can restart the job\n").encode()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            # Into a file first, then one write: faulthandler writes in small pieces, which
            # interleave with the other ranks' when they share a log (torchrun's stderr).
            with tempfile.TemporaryFile() as f:
                faulthandler.dump_traceback(file=f, all_threads=True)
                f.seek(0)
                report += f.read()
        except OSError:
            os.write(2, report)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        else:
            while report:
                report = report[os.write(2, report):]
        # The other ranks' watchdogs fire within moments of this one (every rank arms at
        # the same step boundary), but a peer blocked in a collective with this process
        # fails at once when it exits, before writing its own report: leave them time.
        time.sleep(EXIT_GRACE_S)
        os._exit(HANG_EXIT_CODE)


# -- the trainer's handle --------------------------------------------------------------------

class FaultGuard:
    """A context manager around a run (`pretrain`): signals are caught inside it, and its
    exit restores the handlers and stops the watchdog, whatever happened. `bind` once the
    model and optimizer exist; then per step `step_started`, `inject_nonfinite` (inside
    the step, before the update), `after_update` and `step_finished`."""

    def __init__(self, cfg: TrainConfig):
        self.max_in_row, self.timeout_s = cfg.max_nonfinite_steps, cfg.step_timeout_s
        self.injections = parse_injections(os.environ.get(INJECT_ENV, ""))
        self.preemption = Preemption()
        self.watchdog: Optional[StepWatchdog] = None
        self.step = 0
        self.skipped = self.in_a_row = 0
        self.first_bad_step, self.bad_gradient, self.last_text = 0, None, ""
        self.stop_signal = 0

    def bind(self, state: ParallelState, chunks, optimizer, device: torch.device) -> None:
        """`chunks`: this rank's model chunks, in order (they name the parameters)."""
        self.state, self.optimizer, self.device = state, optimizer, device
        self.names, self.positions = {}, {}
        for c, chunk in enumerate(chunks):
            model_position = c * state.pp + state.pp_rank  # interleaved chunks' model order
            for i, (name, p) in enumerate(chunk.named_parameters()):
                self.names[id(p)] = name
                self.positions[id(p)] = model_position * 1_000_000 + i
        if self.timeout_s > 0:
            self.watchdog = StepWatchdog(self.timeout_s)

    def step_started(self, step: int) -> None:
        self.step = step
        if self.watchdog:
            self.watchdog.arm(step)
        rank = self.state.rank
        if any(j.kind == "hang" and j.at(step) and j.target in (None, str(rank))
               for j in self.injections):
            _say(f"{_who()}: {INJECT_ENV}: hanging in step {step} (test only)")
            while True:
                time.sleep(3600)

    def inject_nonfinite(self, optimizer) -> None:
        """Test only: NaN into one parameter's gradient (after the gradient reduction)."""
        for j in self.injections:
            if j.kind != "nan" or not j.at(self.step):
                continue
            for shard in optimizer.shards:
                for p, lo, hi in shard.segments:
                    if hi > lo and (j.target is None or self.names.get(id(p)) == j.target):
                        shard.grad[lo] = math.nan
                        return

    def after_update(self, step: int, loss: float, update) -> dict:
        """Counts a skipped update; at a non-finite one finds the first non-finite gradient
        (two small all-reduces, on every rank) and says so on rank 0. Returns the metrics'
        fields {"skipped_steps", "nonfinite"}."""
        if update is not None and update.skipped:
            self.skipped += 1
        if update is None or not update.nonfinite:
            self.in_a_row = 0
            return {"skipped_steps": self.skipped, "nonfinite": 0}
        self.in_a_row += 1
        if self.in_a_row == 1:
            self.first_bad_step = step
        self.bad_gradient = self._first_nonfinite_gradient()
        self.last_text = self._what(loss, update.grad_norm)
        if self.state.rank == 0:
            print(f"step {step}: {self.last_text}: update skipped ({self.in_a_row} in a row; "
                  f"the run stops at {self.max_in_row}); {self._gradient_text()}", flush=True)
        return {"skipped_steps": self.skipped, "nonfinite": self.in_a_row}

    def step_finished(self, step: int) -> bool:
        """At the step boundary, on every rank: raises NonFiniteError after too many
        non-finite steps in a row; returns True when a pre-emption signal reached any rank
        (the run should save and stop after this step)."""
        try:
            if self.in_a_row >= self.max_in_row:
                steps = (f"steps {self.first_bad_step}-{step} in a row"
                         if self.first_bad_step < step else f"step {step}")
                raise NonFiniteError(
                    f"stopped at step {step}: {steps} (--max-nonfinite-steps "
                    f"{self.max_in_row}) had {self.last_text}; {self._gradient_text()}")
            flag = torch.tensor([self.preemption.signum or 0], dtype=torch.int64,
                                device=self.device)
            self.stop_signal = int(C.all_reduce(flag, None, "max").item())
            return self.stop_signal > 0
        finally:
            if self.watchdog:
                self.watchdog.disarm()

    def report_preemption(self, step: int, steps: int, save: Optional[str]) -> None:
        """The one line that says where a pre-empted run saved (rank 0)."""
        if not self.stop_signal or self.state.rank != 0:
            return
        where = (f"checkpoint of step {step} in {save} (resume with --load {save})" if save
                 else "nothing saved (no --save given)")
        print(f"pre-empted by {signal.Signals(self.stop_signal).name}: stopped after step "
              f"{step} of {steps}; {where}", flush=True)

    def close(self) -> None:
        if self.watchdog:
            self.watchdog.close()
        self.preemption.close()

    def __enter__(self) -> "FaultGuard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the non-finite report ---------------------------------------------------------------

    def _what(self, loss: float, grad_norm: float) -> str:
        scaler = getattr(self.optimizer, "scaler", None)
        if scaler is not None and math.isnan(grad_norm):
            return (f"fp16 loss-scale underflow (gradients overflow at the minimum loss "
                    f"scale {scaler.min_scale:g})")
        bad = [f"{what} {value}" for what, value in (("loss", loss),
                                                     ("gradient norm", grad_norm))
               if not math.isfinite(value)]
        return "a non-finite " + " and ".join(bad or [f"loss {loss}"])

    def _gradient_text(self) -> str:
        if self.bad_gradient is None:
            return "every parameter gradient is finite (the loss is not)"
        return f"first non-finite gradient: {self.bad_gradient}"

    def _first_nonfinite_gradient(self) -> Optional[str]:
        """The name of the first parameter in model order whose gradient holds an inf or a
        nan on any rank, or None; the same answer on every rank."""
        local = [self.positions[id(p)] for p in self.optimizer.nonfinite_parameters()]
        none = 2 ** 62
        position = torch.tensor([-min(local, default=none)], dtype=torch.int64,
                                device=self.device)
        position = -int(C.all_reduce(position, None, "max").item())  # the minimum
        if position == none:
            return None
        # Whoever holds that parameter spells its name; max over ranks of the characters
        # (zeros elsewhere) brings it to every rank without an object collective.
        name = torch.zeros(_NAME_LEN, dtype=torch.int64, device=self.device)
        mine = next((self.names[k] for k, v in self.positions.items() if v == position), "")
        codes = list(mine.encode()[:_NAME_LEN])
        name[:len(codes)] = torch.tensor(codes, dtype=torch.int64)
        codes = C.all_reduce(name, None, "max").tolist()
        return bytes(c for c in codes if c).decode(errors="replace")
