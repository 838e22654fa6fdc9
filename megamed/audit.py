"""Tamper-evident audit log: append-only, hash-chained records of who touched which data.

Each record is (seq, recorded_at, actor, host, action, details, prev_hash, hash) with
hash = SHA-256 over the canonical JSON of all other fields, and prev_hash the hash of record
seq - 1 (64 zeros for record 1). An edited record no longer matches its hash; a re-hashed
edit breaks the next record's link; an inserted or deleted record breaks the sequence or a
link; a deleted tail disagrees with the head row written in the same transaction. `verify`
recomputes every hash from the first record and never trusts the stored head; operators who
also copy the head (`SEQ:HASH`, printed by `tools/audit.py verify`) somewhere else can check
against it (`--expect-head`), which catches a rewrite of the whole table too. Triggers
reject UPDATE and DELETE on the records table, so only a deliberate attacker can change it.

Storage: SQLite (a path, or sqlite:///path) by default; PostgreSQL by URL
(postgresql://user:password@host:port/db, psycopg 3). The URL's password never appears in an
error or a record (`redact_url`).

No PHI and no secrets: details are a fixed set of fields (shard names, checkpoint paths,
the de-identification key's *id* (`megamed.data.deid.key_id`), never the key; a config hash, step numbers,
the type of an error, never its message).
"""
from __future__ import annotations

import getpass
import hashlib
import json
import re
import socket
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

GENESIS = "0" * 64
ACTIONS = ("deid_run", "shard_write", "training_start", "training_resume", "training_stop",
           "checkpoint_save", "checkpoint_load", "export")
DETAIL_FIELDS = ("shards", "checkpoint", "deid_key_id", "config_hash", "step", "steps",
                 "profile", "world_size", "layout", "status", "error_type", "output",
                 "records", "source")
SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    seq INTEGER PRIMARY KEY, recorded_at TEXT NOT NULL, actor TEXT NOT NULL,
    host TEXT NOT NULL, action TEXT NOT NULL, details TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{genesis}') ON CONFLICT (id) DO NOTHING;
CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_records_no_delete BEFORE DELETE ON audit_records
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
""".format(genesis=GENESIS)
POSTGRES_SCHEMA = SQLITE_SCHEMA.split("CREATE TRIGGER")[0] + """
CREATE OR REPLACE FUNCTION megamed_audit_append_only() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION 'audit records are append-only'; END $$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION megamed_audit_append_only();
"""
COLUMNS = "seq, recorded_at, actor, host, action, details, prev_hash, hash"


class AuditError(RuntimeError):
    """The audit database cannot be opened or written (the record was not stored)."""


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    recorded_at: str
    actor: str
    host: str
    action: str
    details: str  # canonical JSON
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        return record_hash(self.seq, self.recorded_at, self.actor, self.host, self.action,
                           self.details, self.prev_hash)


def record_hash(seq, recorded_at, actor, host, action, details, prev_hash) -> str:
    body = json.dumps([seq, recorded_at, actor, host, action, details, prev_hash],
                      separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(body.encode()).hexdigest()


def config_hash(config: dict) -> str:
    body = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def redact_url(url: str) -> str:
    """The URL with its password replaced, for messages."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def canonical_details(details: dict) -> str:
    unknown = sorted(set(details) - set(DETAIL_FIELDS))
    if unknown:
        raise AuditError(f"audit details {unknown} are not audit fields (allowed: "
                         f"{', '.join(DETAIL_FIELDS)}); free text could carry PHI or secrets")
    clean = {k: v for k, v in details.items() if v is not None}
    return json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def record_event(url: str, action: str, **details) -> AuditRecord:
    """Opens the log at `url`, appends one record and closes it (for one-shot tools)."""
    log = AuditLog(url)
    try:
        return log.append(action, **details)
    finally:
        log.close()


class AuditLog:
    """One connection to an audit database. `append` is atomic: the record and the head
    move together or not at all (a full disk raises AuditError and stores nothing)."""

    def __init__(self, url: str, actor: Optional[str] = None, create: bool = True):
        """create=False (reading, verifying) opens an existing log only and changes nothing.
        A PostgreSQL password may also come from PGPASSWORD or ~/.pgpass (libpq) instead of
        the URL, which keeps it out of process listings."""
        self.url, self.create = url, create
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self.actor = actor or getpass.getuser()
        self.host = socket.gethostname()
        self.conn = self._connect()

    def _connect(self):
        try:
            if self.postgres:
                import psycopg
                conn = psycopg.connect(self.url, connect_timeout=10, autocommit=True)
                if self.create:
                    conn.execute(POSTGRES_SCHEMA)
                return conn
            path = self.url[len("sqlite:///"):] if self.url.startswith("sqlite:///") else self.url
            if not self.create and not Path(path).is_file():
                raise AuditError(f"audit database {path} does not exist")
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            if self.create:
                conn.executescript(SQLITE_SCHEMA)
            return conn
        except AuditError:
            raise
        except ImportError as e:
            raise AuditError(f"audit database {redact_url(self.url)}: PostgreSQL needs "
                             f"psycopg 3 ({e})") from None
        except Exception as e:  # sqlite3.Error, psycopg.Error: the reason is the message
            raise AuditError(f"audit database {redact_url(self.url)} cannot be opened: "
                             f"{_reason(e, self.url)}") from None

    def _sql(self, query: str) -> str:
        return query.replace("?", "%s") if self.postgres else query

    def append(self, action: str, **details) -> AuditRecord:
        if action not in ACTIONS:
            raise AuditError(f"unknown audit action {action!r}; expected one of {ACTIONS}")
        body = canonical_details(details)
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        try:
            return self._append(action, body, now)
        except AuditError:
            raise
        except Exception as e:
            raise AuditError(f"audit write to {redact_url(self.url)} failed, record "
                             f"{action} NOT stored: {_reason(e, self.url)}") from None

    def _append(self, action: str, body: str, now: str) -> AuditRecord:
        c = self.conn
        if self.postgres:
            with c.transaction():
                seq, prev = c.execute("SELECT seq, hash FROM audit_head WHERE id = 1 "
                                      "FOR UPDATE").fetchone()
                return self._insert(seq + 1, now, action, body, prev)
        c.execute("BEGIN IMMEDIATE")  # one writer at a time: the chain has one head
        try:
            seq, prev = c.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            record = self._insert(seq + 1, now, action, body, prev)
            c.execute("COMMIT")
            return record
        except BaseException:
            if c.in_transaction:  # SQLite rolls back by itself on a full disk
                c.execute("ROLLBACK")
            raise

    def _insert(self, seq, now, action, body, prev) -> AuditRecord:
        digest = record_hash(seq, now, self.actor, self.host, action, body, prev)
        record = AuditRecord(seq, now, self.actor, self.host, action, body, prev, digest)
        self.conn.execute(self._sql(f"INSERT INTO audit_records ({COLUMNS}) VALUES "
                                    "(?, ?, ?, ?, ?, ?, ?, ?)"),
                          (seq, now, self.actor, self.host, action, body, prev, digest))
        self.conn.execute(self._sql("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"),
                          (seq, digest))
        return record

    def records(self) -> list[AuditRecord]:
        rows = self._read(f"SELECT {COLUMNS} FROM audit_records ORDER BY seq")
        return [AuditRecord(*row) for row in rows]

    def stored_head(self) -> Optional[tuple[int, str]]:
        rows = self._read("SELECT seq, hash FROM audit_head WHERE id = 1")
        return tuple(rows[0]) if rows else None

    def _read(self, query: str) -> list:
        try:
            return self.conn.execute(query).fetchall()
        except Exception as e:  # a missing table: not an audit log
            raise AuditError(f"audit database {redact_url(self.url)} cannot be read: "
                             f"{_reason(e, self.url)}") from None

    def close(self) -> None:
        self.conn.close()


@dataclass
class Verification:
    records: int
    head: str  # "SEQ:HASH" recomputed from the records
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(log: AuditLog, expect_head: Optional[str] = None) -> Verification:
    """Recomputes the chain from record 1 and names every record that breaks it."""
    problems, expected, prev = [], 1, GENESIS
    records = log.records()
    for r in records:
        gap = r.seq > expected
        if gap:
            problems.append(f"records {expected}..{r.seq - 1} are missing (deleted)"
                            if r.seq > expected + 1 else f"record {expected} is missing "
                            f"(deleted)")
        if r.computed_hash() != r.hash:
            problems.append(f"record {r.seq} ({r.action}): contents do not match its hash "
                            f"(edited)")
        elif r.prev_hash != prev and not gap:
            problems.append(f"record {r.seq} ({r.action}): does not follow the record "
                            f"before it (a record before it was edited and re-hashed, "
                            f"inserted or deleted)")
        expected, prev = r.seq + 1, r.hash
    last = records[-1].seq if records else 0
    head = f"{last}:{prev}"
    seq, stored = log.stored_head() or (None, None)
    if seq is None:
        problems.append("the head row is missing (deleted)")
    elif seq > last:
        problems.append(f"records {last + 1}..{seq} are missing after the last record "
                        f"(deleted); the head row says {seq}" if seq > last + 1 else
                        f"record {seq} is missing after the last record (deleted)")
    elif (seq, stored) != (last, prev):
        problems.append(f"the head row ({seq}:{stored[:12]}...) does not match the recomputed "
                        f"chain ({last}:{prev[:12]}...): records were inserted or rewritten")
    if expect_head and expect_head != head:
        problems.append(f"the recomputed head {head} differs from the expected {expect_head}: "
                        f"the log was rewritten or truncated since that head was taken")
    return Verification(len(records), head, problems)


def _reason(error: Exception, url: str) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    password = re.search(r"://[^:/@]*:([^@]*)@", url)
    if password and password.group(1):
        text = text.replace(password.group(1), "***")
    return text
