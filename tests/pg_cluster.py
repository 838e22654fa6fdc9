"""A throwaway PostgreSQL server for the audit-log tests: initdb + pg_ctl in a temporary
folder, on a free localhost port, with password (scram) authentication, stopped at the end.

initdb refuses to run as root (CI runs as root), so there the cluster belongs to the
`postgres` system user (`runuser -u postgres --`). The binaries are looked up in PATH and
/usr/lib/postgresql/*/bin."""
from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from distributed import free_port


def postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found and (Path(found).resolve().parent / "initdb").exists():
        return Path(found).resolve().parent  # /usr/local/bin may hold a lone symlink
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


@contextlib.contextmanager
def throwaway_postgres():
    """Yields (url, password) of a fresh database `megamed_audit` owned by user `auditor`."""
    bindir = postgres_bin()
    as_user = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="megamed-pg-"))
    data, password = root / "data", secrets.token_hex(12)
    (root / "pw").write_text(password + "\n")
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pw", "postgres")
    port = free_port()

    def run(*cmd, env=None):
        done = subprocess.run(as_user + list(cmd), capture_output=True, text=True, timeout=120,
                              env=env)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "auditor", "--auth=scram-sha-256",
            f"--pwfile={root / 'pw'}", "--no-sync", "-E", "UTF8")
        options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
                   f"-c fsync=off")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
            str(root / "server.log"), "-w", "-t", "60", "start")
        try:
            run(str(bindir / "createdb"), "-h", str(root), "-p", str(port), "-U", "auditor",
                "megamed_audit", env={**os.environ, "PGPASSWORD": password})
            yield f"postgresql://auditor:{password}@127.0.0.1:{port}/megamed_audit", password
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
