"""PNG charts with matplotlib's Agg backend (no display needed): training curves from
metrics JSONL files (`tools/plot_metrics.py`) and the benchmarks' result tables
(`chart_table`, called by every `benchmarks/*.py` beside its JSON)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

# (JSONL field, axis title, log scale) of the panels of a training plot.
RUN_PANELS = (("loss", "loss", False), ("tokens_per_s", "tokens / s", False),
              ("grad_norm", "gradient norm (before clipping)", True))


class MetricsFileError(ValueError):
    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")


def read_metrics(path: str) -> list[dict]:
    """The records of a --metrics-jsonl file; a resumed run's repeated steps keep the last."""
    records = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[int(record["step"])] = record
        except (ValueError, KeyError, TypeError) as e:
            raise MetricsFileError(path, f"line {number} is not a metrics record ({e})") from None
    if not records:
        raise MetricsFileError(path, "no metrics records")
    return [records[s] for s in sorted(records)]


def plot_runs(runs: dict[str, list[dict]], path: str, title: Optional[str] = None) -> None:
    """One panel per RUN_PANELS field, one line per run (label -> records)."""
    fig, axes = plt.subplots(1, len(RUN_PANELS), figsize=(5 * len(RUN_PANELS), 3.6))
    for ax, (field, label, log) in zip(axes, RUN_PANELS):
        for name, records in runs.items():
            points = [(r["step"], r[field]) for r in records if r.get(field) is not None]
            if points:
                ax.plot(*zip(*points), label=name, linewidth=1.2)
        ax.set_xlabel("step")
        ax.set_title(label)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def _value(row: dict, key: str):
    for part in key.split("."):  # "images_per_s.ours" reaches into nested results
        row = row.get(part) if isinstance(row, dict) else None
    return row


def chart_table(result: dict, x: Sequence[str], y: Sequence[str], path: str,
                title: str, ylabel: str, log: bool = False) -> str:
    """Grouped bars of a benchmark's rows (or of the result itself when it has none): one
    group per row labelled by its `x` fields, one bar per `y` field. Returns the PNG path."""
    rows = result.get("rows") or [result]
    labels = [" ".join(str(_value(r, k)) for k in x if _value(r, k) is not None)
              for r in rows]
    width = 0.8 / len(y)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows) * max(1, len(y) / 2)), 4.2))
    for i, key in enumerate(y):
        values = [_value(r, key) for r in rows]
        ax.bar([j + (i - (len(y) - 1) / 2) * width for j in range(len(rows))],
               [v if v is not None else 0 for v in values], width, label=key)
    ax.set_xticks(range(len(rows)), labels, fontsize=7, rotation=30, ha="right")
    ax.set_xlabel(" ".join(x), fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return path


def _save(fig, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
