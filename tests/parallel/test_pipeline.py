"""Pipeline schedules: the order of passes against the paper, executability of that order
across stages, memory discipline, and bad input."""
import pytest
import torch

from distributed import ChildError, run_distributed
from megamed.config import ConfigError, check_micro_batches, load_config, resolve
from megamed.parallel.pipeline import Runner, chunk_layers, dry_run, one_f_one_b


def warmup_forwards(events):
    """Forward passes a stage runs before its first backward, minus the steady state's
    first forward (the paper's warm-up count)."""
    first_backward = next(i for i, (op, _, _) in enumerate(events) if op == "B")
    return first_backward - 1


def test_1f1b_order_p4_m8():
    P, M = 4, 8
    for stage, events in enumerate(dry_run(P, 1, M)):
        assert warmup_forwards(events) == P - stage - 1
        # After the warm-up, forwards and backwards alternate (one forward, one backward).
        steady = events[P - stage - 1:P - stage - 1 + 2 * (M - (P - stage - 1))]
        assert [op for op, _, _ in steady] == ["F", "B"] * (M - (P - stage - 1))
        forwards = [m for op, m, _ in events if op == "F"]
        backwards = [m for op, m, _ in events if op == "B"]
        assert forwards == backwards == list(range(M))


def test_interleaved_order_matches_megatron():
    # Narayanan et al. 2021, fig. 4 (P=4, V=2, M=8): device 1 runs micro batches 1-4 of its
    # first chunk, then 1-4 of its second chunk, then 5, 6 ... before its first backward,
    # which is micro batch 1 of the *last* chunk.
    P, V, M = 4, 2, 8
    orders = dry_run(P, V, M)
    stage0 = [f"{op}{m}.{c}" for op, m, c in orders[0]]
    assert stage0[:12] == ["F0.0", "F1.0", "F2.0", "F3.0", "F0.1", "F1.1", "F2.1", "F3.1",
                           "F4.0", "F5.0", "F6.0", "B0.1"]
    for stage, events in enumerate(orders):
        assert warmup_forwards(events) == (P - stage - 1) * 2 + (V - 1) * P
        assert sorted(e for e in events if e[0] == "F") == \
            sorted(("F", m, c) for m in range(M) for c in range(V))
        assert sorted(e for e in events if e[0] == "B") == \
            sorted(("B", m, c) for m in range(M) for c in range(V))


def _executable(orders, P, V):
    """Simulates all stages in lock-step: a forward needs the previous virtual stage's
    forward of the same micro batch, a backward the next virtual stage's backward. The
    per-stage orders must be runnable to the end without waiting forever."""
    done, cursors = set(), [0] * P
    progress = True
    while progress:
        progress = False
        for s in range(P):
            if cursors[s] == len(orders[s]):
                continue
            op, m, c = orders[s][cursors[s]]
            v = c * P + s  # virtual stage
            if op == "F":
                ready = v == 0 or ("F", m, v - 1) in done
            else:
                ready = ("F", m, v) in done and (v == P * V - 1 or ("B", m, v + 1) in done)
            if ready:
                done.add((op, m, v))
                cursors[s] += 1
                progress = True
    return all(cursors[s] == len(orders[s]) for s in range(P))


@pytest.mark.parametrize("P, V, M", [(2, 1, 4), (4, 1, 8), (4, 1, 4), (2, 2, 4), (4, 2, 8),
                                     (4, 2, 4), (2, 3, 6)])
def test_schedules_are_executable(P, V, M):
    assert _executable(dry_run(P, V, M), P, V)


def test_micro_batch_checks():
    with pytest.raises(ConfigError, match="1F1B needs at least PP = 4 micro batches"):
        check_micro_batches(4, 1, 3)
    with pytest.raises(ConfigError, match=r"\(6\) to be a multiple of PP = 4"):
        check_micro_batches(4, 2, 6)
    cfg = load_config("tiny", {"parallel": {"pp": 4, "virtual_stages": 4}})
    with pytest.raises(ConfigError, match="PP x virtual stages = 4 x 4 = 16"):
        resolve(cfg, world_size=4)


def test_megatron_chunk_assignment():
    # 8 layers, P=2, V=2: virtual stage c*P+s holds layers 2(c*P+s), 2(c*P+s)+1.
    assert [list(chunk_layers(8, 2, 2, s, c)) for s in range(2) for c in range(2)] == \
        [[0, 1], [4, 5], [2, 3], [6, 7]]


def memory_worker(deallocate):
    """One 1F1B step on PP=2 with M=8; returns (stage, max in flight, max bytes of outputs
    held for backward, bytes of one activation)."""
    import megamed.parallel.pipeline as pipeline
    from megamed.parallel.state import ParallelState
    from megamed.model.build import build_chunks
    if not deallocate:
        pipeline.deallocate = lambda output: None
    cfg = load_config("tiny", {"parallel": {"pp": 2}})
    state = ParallelState.create(1, 2)
    chunks = build_chunks(cfg, state.tp_group, state.pp_rank, "cpu", seed=cfg.train.seed)
    m = cfg.model
    shape = (1, m.seq_length, m.hidden_size)
    tokens = torch.randint(0, m.vocab_size, (1, m.seq_length + 1))
    chunk, = chunks

    def forward_step(c, micro, x):
        out = chunk(tokens[:, :-1] if chunk.has_embedding else x,
                    tokens[:, 1:] if chunk.has_output else None)
        return out, ((lambda y: y.mean() / 8) if chunk.has_output else None)
    run = Runner(2, state.pp_rank, 1, forward_step=forward_step, num_micro_batches=8,
                 shape=shape, prev_rank=state.ring_prev_rank, next_rank=state.ring_next_rank)
    one_f_one_b(run, 8)
    return state.pp_rank, run.max_in_flight, run.max_held_output_bytes, 4 * shape[1] * shape[2]


def test_1f1b_memory_discipline():
    """At most P - s micro batches in flight on stage s, and sent outputs are freed: without
    deallocation the first stage holds whole activations, with it only placeholders."""
    for stage, in_flight, held, activation in run_distributed(memory_worker, 2, True):
        assert in_flight <= 2 - stage
        if stage == 0:
            assert held < activation
    stage0 = run_distributed(memory_worker, 2, False)[0]
    assert stage0[2] >= stage0[3]  # the same measure sees the activations when not freed


def dead_stage_worker():
    """Stage 1 dies in its second step; stage 0 must fail with its rank and step, not hang."""
    import os
    from megamed.training import trainer
    cfg = load_config("tiny", {"parallel": {"pp": 2, "timeout_s": 20},
                               "train": {"steps": 3, "log_interval": 100}})
    if int(os.environ["RANK"]) == 1:
        original = trainer.train_step
        calls = []

        def dying(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                os._exit(3)
            return original(*args, **kwargs)
        trainer.train_step = dying
    trainer.pretrain(cfg)


def test_dead_stage_fails_with_rank_and_step():
    with pytest.raises(ChildError, match=r"rank 0/2: .* step 2 failed"):
        run_distributed(dead_stage_worker, 2)
