"""Pipeline parallelism: stage partitioning, point-to-point exchange and the schedules.

Schedules (Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU
Clusters", section 2.2):

  no_pipelining       PP=1: forward and backward of each micro batch in turn.
  one_f_one_b         PipeDream-Flush 1F1B: stage s runs P - s - 1 warm-up forwards, then
                      alternates one forward and one backward, then drains the backwards.
                      At most P - s micro batches are in flight on stage s.
  interleaved_1f1b    each stage holds V model chunks; chunk c of stage s is virtual stage
                      c * P + s, so the bubble shrinks from (P-1)/(M+P-1) to (P-1)/(V*M+P-1).
  forward_only        evaluation (under torch.no_grad): the interleaved schedule's forward
                      order with every pass a warm-up pass, for any P and V (V = 1 included).

A schedule is a plain function of (runner, sizes). It only decides the *order*; the runner
does the compute and the communication. `Runner` executes for real; `DryRunner` records the
order without touching a tensor, which is what `--print-schedule` shows and what the tests
check against the paper.

The runner knows neither models nor losses (Megatron-Core's contract): it calls
`forward_step(chunk, micro_batch, input) -> (output, loss_fn)`, sends `output` on, or, where
`loss_fn` is not None (the last virtual stage), starts backward from `loss_fn(output)`; and it
calls `last_backward(chunk)` before each chunk's last backward of the step, where data
parallelism arms its gradient reductions. The loss arithmetic is training/loss.py's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch.autograd import Variable

from megamed.config import check_micro_batches
from megamed.parallel import collectives as C


# -- partitioning --------------------------------------------------------------------------

def partition(num_layers: int, pp: int, virtual_stages: int,
              encoder_layers: float = 0.0) -> list[list[range]]:
    """[stage][chunk] -> the decoder layers of that model chunk. Chunk c of stage s is
    virtual stage c * P + s and the layers run in virtual-stage order (Megatron's
    assignment).

    Stage 0 also runs the encoders and projectors, worth `encoder_layers` decoder layers of
    FLOPs (model/flops.py: encoder_cost_in_layers). It gets the layer count n0 that
    minimises the busiest stage's cost max(n0 + encoder_layers, the other stages' share),
    the most layers among equal costs, so without encoders (or with cheap ones) every stage
    holds L / P as before. The other stages split the rest evenly (earlier ones take the
    remainder); within a stage the chunks split its layers evenly, chunk 0 (the one with the
    embedding and the encoders on stage 0) the fewest. Every chunk keeps at least one layer."""
    P, V = pp, virtual_stages
    counts = [num_layers]
    if P > 1:
        rest = num_layers - V  # stage 0 takes at most this much and leaves V per other stage
        first = min(range(V, rest - (P - 2) * V + 1),
                    key=lambda n: (max(n + encoder_layers, -(-(num_layers - n) // (P - 1))),
                                   -n))
        others = _split(num_layers - first, P - 1)
        counts = [first] + others
    sizes = [_split(n, V)[::-1] for n in counts]  # [stage][chunk], chunk 0 the smallest
    out = [[None] * V for _ in range(P)]
    start = 0
    for c in range(V):
        for s in range(P):
            out[s][c] = range(start, start + sizes[s][c])
            start += sizes[s][c]
    return out


def _split(n: int, parts: int) -> list[int]:
    """n as `parts` near-equal counts, the larger ones first."""
    return [n // parts + (i < n % parts) for i in range(parts)]


def chunk_layers(num_layers: int, pp: int, virtual_stages: int, stage: int, chunk: int,
                 encoder_layers: float = 0.0) -> range:
    """Layers of model chunk `chunk` on pipeline stage `stage` (see `partition`)."""
    return partition(num_layers, pp, virtual_stages, encoder_layers)[stage][chunk]


def describe_partition(num_layers: int, pp: int, virtual_stages: int,
                       tie_embeddings: bool = False, encoder_layers: float = 0.0) -> str:
    """A table of which layers live on which pipeline stage."""
    lines = [f"pipeline partition: {num_layers} layers on {pp} stages x {virtual_stages} "
             f"chunk(s)" + (f"; the encoders cost {encoder_layers:.2f} decoder layers of "
                            f"FLOPs on stage 0" if encoder_layers else "")]
    layers = partition(num_layers, pp, virtual_stages, encoder_layers)
    for s in range(pp):
        parts = [f"chunk {c}: layers {r.start}-{r.stop - 1}" for c, r in enumerate(layers[s])]
        extra = []
        if s == 0:
            extra.append("embedding" + (", encoders, projectors" if encoder_layers else ""))
        if s == pp - 1:
            extra.append("final norm, output, loss" + (" (tied copy)" if tie_embeddings and
                                                        pp > 1 else ""))
        lines.append(f"  stage {s}: " + "; ".join(parts) +
                     (f"; + {', '.join(extra)}" if extra else ""))
    return "\n".join(lines)


# -- runners -------------------------------------------------------------------------------

@dataclass
class DryRunner:
    """Records the order of forward/backward passes: events ("F"|"B", micro batch, chunk)."""
    pp: int
    stage: int
    virtual_stages: int = 1
    events: list = field(default_factory=list)

    @property
    def is_first_stage(self) -> bool:
        return self.stage == 0

    @property
    def is_last_stage(self) -> bool:
        return self.stage == self.pp - 1

    def forward(self, chunk: int, micro: int, x):
        self.events.append(("F", micro, chunk))
        return "activation"

    def backward(self, chunk: int, micro: int, x, y, dy):
        self.events.append(("B", micro, chunk))
        return "gradient"

    def exchange(self, send_next=None, send_prev=None, recv_prev=False, recv_next=False):
        return ("activation" if recv_prev else None), ("gradient" if recv_next else None)


# (chunk, micro batch, input or None) -> (output, loss function or None)
ForwardStep = Callable[[int, int, Optional[torch.Tensor]],
                       tuple[torch.Tensor, Optional[Callable[[torch.Tensor], torch.Tensor]]]]


@dataclass
class Runner(DryRunner):
    """Runs the passes through `forward_step` and talks to the neighbouring stages. Tracks
    the micro batches in flight for the memory tests."""
    forward_step: Optional[ForwardStep] = None
    last_backward: Optional[Callable[[int], None]] = None
    num_micro_batches: int = 1
    shape: tuple = ()
    dtype: torch.dtype = torch.float32
    device: torch.device = torch.device("cpu")
    prev_rank: Optional[int] = None
    next_rank: Optional[int] = None
    group: Optional[dist.ProcessGroup] = None

    def __post_init__(self):
        self.in_flight = self.max_in_flight = 0
        self.held_outputs: list[torch.Tensor] = []   # outputs still waiting for backward
        self.max_held_output_bytes = 0

    def forward(self, chunk: int, micro: int, x):
        if not torch.is_grad_enabled():  # forward only (evaluation): nothing kept for backward
            out, loss_fn = self.forward_step(chunk, micro, x)
            return out if loss_fn is None else loss_fn(out)
        if x is not None:
            x.requires_grad_()
        out, loss_fn = self.forward_step(chunk, micro, x)
        if loss_fn is not None:
            out = loss_fn(out)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.held_outputs.append(out)
        return out

    def backward(self, chunk: int, micro: int, x, y, dy):
        if micro == self.num_micro_batches - 1 and self.last_backward is not None:
            self.last_backward(chunk)
        run_backward(y, dy)
        self.in_flight -= 1
        self.held_outputs = [t for t in self.held_outputs if t is not y]
        return None if x is None else x.grad

    def exchange(self, send_next=None, send_prev=None, recv_prev=False, recv_next=False):
        """One batched exchange with both neighbours (collectives.exchange); returns
        (from_prev, from_next)."""
        from_prev = self._empty() if recv_prev else None
        from_next = self._empty() if recv_next else None
        C.exchange(self.prev_rank, self.next_rank, self.group, self.stage % 2 == 0,
                   send_next, send_prev, from_prev, from_next)
        if send_next is not None:
            deallocate(send_next)
        held = sum(t.untyped_storage().nbytes() for t in self.held_outputs)
        self.max_held_output_bytes = max(self.max_held_output_bytes, held)
        return from_prev, from_next

    def _empty(self) -> torch.Tensor:
        return torch.empty(self.shape, dtype=self.dtype, device=self.device)


def deallocate(output: torch.Tensor) -> None:
    """Frees an activation once it has been sent (Megatron's "deallocate output" trick): the
    next stage owns the values now, and the backward pass needs only the autograd graph, not
    the output's data. Its `.data` becomes a one-element placeholder."""
    if output.grad_fn is not None and output._base is None:
        output.data = torch.empty((1,), device=output.device, dtype=output.dtype)


def run_backward(output: torch.Tensor, grad: Optional[torch.Tensor]) -> None:
    """Backward from `output` with `grad` (None for a scalar loss). Calls the autograd engine
    directly because `torch.autograd.backward` would reject the deallocated output's shape."""
    if grad is None:
        grad = torch.ones_like(output)
    Variable._execution_engine.run_backward(
        tensors=(output,), grad_tensors=(grad,), keep_graph=False, create_graph=False,
        inputs=(), allow_unreachable=True, accumulate_grad=True)


# -- schedules -----------------------------------------------------------------------------

def no_pipelining(run, num_micro_batches: int) -> None:
    """PP=1: one micro batch in flight at a time."""
    for m in range(num_micro_batches):
        y = run.forward(0, m, None)
        run.backward(0, m, None, y, None)


def one_f_one_b(run, num_micro_batches: int) -> None:
    """Non-interleaved 1F1B on stage `run.stage` of `run.pp`."""
    M = num_micro_batches
    warmup = min(run.pp - run.stage - 1, M)
    steady = M - warmup
    inputs, outputs = [], []
    first, last = run.is_first_stage, run.is_last_stage

    def send_forward(y):
        run.exchange(send_next=None if last else y)

    def recv_forward():
        return None if first else run.exchange(recv_prev=True)[0]

    for m in range(warmup):
        x = recv_forward()
        y = run.forward(0, m, x)
        send_forward(y)
        inputs.append(x)
        outputs.append(y)
    x = recv_forward() if steady else None
    for i in range(steady):
        m = warmup + i
        y = run.forward(0, m, x)
        dy = None if last else run.exchange(send_next=y, recv_next=True)[1]
        inputs.append(x)
        outputs.append(y)
        dx = run.backward(0, i, inputs.pop(0), outputs.pop(0), dy)
        if i == steady - 1:
            if not first:
                run.exchange(send_prev=dx)
        else:
            x = None if first else run.exchange(send_prev=dx, recv_prev=True)[0]
    for i in range(steady, M):
        dy = None if last else run.exchange(recv_next=True)[1]
        dx = run.backward(0, i, inputs.pop(0), outputs.pop(0), dy)
        if not first:
            run.exchange(send_prev=dx)


def interleaved_1f1b(run, num_micro_batches: int) -> None:
    """Interleaved 1F1B with `run.virtual_stages` chunks per stage (Megatron-LM's
    `forward_backward_pipelining_with_interleaving`). Stages form a ring: the last stage's
    output of chunk c feeds the first stage's chunk c + 1."""
    P, V, s, M = run.pp, run.virtual_stages, run.stage, num_micro_batches
    total = M * V
    first, last = run.is_first_stage, run.is_last_stage
    if M == P:
        warmup, all_warmup = total, True
    else:
        warmup, all_warmup = min((P - s - 1) * 2 + (V - 1) * P, total), False
    steady = total - warmup
    inputs = [[] for _ in range(V)]
    outputs = [[] for _ in range(V)]
    grads = [[] for _ in range(V)]

    def chunk_of(k: int, forward: bool) -> int:
        c = (k % (P * V)) // P
        return c if forward else V - c - 1

    def micro_of(k: int) -> int:
        return (k // (P * V)) * P + k % P

    def forward(k: int):
        c = chunk_of(k, True)
        if first and c == 0 and len(inputs[c]) == len(outputs[c]):
            inputs[c].append(None)
        y = run.forward(c, micro_of(k), inputs[c][-1])
        outputs[c].append(y)
        return None if (last and c == V - 1) else y

    def backward(k: int):
        c = chunk_of(k, False)
        if last and c == V - 1 and not grads[c]:
            grads[c].append(None)
        dx = run.backward(c, micro_of(k), inputs[c].pop(0), outputs[c].pop(0), grads[c].pop(0))
        return None if (first and c == 0) else dx

    inputs[0].append(None if first else run.exchange(recv_prev=True)[0])
    for k in range(warmup):
        y = forward(k)
        next_chunk = chunk_of(k + 1, True)
        recv_prev = not (first and next_chunk == 0) and k != total - 1
        if k == warmup - 1 and not all_warmup:
            x, dy = run.exchange(send_next=y, recv_prev=recv_prev, recv_next=not last)
            grads[V - 1].append(dy)
        else:
            x, _ = run.exchange(send_next=y, recv_prev=recv_prev)
        inputs[next_chunk].append(x)

    for i in range(steady):
        fk = i + warmup
        y = forward(fk)
        dx = backward(i)
        recv_prev, recv_next = True, True
        if first:
            next_f = chunk_of(fk - (P - 1), True)
            recv_prev = next_f != V - 1
            next_f += 1
        else:
            next_f = chunk_of(fk + 1, True)
        if last:
            next_b = chunk_of(i - (P - 1), False)
            recv_next = next_b != 0
            next_b -= 1
        else:
            next_b = chunk_of(i + 1, False)
        if i == steady - 1:
            recv_prev = False
        x, dy = run.exchange(send_next=y, send_prev=dx, recv_prev=recv_prev,
                             recv_next=recv_next)
        if recv_prev:
            inputs[next_f].append(x)
        if recv_next:
            grads[next_b].append(dy)

    if all_warmup:
        grads[V - 1].append(None if last else run.exchange(recv_next=True)[1])
    for k in range(steady, total):
        dx = backward(k)
        next_b = chunk_of(k + 1, False)
        recv_next = not (last and next_b == V - 1) and k != total - 1
        _, dy = run.exchange(send_prev=dx, recv_next=recv_next)
        grads[next_b].append(dy)


def forward_only(run, num_micro_batches: int) -> None:
    """Every micro batch through every chunk, no backward (Megatron-Core runs its schedules
    with forward_only and every micro batch a warm-up one). The order is interleaved 1F1B's:
    chunk c of micro batches in groups of P, so the last stage's chunk c output reaches the
    first stage's chunk c + 1 (the ring) just as it needs it; each send to the next stage is
    paired with the receive for the following pass in one exchange, so stage s's k-th
    exchange meets stage s + 1's (k - 1)-th and the ring closes without a deadlock. With V = 1
    this is plain receive, forward, send per micro batch."""
    P, V = run.pp, run.virtual_stages
    total = num_micro_batches * V
    first, last = run.is_first_stage, run.is_last_stage

    def chunk_of(k: int) -> int:
        return (k % (P * V)) // P

    def micro_of(k: int) -> int:
        return (k // (P * V)) * P + k % P

    x = None if first else run.exchange(recv_prev=True)[0]
    for k in range(total):
        c = chunk_of(k)
        y = run.forward(c, micro_of(k), x)
        send = None if (last and c == V - 1) else y
        recv = k + 1 < total and not (first and chunk_of(k + 1) == 0)
        x, _ = run.exchange(send_next=send, recv_prev=recv)


def select_schedule(pp: int, virtual_stages: int):
    if pp == 1:
        return no_pipelining
    return one_f_one_b if virtual_stages == 1 else interleaved_1f1b


def dry_run(pp: int, virtual_stages: int, num_micro_batches: int,
            schedule: Optional[Callable] = None) -> list[list[tuple]]:
    """The order of passes on every stage, computed without processes (default: the
    training schedule `select_schedule` picks)."""
    check_micro_batches(pp, virtual_stages, num_micro_batches)
    schedule = schedule or select_schedule(pp, virtual_stages)
    orders = []
    for stage in range(pp):
        run = DryRunner(pp, stage, virtual_stages)
        schedule(run, num_micro_batches)
        orders.append(run.events)
    return orders


def format_schedule(orders: list[list[tuple]], virtual_stages: int) -> str:
    """One line per stage: F3 = forward of micro batch 3; with chunks, F3.1 = chunk 1."""
    lines = []
    for stage, events in enumerate(orders):
        cells = [f"{op}{m}" + (f".{c}" if virtual_stages > 1 else "") for op, m, c in events]
        lines.append(f"stage {stage}: " + " ".join(cells))
    return "\n".join(lines)

