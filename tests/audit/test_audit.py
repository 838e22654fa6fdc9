"""The audit log's hash chain (SQLite here; PostgreSQL in tests/monitoring/test_training_run.py):
every kind of tampering is found and named, the verifier recomputes instead of trusting the
head, a full disk fails the write loudly, and nothing secret can be recorded."""
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from megamed.audit import AuditError, AuditLog, record_hash, redact_url, verify
from megamed.data.deid import key_id

ROOT = Path(__file__).resolve().parents[2]


def _log(tmp_path, n=5):
    log = AuditLog(str(tmp_path / "audit.db"), actor="tester")
    for i in range(n):
        log.append("shard_write", shards=[f"shard-{i:04d}.tar"], deid_key_id="sha256:ab12")
    return log


def _attacker(tmp_path):
    """A database owner who drops the append-only triggers first."""
    db = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    db.execute("DROP TRIGGER audit_records_no_update")
    db.execute("DROP TRIGGER audit_records_no_delete")
    return db


def _forge(db, seq, prev_hash, action="export"):
    row = (seq, "2026-01-01T00:00:00+00:00", "mallory", "h", action, "{}", prev_hash)
    db.execute("INSERT INTO audit_records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               row + (record_hash(*row),))


def test_chain_links_every_record_and_the_cli_shows_them(tmp_path):
    log = _log(tmp_path)
    records = log.records()
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert all(r.computed_hash() == r.hash for r in records)
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]
    assert verify(log).ok and verify(log).head == f"5:{records[-1].hash}"
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        log.conn.execute("UPDATE audit_records SET actor = 'x' WHERE seq = 1")
    tool = [sys.executable, str(ROOT / "tools" / "audit.py")]
    shown = subprocess.run(tool + ["show", str(tmp_path / "audit.db"), "--json"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert [json.loads(line)["details"]["shards"] for line in shown] == \
        [[f"shard-{i:04d}.tar"] for i in range(5)]


TAMPERING = {
    "edit": (lambda db: db.execute("UPDATE audit_records SET actor = 'eve' WHERE seq = 3"),
             "record 3 (shard_write): contents do not match its hash (edited)"),
    "edit and re-hash": (lambda db: (
        db.execute("DELETE FROM audit_records WHERE seq = 3"),
        _forge(db, 3, db.execute("SELECT hash FROM audit_records WHERE seq = 2").fetchone()[0])),
        "record 4 (shard_write): does not follow the record before it"),
    "delete": (lambda db: db.execute("DELETE FROM audit_records WHERE seq = 2"),
               "record 2 is missing (deleted)"),
    "delete the tail": (lambda db: db.execute("DELETE FROM audit_records WHERE seq >= 4"),
                        "records 4..5 are missing after the last record (deleted)"),
    "insert at the end": (lambda db: _forge(db, 6, db.execute(
        "SELECT hash FROM audit_records WHERE seq = 5").fetchone()[0]),
        "does not match the recomputed chain"),
    "insert in the middle": (lambda db: (
        db.execute("UPDATE audit_records SET seq = -seq - 1 WHERE seq >= 3"),  # make room
        db.execute("UPDATE audit_records SET seq = -seq WHERE seq < 0"),
        _forge(db, 3, db.execute("SELECT hash FROM audit_records WHERE seq = 2").fetchone()[0])),
        "record 4 (shard_write): contents do not match its hash (edited)"),
}


@pytest.mark.parametrize("kind", TAMPERING)
def test_tampering_is_found_and_named(tmp_path, kind):
    _log(tmp_path).close()
    change, expected = TAMPERING[kind]
    change(_attacker(tmp_path))
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "audit.py"), "verify",
                           str(tmp_path / "audit.db")], capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert expected in done.stdout


def test_rewriting_head_and_chain_is_caught_by_an_outside_head(tmp_path):
    log = _log(tmp_path)
    trusted = verify(log).head
    db = _attacker(tmp_path)
    db.execute("DELETE FROM audit_records WHERE seq = 5")  # and move the head back with it
    db.execute("UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit_records "
               "WHERE seq = 4)")
    assert verify(log).ok  # self-consistent again: only an outside copy can tell
    result = verify(log, expect_head=trusted)
    assert not result.ok and "differs from the expected" in result.problems[0]


def test_full_disk_fails_the_write_and_stores_nothing(tmp_path):
    log = _log(tmp_path, 1)
    pages = log.conn.execute("PRAGMA page_count").fetchone()[0]
    log.conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # the disk is full soon
    shards = [f"/data/shards/shard-{i:06d}.tar" for i in range(400)]
    with pytest.raises(AuditError, match="NOT stored: database or disk is full"):
        for _ in range(20):
            log.append("shard_write", shards=shards)
    stored = len(log.records())
    assert verify(log).ok and stored < 21


def test_no_free_text_and_no_secret_in_records(tmp_path):
    log = _log(tmp_path, 0)
    key = b"deid-secret-key-0123456789"
    with pytest.raises(AuditError, match="not audit fields"):
        log.append("deid_run", deid_key=key.hex())
    with pytest.raises(AuditError, match="unknown audit action"):
        log.append("patient_lookup")
    log.append("deid_run", deid_key_id=key_id(key), shards=["a.tar"])
    assert key_id(key) != key_id(b"another key") and key.hex() not in key_id(key)
    assert key not in (tmp_path / "audit.db").read_bytes()
    assert key.hex().encode() not in (tmp_path / "audit.db").read_bytes()


def test_unreachable_database_is_a_clear_error_without_the_password(tmp_path):
    with pytest.raises(AuditError, match="cannot be opened"):
        AuditLog(str(tmp_path / "missing" / "audit.db"))
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "audit.py"), "verify",
                           str(tmp_path / "none.db")], capture_output=True, text=True)
    assert done.returncode == 2 and "does not exist" in done.stderr  # not "0 records, OK"
    assert not (tmp_path / "none.db").exists()
    url = "postgresql://auditor:s3cret-pw@127.0.0.1:1/audit"
    assert redact_url(url) == "postgresql://auditor:***@127.0.0.1:1/audit"
    with pytest.raises(AuditError) as error:
        AuditLog(url)
    assert "s3cret-pw" not in str(error.value) and "auditor:***@" in str(error.value)


def test_deid_and_shard_tools_record_their_runs(tmp_path):
    """tools/deid.py and tools/make_shards.py with --audit-db: one record each, carrying the
    key's id (never the key) and no PHI from the inputs; the chain verifies."""
    sys.path.insert(0, str(ROOT / "tools"))
    import deid as deid_tool
    import make_shards as shards_tool
    from megamed.data.demo import build_raw

    key = b"an audit test key, 32 bytes long"
    (tmp_path / "key").write_bytes(key)
    src = tmp_path / "notes"
    src.mkdir()
    (src / "note.txt").write_text("Pt Zbigniew Kaczmarek seen 4/5/2020, call 555-867-5309.")
    db = str(tmp_path / "audit.db")
    common = ["--key-file", str(tmp_path / "key"), "--audit-db", db]
    assert deid_tool.main([str(src), str(tmp_path / "out"), "--quiet", *common]) == 0
    build_raw(tmp_path / "raw", studies=1)
    assert shards_tool.main([str(tmp_path / "raw"), str(tmp_path / "shards"), "--no-progress",
                             *common]) in (0, 1)
    log = AuditLog(db, create=False)
    records = log.records()
    assert [r.action for r in records] == ["deid_run", "shard_write"]
    text = "".join(r.details for r in records)
    assert all(json.loads(r.details)["deid_key_id"] == key_id(key) for r in records)
    assert key.decode() not in text and key.hex() not in text
    assert "Kaczmarek" not in text and "867-5309" not in text
    assert verify(log).ok
