"""Pretrain the megamed decoder.

    torchrun --nproc_per_node 8 examples/pretrain_32b.py --profile m-32b --save ckpt/
    python examples/pretrain_32b.py                  # CPU: the 'demo' profile, synthetic data

DP = world size / (TP x PP). Every optimizer step appends one JSON object to
--metrics-jsonl (step, loss, lr, grad_norm, tokens, tokens_per_s, mfu, ...).
"""
import sys

import torch.distributed as dist

from megamed.audit import AuditError
from megamed.config import ConfigError
from megamed.monitoring import MonitoringError
from megamed.parallel.state import init_distributed
from megamed.training.arguments import parse_config
from megamed.training.trainer import pretrain


def main(argv=None) -> int:
    cfg, args, note = parse_config(argv)
    init_distributed(cfg.parallel.backend, cfg.parallel.timeout_s)
    if note and dist.get_rank() == 0:
        print(note, flush=True)
    try:
        pretrain(cfg, save=args.save, load=args.load, metrics_jsonl=args.metrics_jsonl,
                 print_schedule=args.print_schedule, metrics_port=args.metrics_port,
                 tensorboard=args.tensorboard, audit_db=args.audit_db)
    except ConfigError as e:
        if dist.get_rank() == 0:
            print(f"configuration error: {e}", file=sys.stderr)
        return 2
    except (MonitoringError, AuditError) as e:
        print(f"error on rank {dist.get_rank()}: {e}", file=sys.stderr)
        return 2
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
