"""The health check on this CPU machine (GPU section absent, gloo all-reduce, storage) and on
a bad path; the GPU verdicts and gauges from NVML readings (no NVML here: readings are built
by hand, the same dataclass NVML fills)."""
import json
import subprocess
import sys
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from megamed.monitoring.health import gpu_problems, run_health_check
from megamed.monitoring.nvml import GpuReading
from megamed.monitoring.prometheus import PrometheusExporter

ROOT = Path(__file__).resolve().parents[2]


def test_passes_on_cpu_with_the_gpu_section_absent(tmp_path):
    report = run_health_check(str(tmp_path), size_mb=4)
    by_name = {c.name.split(" (")[0]: c for c in report.checks}
    assert report.ok, report.text()
    assert by_name["gpus"].status == "absent"
    assert by_name["all-reduce"].status == "ok" and by_name["all-reduce"].values["world"] == 2
    storage = by_name[f"storage {tmp_path}"]
    assert storage.values["write_mb_s"] > 0 and storage.values["read_mb_s"] > 0
    assert list(tmp_path.iterdir()) == []  # the test file is gone


def test_fails_on_a_bad_path(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    for path in (tmp_path / "missing", not_a_dir):
        done = subprocess.run([sys.executable, str(ROOT / "tools" / "health_check.py"),
                               "--json", "--only", "storage", "--path", str(path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        report = json.loads(done.stdout)
        assert not report["ok"] and report["checks"][0]["status"] == "fail"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "health_check.py"), "--only",
                           "storage", "--path", str(tmp_path), "--min-free-gb", "1e9"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "GB free <" in done.stdout


def _reading(**overrides):
    values = dict(index=0, name="NVIDIA H200", uuid="GPU-1", utilization_percent=97.0,
                  memory_used_bytes=120 << 30, memory_total_bytes=141 << 30,
                  temperature_celsius=64.0, power_watts=650.0, ecc_corrected=3,
                  ecc_uncorrected=0, sm_clock_mhz=1980, memory_clock_mhz=3201,
                  max_sm_clock_mhz=1980, throttle_reasons=["gpu_idle"])
    return GpuReading(**{**values, **overrides})


def test_gpu_verdicts_follow_the_limits_table():
    assert gpu_problems(_reading()) == []
    assert gpu_problems(_reading(ecc_uncorrected=2)) == ["2 uncorrected ECC errors"]
    assert gpu_problems(_reading(temperature_celsius=91.0)) == ["temperature 91 C > 85 C"]
    assert gpu_problems(_reading(max_sm_clock_mhz=1400)) == ["max SM clock 1400 MHz < 1900 MHz"]
    assert gpu_problems(_reading(name="NVIDIA A100-SXM4-80GB", max_sm_clock_mhz=1410)) == []
    assert gpu_problems(_reading(throttle_reasons=["hw_thermal_slowdown"])) == \
        ["clocks slowed down: hw_thermal_slowdown"]


class Readings:
    """Stands in for an NVML session: same `read()` as `Nvml`."""

    def read(self):
        return [_reading(), _reading(index=1, uuid="GPU-2", power_watts=None)]

    def close(self):
        pass


def test_gpu_gauges_carry_every_reading():
    page = generate_latest(PrometheusExporter(nvml=Readings(), rank=5).registry).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(page) for s in f.samples}
    gpu0 = (("gpu", "0"), ("rank", "5"))
    assert samples[("megamed_gpu_temperature_celsius", gpu0)] == 64.0
    assert samples[("megamed_gpu_memory_used_bytes", gpu0)] == 120 << 30
    assert samples[("megamed_gpu_power_watts", gpu0)] == 650.0
    assert ("megamed_gpu_power_watts", (("gpu", "1"), ("rank", "5"))) not in samples  # unknown
    assert samples[("megamed_gpu_ecc_errors", gpu0 + (("type", "corrected"),))] == 3
    assert samples[("megamed_gpu_clock_mhz", (("clock", "sm"),) + gpu0)] == 1980
    assert samples[("megamed_gpu_throttle_active", gpu0 + (("reason", "gpu_idle"),))] == 1
    assert samples[("megamed_gpu_throttle_active", gpu0 + (("reason", "hw_slowdown"),))] == 0
