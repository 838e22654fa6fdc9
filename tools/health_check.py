"""Node health check: GPUs (NVML: count, ECC, temperature, clocks, throttling), an
all-reduce smoke test (NCCL over the visible GPUs, or 2 gloo processes on a CPU machine),
and write/read throughput and free space of a path. Exit code 1 if any check fails.

    python tools/health_check.py [--json] [--path DIR] [--gpus N] [--only storage ...]
"""
import argparse
import json
import sys

from megamed.monitoring.health import run_health_check


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--path", default=".", help="directory whose storage to test (checkpoints)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--gpus", type=int, help="GPUs this node must have (default: any)")
    p.add_argument("--only", nargs="+", choices=["gpu", "allreduce", "storage"],
                   help="run only these checks")
    p.add_argument("--size-mb", type=int, default=64, help="test file size")
    p.add_argument("--min-free-gb", type=float, default=1.0, help="fail below this free space")
    args = p.parse_args(argv)
    report = run_health_check(args.path, args.only, args.gpus, args.size_mb, args.min_free_gb)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
