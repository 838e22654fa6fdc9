"""A real short CPU training run with --metrics-port and --audit-db: the endpoint is scraped
while it trains and parsed with prometheus_client's parser, the values agree with the
run's own metrics JSONL, the audit log holds the run's records, tampering with one row is
detected, and the database password appears nowhere (logs, metrics, audit, checkpoints).
Once with 2 gloo processes and PostgreSQL, once in-process with SQLite and TensorBoard."""
import json
import os
import socket
import threading
import urllib.request
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

import entry_point
from distributed import free_port, run_distributed
from megamed.audit import AuditLog, verify

STEPS = 5


def _port_pair() -> int:
    """A port P with P and P + 1 free (rank r serves on P + local rank)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port + 1)) != 0:
                return port
    raise RuntimeError("no two adjacent free ports")


class Scraper(threading.Thread):
    """Scrapes each URL every 20 ms while the run lasts; keeps the latest page that has
    at least one completed step on it."""

    def __init__(self, urls):
        super().__init__(daemon=True)
        self.urls, self.pages, self.done = urls, {}, threading.Event()

    def run(self):
        while not self.done.is_set():
            for url in self.urls:
                try:
                    page = urllib.request.urlopen(url, timeout=1).read().decode()
                except OSError:
                    continue
                if "\nmegamed_step_seconds_count 0.0" not in page:
                    self.pages[url] = page
            self.done.wait(0.02)


def _samples(page: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(page) for s in family.samples}


def _check_run_metrics(page: str, records: list[dict]):
    values = _samples(page)
    step = int(values[("megamed_step", ())])
    assert 1 <= step <= STEPS
    record = records[step - 1]
    assert record["step"] == step
    assert values[("megamed_loss", ())] == pytest.approx(record["loss"], rel=1e-12)
    assert values[("megamed_learning_rate", ())] == pytest.approx(record["lr"], rel=1e-12)
    for part in ("all", "decoder"):
        assert values[("megamed_grad_norm", (("part", part),))] == \
            pytest.approx(record["grad_norm"], rel=1e-12)
    assert values[("megamed_tokens_per_second", ())] == pytest.approx(record["tokens_per_s"])
    assert values[("megamed_step_seconds_count", ())] == step
    assert values[("megamed_data_wait_seconds_count", ())] == step
    assert values[("megamed_samples_skipped_total", ())] == 0
    assert not any(name.startswith("megamed_gpu_") for name, _ in values)  # CPU: none


def _flags(tmp_path, port, db):
    return ["--profile", "tiny", "--steps", str(STEPS), "--global-batch", "1", "--seed", "3",
            "--metrics-port", str(port), "--audit-db", db, "--save", str(tmp_path / "ckpt"),
            "--metrics-jsonl", str(tmp_path / "metrics.jsonl")]


def _check_audit(db: str, world_size: int):
    log = AuditLog(db)
    records = log.records()
    assert [r.action for r in records] == ["training_start", "checkpoint_save", "training_stop"]
    start, save, stop = (json.loads(r.details) for r in records)
    assert start["profile"] == "tiny" and start["world_size"] == world_size
    assert start["config_hash"].startswith("sha256:")
    assert save == {"checkpoint": save["checkpoint"], "step": STEPS}
    assert Path(save["checkpoint"]).name == f"step_{STEPS:07d}"
    assert stop == {"status": "completed", "step": STEPS}
    assert verify(log).ok
    log.close()


def _no_secret_anywhere(secret: str, tmp_path, *texts):
    assert all(secret not in text for text in texts)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_two_ranks_scraped_and_audited_in_postgres(tmp_path, postgres_url, capfd):
    port = _port_pair()
    urls = [f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{port + 1}/metrics"]
    scraper = Scraper(urls)
    scraper.start()
    try:
        codes = run_distributed(entry_point.main, 2,
                                _flags(tmp_path, port, postgres_url) + ["--tp", "2"])
    finally:
        scraper.done.set()
        scraper.join()
    out, err = capfd.readouterr()
    assert codes == [0, 0], err[-3000:]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert set(scraper.pages) == set(urls), "a rank's endpoint was never scraped mid-run"
    _check_run_metrics(scraper.pages[urls[0]], records)
    rank1 = _samples(scraper.pages[urls[1]])  # its own timings, no run metrics
    assert rank1[("megamed_step_seconds_count", ())] >= 1
    assert not any(name == "megamed_loss" for name, _ in rank1)
    _check_audit(postgres_url, 2)
    password = postgres_url.split(":")[2].split("@")[0]
    _no_secret_anywhere(password, tmp_path, out, err, *scraper.pages.values())
    with psycopg.connect(postgres_url, autocommit=True) as db:  # tamper with one row
        db.execute("DROP TRIGGER audit_records_append_only ON audit_records")
        db.execute("UPDATE audit_records SET details = '{\"step\":1}' WHERE seq = 2")
    assert verify(AuditLog(postgres_url)).problems == \
        ["record 2 (checkpoint_save): contents do not match its hash (edited)"]


def test_one_process_scraped_audited_in_sqlite_with_tensorboard(tmp_path, capfd):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    port, db = free_port(), str(tmp_path / "audit.db")
    scraper = Scraper([f"http://127.0.0.1:{port}/metrics"])
    environ = dict(os.environ)
    scraper.start()
    try:
        code = entry_point.main(_flags(tmp_path, port, db)
                                + ["--tensorboard", str(tmp_path / "tb")])
    finally:
        scraper.done.set()
        scraper.join()
        os.environ.clear()
        os.environ.update(environ)
    assert code == 0, capfd.readouterr().err[-3000:]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    _check_run_metrics(next(iter(scraper.pages.values())), records)
    _check_audit(db, 1)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.value for e in events.Scalars("loss")] == \
        pytest.approx([r["loss"] for r in records], rel=1e-6)  # stored as float32
    assert [e.step for e in events.Scalars("grad_norm/decoder")] == list(range(1, STEPS + 1))
    with AuditLog(db).conn as conn:  # tamper: drop the guard, delete one row
        conn.execute("DROP TRIGGER audit_records_no_delete")
        conn.execute("DELETE FROM audit_records WHERE seq = 2")
    assert verify(AuditLog(db)).problems == ["record 2 is missing (deleted)"]
