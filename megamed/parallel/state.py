"""The process-group mesh: one object owns every group.

Rank layout (Megatron's tp-dp-pp order): TP varies fastest so a TP group sits inside a node
on NVLink, then DP, then PP:

    rank = tp_rank + tp * (dp_rank + dp * pp_rank)

`rank_groups` is pure arithmetic, tested without processes; `ParallelState.create` turns it
into torch.distributed groups. Every rank must create every group in the same order
(torch.distributed.new_group is collective), which `create` does.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Coordinates:
    tp_rank: int
    dp_rank: int
    pp_rank: int


def coordinates(rank: int, tp: int, dp: int) -> Coordinates:
    return Coordinates(tp_rank=rank % tp, dp_rank=(rank // tp) % dp, pp_rank=rank // (tp * dp))


def global_rank(tp_rank: int, dp_rank: int, pp_rank: int, tp: int, dp: int) -> int:
    return tp_rank + tp * (dp_rank + dp * pp_rank)


def rank_groups(world_size: int, tp: int, pp: int) -> dict[str, list[list[int]]]:
    """All groups of the mesh as lists of global ranks.

    tp: ranks sharing one model shard set; dp: ranks holding the same shard (gradients are
    averaged here); pp: one pipeline; model: tp x pp (a full model replica, for grad norms);
    embedding: first and last pipeline stage (tied embedding gradients).
    """
    if world_size % (tp * pp):
        raise ValueError(f"world size {world_size} not divisible by TP x PP = {tp * pp}")
    dp = world_size // (tp * pp)
    r = lambda t, d, p: global_rank(t, d, p, tp, dp)  # noqa: E731
    groups: dict[str, list[list[int]]] = {
        "tp": [[r(t, d, p) for t in range(tp)] for p in range(pp) for d in range(dp)],
        "dp": [[r(t, d, p) for d in range(dp)] for p in range(pp) for t in range(tp)],
        "pp": [[r(t, d, p) for p in range(pp)] for d in range(dp) for t in range(tp)],
        "model": [[r(t, d, p) for p in range(pp) for t in range(tp)] for d in range(dp)],
    }
    groups["embedding"] = [sorted({g[0], g[-1]}) for g in groups["pp"]]
    return groups


class ParallelState:
    """Groups, sizes and ranks of this process in the TP x DP x PP mesh."""

    def __init__(self, tp: int, pp: int, world_size: int, rank: int,
                 groups: Optional[dict[str, dist.ProcessGroup]] = None):
        self.tp, self.pp, self.world_size, self.rank = tp, pp, world_size, rank
        self.dp = world_size // (tp * pp)
        c = coordinates(rank, tp, self.dp)
        self.tp_rank, self.dp_rank, self.pp_rank = c.tp_rank, c.dp_rank, c.pp_rank
        self._groups = groups or {}
        # Middle pipeline stages belong to no embedding group.
        self._ranks = {name: next((g for g in gs if rank in g), None)
                       for name, gs in rank_groups(world_size, tp, pp).items()}

    @classmethod
    def create(cls, tp: int, pp: int) -> "ParallelState":
        """Builds every group of the mesh; torch.distributed must be initialised."""
        world_size, rank = dist.get_world_size(), dist.get_rank()
        mine: dict[str, dist.ProcessGroup] = {}
        for name, groups in rank_groups(world_size, tp, pp).items():
            for ranks in groups:
                group = dist.new_group(ranks)
                if rank in ranks:
                    mine[name] = group
        return cls(tp, pp, world_size, rank, mine)

    # group accessors ---------------------------------------------------------------------
    @property
    def tp_group(self) -> dist.ProcessGroup:
        return self._groups["tp"]

    @property
    def dp_group(self) -> dist.ProcessGroup:
        return self._groups["dp"]

    @property
    def pp_group(self) -> dist.ProcessGroup:
        return self._groups["pp"]

    @property
    def model_group(self) -> dist.ProcessGroup:
        return self._groups["model"]

    @property
    def embedding_group(self) -> Optional[dist.ProcessGroup]:
        """First and last pipeline stage; None on the stages in between."""
        return self._groups.get("embedding")

    def ranks(self, name: str) -> list[int]:
        """Global ranks of this process's group `name` (tp, dp, pp, model, embedding)."""
        return self._ranks[name]

    # pipeline position -------------------------------------------------------------------
    @property
    def is_first_stage(self) -> bool:
        return self.pp_rank == 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pp - 1

    @property
    def next_rank(self) -> Optional[int]:
        """Global rank of the next pipeline stage (same TP and DP rank), None on the last."""
        return None if self.is_last_stage else self._ranks["pp"][self.pp_rank + 1]

    @property
    def prev_rank(self) -> Optional[int]:
        return None if self.is_first_stage else self._ranks["pp"][self.pp_rank - 1]

    @property
    def ring_next_rank(self) -> int:
        """Next stage with wrap-around: interleaving feeds the last stage's chunk c into the
        first stage's chunk c + 1."""
        return self._ranks["pp"][(self.pp_rank + 1) % self.pp]

    @property
    def ring_prev_rank(self) -> int:
        return self._ranks["pp"][(self.pp_rank - 1) % self.pp]

    def describe(self) -> str:
        return (f"rank {self.rank}/{self.world_size}: tp {self.tp_rank}/{self.tp} "
                f"dp {self.dp_rank}/{self.dp} pp {self.pp_rank}/{self.pp}")


def init_distributed(backend: str = "auto", timeout_s: float = 600.0) -> None:
    """Initialises torch.distributed from torchrun's environment, or as a world of one.

    A single process without torchrun still gets a real (gloo/nccl) process group so that
    every code path, collectives included, is the same one a multi-process run takes.
    """
    if dist.is_initialized():
        return
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    if "RANK" not in os.environ:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend, timeout=timeout, **_attempt_store(timeout))


def _attempt_store(timeout: datetime.timedelta) -> dict:
    """Under torchrun, a store whose keys are private to this restart attempt. torchrun
    keeps one store across `--max-restarts`, and each new group's rendezvous keys are named
    the same in every attempt: a restarted group would read the dead workers' addresses
    and fail to connect (gloo: 'Connection refused'). Empty outside torchrun."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None:
        return {}
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent_hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                          is_master=rank == 0 and not agent_hosts, timeout=timeout)
    return {"store": dist.PrefixStore(f"megamed/attempt_{attempt}", store), "rank": rank,
            "world_size": world_size}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
