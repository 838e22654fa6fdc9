"""When to save, saving behind training, and choosing the checkpoint to resume from.

`Checkpointer` is the trainer's one object for checkpoints (the files: checkpoint/format.py):

- `maybe_save(step, collect, val_loss)` after every optimizer step: saves every
  --save-interval steps or --save-interval-minutes minutes, whichever comes first. The
  state `collect(step)` returns must be a CPU snapshot training no longer changes (the
  trainer's `checkpoint_state` copies it with `cpu_copy`, the only time training waits),
  then a background thread writes this rank's files into DIR/.tmp_step_N/ and fsyncs them.
  At a later step boundary, once every rank's thread is done, rank 0 writes the manifest
  with the files' checksums and publishes the step (atomic rename, then `latest`).
- `finish(step)` saves the last step (unless just saved) and waits for the write.
- `resume()` picks the newest published step whose files all verify, on every rank.

Agreement between ranks always goes through collectives run by the MAIN thread on a
separate gloo group created up front: the writer threads never communicate, and CPU
tensors work whatever the training backend (NCCL). Per step that is one small all-reduce,
and only while a write is in flight or a time cadence is set. Time is rank 0's clock:
its decision is the all-reduce's maximum, so all ranks save at the same step.

A failed write (read-only or full folder) is reported in one line by the rank it failed
on, counted (`counters["checkpoint_save_failures"]`, merged into the metrics records),
and training goes on: the next interval tries again. A checkpoint that fails to verify at
resume is reported (file and reason) and the previous one is tried; one of another model,
profile or layout is refused (CheckpointMismatch).
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from megamed.checkpoint.format import (CheckpointError, CheckpointMismatch, candidates,
                                       read_step_manifest, remove_leftovers, remove_step,
                                       step_dir_name, step_of, tmp_dir)
from megamed.checkpoint.load import check_compatible, read_rank_files
from megamed.checkpoint.save import publish_step, write_rank_files
from megamed.config import Config, ConfigError
from megamed.parallel.state import ParallelState

AUTO = "auto"


def cpu_copy(obj: Any) -> Any:
    """A deep copy with every tensor cloned to CPU: the snapshot a background write may
    read while training changes the originals (and compact: a view no longer drags its
    whole flat buffer into the file)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Write:
    """One step's write of this rank's files, in a thread or in place."""

    def __init__(self, directory: str, step: int, state: ParallelState, payload: dict,
                 optimizer: dict, cfg: Config, val_loss: Optional[float], background: bool):
        self.step, self.val_loss, self.error = step, val_loss, None
        args = (directory, step, state, payload, optimizer, cfg)
        self.thread = threading.Thread(target=self._run, args=args, daemon=True,
                                       name=f"checkpoint-{step}") if background else None
        if self.thread:
            self.thread.start()
        else:
            self._run(*args)

    def _run(self, *args) -> None:
        try:
            write_rank_files(*args)
        except OSError as e:  # read-only, full, gone: reported by the main thread
            self.error = f"{getattr(e, 'filename', None) or args[0]}: {e.strerror or e}"

    def done(self) -> bool:
        return self.thread is None or not self.thread.is_alive()

    def wait(self) -> None:
        if self.thread:
            self.thread.join()


class Checkpointer:
    def __init__(self, cfg: Config, state: ParallelState, save: Optional[str] = None,
                 load: Optional[str] = None, event: Callable[..., None] = lambda *a, **k: None):
        t = cfg.train
        if load == AUTO and not save:
            raise ConfigError("--load auto resumes from the --save directory: give --save DIR")
        self.cfg, self.state, self.dir, self.load_arg, self.event = cfg, state, save, load, event
        self.interval, self.seconds = t.save_interval, t.save_interval_minutes * 60
        self.keep_last, self.keep_best = t.keep_last, t.keep_best
        self.background = t.async_save
        self.group = dist.new_group(backend="gloo") if (save or load) else None
        self.pending: Optional[_Write] = None
        self.resumed_from: Optional[Path] = None
        self.last_saved: Optional[int] = None
        self.last_time = time.monotonic()
        self.counters: dict[str, int] = {}  # {"checkpoint_save_failures": n} after one
        if save:
            if state.rank == 0:
                try:
                    remove_leftovers(Path(save))
                except OSError as e:  # an unreadable folder: the saves will say so
                    warn(f"checkpoint folder {save}: {e.strerror or e}")
            dist.barrier(group=self.group)

    # -- saving -------------------------------------------------------------------------------

    def maybe_save(self, step: int, collect: Callable[[int], tuple[dict, dict]],
                   val_loss: Optional[float] = None) -> Optional[Path]:
        """After optimizer step `step`. `collect(step)` -> (payload, optimizer state) of
        this rank, run on every rank (it may gather parameters: ZeRO-3). Returns the step
        folder published now, if any."""
        if not self.dir:
            return None
        due = bool(self.interval) and step % self.interval == 0
        time_due = self.seconds > 0 and self.state.rank == 0 and \
            time.monotonic() - self.last_time >= self.seconds
        published = None
        if self.pending is not None or self.seconds > 0:
            time_due, busy = self._agree(time_due, self.pending is not None and
                                         not self.pending.done())
            if self.pending is not None and not busy:
                published = self._complete()
        if due or time_due:
            published = self.save(step, collect, val_loss) or published
        return published

    def save(self, step: int, collect: Callable[[int], tuple[dict, dict]],
             val_loss: Optional[float] = None) -> Optional[Path]:
        """Starts saving `step` now (every rank); waits for the previous save first. Returns
        the folder a synchronous save published (None while a background write runs)."""
        published = self.wait()
        snapshot = collect(step)  # already a CPU copy: copying it again cost the step time
        self.last_saved, self.last_time = step, time.monotonic()
        self.pending = _Write(self.dir, step, self.state, *snapshot, self.cfg, val_loss,
                              self.background)
        if not self.background:
            published = self.wait()
        return published

    def wait(self) -> Optional[Path]:
        """Waits for the write in flight and publishes it (every rank)."""
        if self.pending is None:
            return None
        self.pending.wait()
        return self._complete()  # its all-reduce: every rank's files are on disk

    def finish(self, step: int, collect: Callable[[int], tuple[dict, dict]]) -> None:
        """End of training: saves `step` unless it was just saved, and waits for it."""
        if self.dir and self.last_saved != step:
            self.save(step, collect)
        self.wait()

    def _agree(self, time_due: bool, busy: bool) -> tuple[bool, bool]:
        """(rank 0 says a save is due, some rank's write is still running): one all-reduce
        (max) from the main thread."""
        flags = torch.tensor([int(time_due), int(busy)], dtype=torch.int32)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.group)
        return bool(flags[0]), bool(flags[1])

    def _complete(self) -> Optional[Path]:
        """Every rank's write is over: publish (rank 0) or report the failure."""
        write, self.pending = self.pending, None
        failed = torch.tensor([int(write.error is not None)], dtype=torch.int32)
        dist.all_reduce(failed, op=dist.ReduceOp.MAX, group=self.group)
        where = Path(self.dir) / step_dir_name(write.step)
        if write.error is not None:
            warn(f"checkpoint save of step {write.step} failed on rank {self.state.rank}: "
                 f"{write.error}; training goes on, the next save tries again")
        published = None
        if not failed.item() and self.state.rank == 0:
            try:
                published = publish_step(self.dir, write.step, self.state, self.cfg,
                                         {"val_loss": write.val_loss})
                self._retain()
            except OSError as e:
                warn(f"checkpoint save of step {write.step} failed on rank 0 while "
                     f"publishing: {getattr(e, 'filename', None) or where}: {e.strerror or e}; "
                     f"training goes on, the next save tries again")
        if failed.item() or (self.state.rank == 0 and published is None):
            self.counters["checkpoint_save_failures"] = \
                self.counters.get("checkpoint_save_failures", 0) + 1
            self.event("checkpoint_save", step=write.step, checkpoint=str(where),
                       status="failed")
            if self.state.rank == 0:  # the partial files; the next save starts afresh
                shutil.rmtree(tmp_dir(Path(self.dir), write.step), ignore_errors=True)
            return None
        if published is not None:
            print(f"saved checkpoint {published}", flush=True)
        self.event("checkpoint_save", step=write.step, checkpoint=str(where))
        return published

    def _retain(self) -> None:
        """Rank 0: keeps the newest --keep-last steps and the --keep-best with the lowest
        validation loss; removes the others (everything is kept when --keep-last is 0)."""
        if not self.keep_last:
            return
        steps = candidates(Path(self.dir))  # newest first, none newer than `latest`
        keep = set(steps[:self.keep_last])
        scored = []
        for d in steps:
            try:
                loss = read_step_manifest(d).get("val_loss")
            except CheckpointError:
                continue
            if loss is not None:
                scored.append((loss, -step_of(d.name), d))
        keep |= {d for _, _, d in sorted(scored)[:self.keep_best]}
        for d in steps:
            if d not in keep:
                remove_step(d)

    # -- resuming ------------------------------------------------------------------------------

    def resume(self) -> Optional[tuple[int, dict[str, Any]]]:
        """(step, this rank's payload) of the newest usable checkpoint, the same step on
        every rank; None when there is nothing to resume from (a fresh run)."""
        root, explicit = self._resume_dir()
        if root is None:
            return None
        found = [str(d) for d in candidates(root)] if self.state.rank == 0 else None
        found = self._broadcast(found)
        if not found:
            if explicit:
                raise CheckpointError(root, "no 'latest' file: not a megamed checkpoint "
                                            "directory, or no save finished")
            if self.load_arg == AUTO and self.state.rank == 0:
                print(f"no checkpoint in {root}: starting from scratch", flush=True)
            return None
        first_error = None
        for step_dir in map(Path, found):
            payload, error = self._read(step_dir)
            errors = [e for e in self._gather(error) if e]
            if not errors:
                if self.state.rank == 0:
                    print(f"resuming from {step_dir} (step {payload['step']})", flush=True)
                self.resumed_from = step_dir
                self.last_saved = payload["step"] if root == Path(self.dir or "") else None
                return payload["step"], payload
            first_error = first_error or errors[0]
            if self.state.rank == 0:
                for e in sorted(set(errors)):
                    warn(f"{e}; skipped, trying the previous checkpoint")
        raise CheckpointError(root, f"no checkpoint verifies; the newest: {first_error}")

    def _resume_dir(self) -> tuple[Optional[Path], bool]:
        """(directory to resume from, whether the user named it: --load DIR)."""
        if self.load_arg and self.load_arg != AUTO:
            return Path(self.load_arg), True
        return (Path(self.dir), False) if self.dir else (None, False)

    def _read(self, step_dir: Path) -> tuple[Optional[dict], Optional[str]]:
        """This rank's verified payload, or the reason it is unusable. A checkpoint of
        another model or layout is refused outright: the manifest is the same for all
        ranks, so they all raise together."""
        try:
            meta = read_step_manifest(step_dir)
            check_compatible(step_dir, meta, self.state, self.cfg)
            return read_rank_files(step_dir, meta, self.state, self.cfg), None
        except CheckpointMismatch:
            raise
        except CheckpointError as e:
            return None, str(e)

    def _broadcast(self, obj):
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def _gather(self, obj) -> list:
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj, group=self.group)
        return out
