"""tools/plot_metrics.py overlays runs into a PNG; bad metrics files are named errors; the
benchmarks' shared chart function draws their tables."""
import importlib.util
import json
import math
from pathlib import Path

import matplotlib.image
import pytest

from megamed.monitoring.plots import MetricsFileError, chart_table, read_metrics

ROOT = Path(__file__).resolve().parents[2]


def plot_metrics(*argv) -> int:
    spec = importlib.util.spec_from_file_location("plot_metrics",
                                                  ROOT / "tools" / "plot_metrics.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.main([str(a) for a in argv])


def _write_run(path, steps, scale):
    records = [{"step": s, "loss": scale * math.exp(-s / 10), "lr": 1e-3, "grad_norm": 1 / s,
                "tokens_per_s": 100.0 * s, "mfu": None} for s in steps]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_two_runs_overlaid_into_a_png(tmp_path):
    _write_run(tmp_path / "a.jsonl", range(1, 21), 5.0)
    _write_run(tmp_path / "b.jsonl", range(1, 11), 4.0)
    out = tmp_path / "plot.png"
    assert plot_metrics(tmp_path / "a.jsonl", tmp_path / "b.jsonl", "-o", out,
                        "--labels", "run a", "run b") == 0
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 200 and image.shape[1] > 3 * image.shape[0] // 2  # 3 panels wide


def test_resumed_runs_keep_the_last_record_of_a_step_and_bad_lines_are_named(tmp_path, capsys):
    first = _write_run(tmp_path / "m.jsonl", range(1, 6), 5.0)
    again = _write_run(tmp_path / "resume.jsonl", range(4, 8), 3.0)
    with open(tmp_path / "m.jsonl", "a") as f:
        f.write((tmp_path / "resume.jsonl").read_text())
    assert read_metrics(tmp_path / "m.jsonl") == first[:3] + again
    (tmp_path / "bad.jsonl").write_text('{"step": 1, "loss": 2}\nnot json\n')
    with pytest.raises(MetricsFileError, match="bad.jsonl: line 2 is not a metrics record"):
        read_metrics(tmp_path / "bad.jsonl")
    assert plot_metrics(tmp_path / "bad.jsonl") == 2 and "line 2" in capsys.readouterr().err


def test_benchmark_table_chart(tmp_path):
    result = {"rows": [{"set": "CT", "mb_per_s": {"ours": 900.0, "pydicom": 60.0}},
                       {"set": "MR", "mb_per_s": {"ours": 700.0, "pydicom": 50.0}}]}
    path = chart_table(result, ("set",), ("mb_per_s.ours", "mb_per_s.pydicom"),
                       str(tmp_path / "chart.png"), "decode", "MB/s", log=True)
    assert matplotlib.image.imread(path).ndim == 3
