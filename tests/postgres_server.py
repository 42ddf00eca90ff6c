"""A real PostgreSQL server for the fleet tests, started by the tests and torn down after.

The server runs from Debian's PostgreSQL binaries (``initdb``, ``pg_ctl``), in a temporary data
directory, listening on 127.0.0.1 at a free port and on a socket in that directory only.
PostgreSQL refuses to run as root, so when the tests run as root (as in CI here) it is started as
the unprivileged ``postgres`` system user through ``runuser``. ``fsync`` is off: these tests
check the journal's logic, not PostgreSQL's durability.

Without the binaries the fleet tests are skipped, unless ``JOURNAL_REQUIRE_POSTGRES=1`` (set by
``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """A running server: its port and the superuser to connect as."""

    port: int
    user: str
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        """A URL for ``database`` on this server."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None."""
    candidates = [os.environ.get("JOURNAL_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if shutil.which("pg_ctl"):
        candidates.append(str(Path(str(shutil.which("pg_ctl"))).resolve().parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextlib.contextmanager
def running_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """Start a throwaway server; stop it and remove its files afterwards.

    ``durable`` keeps PostgreSQL's own defaults (``fsync``, ``synchronous_commit`` and
    ``full_page_writes`` on), for benchmarks that must pay for durability; the tests do not.
    """
    bindir = find_bindir()
    if bindir is None:
        raise FileNotFoundError(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed;"
            " install Debian's postgresql package"
        )
    root = Path(tempfile.mkdtemp(prefix="journal-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    subprocess.run(
        _as_server_user(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
        cwd=root,
    )
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=100"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(
        _as_server_user(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                *("-o", options, "-w", "-t", "60", "start"),
            ]
        ),
        check=True,
        capture_output=True,
        cwd=root,
    )
    try:
        yield PostgresServer(port=port, user=user, data_dir=data)
    finally:
        subprocess.run(
            _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
            cwd=root,
        )
        shutil.rmtree(root, ignore_errors=True)
