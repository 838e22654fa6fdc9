"""Plot loss, tokens/s and gradient norm of one or more runs (their --metrics-jsonl files),
overlaid, to a PNG.

    python tools/plot_metrics.py runs/a/metrics.jsonl runs/b/metrics.jsonl -o compare.png
"""
import argparse
import sys
from pathlib import Path

from megamed.monitoring.plots import MetricsFileError, plot_runs, read_metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("metrics", nargs="+", help="metrics JSONL files, one per run")
    p.add_argument("-o", "--out", default="metrics.png", help="PNG to write")
    p.add_argument("--labels", nargs="+", help="one legend label per file (default: names)")
    p.add_argument("--title", help="figure title")
    args = p.parse_args(argv)
    labels = args.labels or [str(Path(m).parent / Path(m).stem) for m in args.metrics]
    if len(labels) != len(args.metrics):
        p.error(f"{len(labels)} labels for {len(args.metrics)} files")
    try:
        runs = {label: read_metrics(m) for label, m in zip(labels, args.metrics)}
    except (MetricsFileError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    plot_runs(runs, args.out, args.title)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
