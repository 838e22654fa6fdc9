"""Pretrain the megamed decoder.

    torchrun --nproc_per_node 8 examples/pretrain_32b.py --profile m-32b --save ckpt/
    python examples/pretrain_32b.py                  # CPU: the 'demo' profile on the demo corpus
    python examples/pretrain_32b.py --data-shards shards/ --profile tiny-mm   # your shards

With no --data / --data-shards the demo profile trains on the demo corpus (real DICOM and ECG
files that ship with pydicom, de-identified and sharded into $MEGAMED_CACHE, default
~/.cache/megamed, on first use in seconds; reused afterwards).

DP = world size / (TP x PP). Every optimizer step appends one JSON object to
--metrics-jsonl (step, loss, lr, grad_norm, tokens, tokens_per_s, mfu, ...).
A configuration or input error (bad flag, layout, batch arithmetic, data glob, broken
checkpoint) is one line on stderr (from rank 0) and exit status 2, no traceback.
SIGTERM or SIGUSR1 finishes the step, saves (with --save) and exits 0; too many
non-finite steps in a row stop the run with one line and exit status 1 (training/fault.py).
"""
import os
import sys

import torch.distributed as dist

from megamed.audit import AuditError
from megamed.checkpoint import CheckpointError
from megamed.config import ConfigError, resolve
from megamed.data.loader import LoaderStateError, SkipLimitError
from megamed.data.shard_reader import ShardError
from megamed.data.tokens import TokenFileError
from megamed.monitoring import MonitoringError
from megamed.parallel.state import init_distributed
from megamed.training.arguments import parse_config
from megamed.training.fault import NonFiniteError, exit_with_parent
from megamed.training.trainer import pretrain

USER_ERRORS = (ConfigError, TokenFileError, CheckpointError, ShardError, SkipLimitError,
               LoaderStateError)


def _fail(e: Exception) -> int:
    if int(os.environ.get("RANK", "0")) == 0:
        kind = "configuration error" if isinstance(e, ConfigError) else "error"
        print(f"{kind}: {e}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    exit_with_parent()  # under torchrun: a killed agent takes its workers with it
    try:
        cfg, args, note = parse_config(argv)
        # Checked in full before any process group exists: every rank finds the same error.
        cfg = resolve(cfg, int(os.environ.get("WORLD_SIZE", "1")))
    except ConfigError as e:
        return _fail(e)
    init_distributed(cfg.parallel.backend, cfg.parallel.timeout_s)
    if note and dist.get_rank() == 0:
        print(note, flush=True)
    try:
        pretrain(cfg, save=args.save, load=args.load, metrics_jsonl=args.metrics_jsonl,
                 print_schedule=args.print_schedule, metrics_port=args.metrics_port,
                 tensorboard=args.tensorboard, audit_db=args.audit_db)
    except USER_ERRORS as e:
        return _fail(e)
    except NonFiniteError as e:  # every rank stops at the same step; rank 0 reports
        _fail(e)
        return 1
    except (MonitoringError, AuditError) as e:
        # Every rank's own port or database: each says what failed for it.
        print(f"error on rank {dist.get_rank()}: {e}", file=sys.stderr)
        return 2
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
