"""The Prometheus exporter's names, the Grafana dashboard's queries against them, and the
start-up error on a busy port."""
import json
import re
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from megamed.monitoring import MonitoringError, StepMetrics
from megamed.monitoring.prometheus import PrometheusExporter, exported_names

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ["megamed_loss", "megamed_learning_rate", "megamed_grad_norm",
            "megamed_tokens_per_second", "megamed_mfu", "megamed_step_seconds",
            "megamed_data_wait_seconds", "megamed_samples_skipped_total", "megamed_step"]


def _queries():
    dashboard = json.loads((ROOT / "monitoring" / "grafana" / "megamed.json").read_text())
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}


def test_issue_metric_names_are_exported():
    names = exported_names(PrometheusExporter())
    for name in CONTRACT:
        assert name in names or name + "_bucket" in names, name
    assert any(n.startswith("megamed_gpu_") for n in names)


def test_every_dashboard_query_names_an_exported_metric():
    exported = exported_names(PrometheusExporter())
    used = set()
    for title, exprs in _queries().items():
        for expr in exprs:
            metrics = set(re.findall(r"\bmegamed_[a-z0-9_]+", expr))
            assert metrics, f"panel {title!r}: {expr} names no megamed metric"
            assert metrics <= exported, f"panel {title!r}: {metrics - exported} not exported"
            used |= metrics
    wanted = ["megamed_loss", "megamed_tokens_per_second", "megamed_mfu",
              "megamed_step_seconds_bucket", "megamed_data_wait_seconds_sum",
              "megamed_grad_norm", "megamed_gpu_temperature_celsius", "megamed_gpu_power_watts",
              "megamed_gpu_memory_used_bytes", "megamed_samples_skipped_total"]
    assert set(wanted) <= used


def test_rank_without_run_metrics_serves_only_its_timings():
    exporter = PrometheusExporter(run_metrics=False, rank=3)
    exporter.step(StepMetrics(step=1, step_seconds=0.5, data_wait_seconds=0.1, loss=2.0))
    exporter.serve(0, addr="127.0.0.1")
    port = exporter.server.server_address[1]
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    finally:
        exporter.close()
    families = {f.name: f for f in text_string_to_metric_families(page)}
    assert "megamed_loss" not in families
    sums = {s.name: s.value for s in families["megamed_data_wait_seconds"].samples}
    assert sums["megamed_data_wait_seconds_sum"] == 0.1


def test_busy_port_is_a_clear_start_up_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MonitoringError, match=f"metrics port 127.0.0.1:{port} cannot be "
                                                  f"opened \\(already in use\\)"):
            PrometheusExporter().serve(port, addr="127.0.0.1")
