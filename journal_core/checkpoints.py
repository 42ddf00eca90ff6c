"""Signed checkpoints: Ed25519 signatures over the chain head, kept outside the database.

A checkpoint states "journal J had, at seq N, head hash H, at time T" and is signed with a key
whose private half lives outside the database file. The writer stores every checkpoint in the
``journal_checkpoints`` table and appends it to an *anchor file*. A verifier that trusts the key
and the anchor file detects what a linear chain alone cannot: a truncated tail, a rewritten
history, a rollback to an older copy. The formats and the trust argument are in
``docs/checkpoints.md``.

Keys and notes follow C2SP's signed-note and tlog-checkpoint shapes: a verifier key is
``<name>+<hex key id>+<base64(0x01 || public key)>``, the key id is the first 4 bytes of
``SHA-256(name || 0x0A || 0x01 || public key)``, and a signature line is
``— <name> <base64(key id || signature)>``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from journal_core.errors import JournalError

if TYPE_CHECKING:
    from journal_core.connection import JournalConfig, JournalInfo
    from journal_core.store import Journal, WriteContext

_LOG = logging.getLogger(__name__)

ALG_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space, as in C2SP signed notes
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_TAIL_READ = 64 * 1024

#: Verification codes of the anchor check (``docs/checkpoints.md``).
TAIL_TRUNCATED = "tail_truncated"
HISTORY_REWRITTEN = "history_rewritten"
ROLLED_BACK = "rolled_back"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_KEY = "unknown_key"
CHECKPOINTS_BACKWARDS = "checkpoints_backwards"
ANCHOR_MALFORMED = "anchor_malformed"
ANCHOR_ENTRY_MISSING = "anchor_entry_missing"
WRONG_JOURNAL = "wrong_journal"


class CheckpointError(JournalError):
    """A key or an anchor file cannot be used (unreadable, malformed, not this journal's)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("not valid base64") from None


def _check_name(name: str) -> None:
    if not name or any(ch.isspace() or ch == "+" for ch in name):
        raise ValueError(f"a key name must be non-empty, without spaces or '+': {name!r}")


def key_id(name: str, raw_public: bytes) -> bytes:
    """The C2SP key id: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key)."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + raw_public
    ).digest()[:4]


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A named Ed25519 verifier key."""

    name: str
    raw: bytes

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id that prefixes each signature."""
        return key_id(self.name, self.raw)

    @property
    def vkey(self) -> str:
        """The verifier key as text: ``<name>+<hex key id>+<base64(0x01 || key)>``."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_ED25519]) + self.raw)}"

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """Parse a verifier key (``vkey``); raises ValueError if it is malformed."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise ValueError("a verifier key is <name>+<hex key id>+<base64 key>")
        name, hex_id, encoded = parts
        _check_name(name)
        blob = _unb64(encoded)
        if len(blob) != 33 or blob[0] != ALG_ED25519:
            raise ValueError("not an Ed25519 verifier key")
        key = cls(name, blob[1:])
        if key.key_id.hex() != hex_id.lower():
            raise ValueError("the key id does not match the key")
        return key

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature of ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A named Ed25519 private key (kept outside the database)."""

    name: str
    private: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        """The matching verifier key."""
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return PublicKey(self.name, raw)

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of ``message``."""
        return self.private.sign(message)

    def to_text(self) -> str:
        """The key file text: ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``."""
        seed = self.private.private_bytes_raw()
        return (
            f"{_PRIVATE_PREFIX}{self.name}+{self.public.key_id.hex()}"
            f"+{_b64(bytes([ALG_ED25519]) + seed)}\n"
        )

    @classmethod
    def parse(cls, text: str) -> SigningKey:
        """Parse a key file's text; raises ValueError if it is malformed."""
        text = text.strip()
        if not text.startswith(_PRIVATE_PREFIX):
            raise ValueError("not a journal signing key")
        parts = text[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise ValueError("a signing key is PRIVATE+KEY+<name>+<hex key id>+<base64 seed>")
        name, hex_id, encoded = parts
        _check_name(name)
        blob = _unb64(encoded)
        if len(blob) != 33 or blob[0] != ALG_ED25519:
            raise ValueError("not an Ed25519 signing key")
        key = cls(name, Ed25519PrivateKey.from_private_bytes(blob[1:]))
        if key.public.key_id.hex() != hex_id.lower():
            raise ValueError("the key id does not match the key")
        return key


def generate_key(name: str) -> SigningKey:
    """A fresh random Ed25519 signing key called ``name``."""
    _check_name(name)
    return SigningKey(name, Ed25519PrivateKey.generate())


def write_key_file(path: Path, key: SigningKey) -> None:
    """Write ``key`` to a new file at ``path`` (mode 0600); never overwrites (FileExistsError).

    The key is written to a private temporary file and hard-linked into place, so another
    process never reads a half-written key file.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        try:
            os.write(fd, key.to_text().encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_key_file(path: Path) -> SigningKey:
    """Read the signing key at ``path``; raises :class:`CheckpointError` if unusable."""
    try:
        text = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read the signing key {path}: {error}") from None
    try:
        return SigningKey.parse(text)
    except ValueError as error:
        raise CheckpointError(f"{path} is not a journal signing key: {error}") from None


def load_public_key(source: str | os.PathLike[str]) -> PublicKey:
    """A verifier key from a file (a vkey line or a signing key) or from the vkey text itself."""
    text = str(source)
    path = Path(source)
    with contextlib.suppress(OSError, ValueError):
        if path.is_file():
            text = path.read_text("ascii").strip()
    try:
        if text.startswith(_PRIVATE_PREFIX):
            return SigningKey.parse(text).public
        return PublicKey.parse(text)
    except ValueError as error:
        raise CheckpointError(f"not a verifier key: {error}") from None


# --- notes ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The signed statement: journal ``origin`` had head ``head_hash`` at ``seq`` at ``time``."""

    origin: str
    seq: int
    head_hash: str
    time_unix_ms: int
    announce: PublicKey | None = None

    def body(self) -> str:
        """The note body (what is signed), ending in a newline.

        Origin, size and root lines as in C2SP tlog-checkpoint (the root is the 32-byte head
        hash in base64), then extension lines: the time and, for a rotation, the new key.
        """
        lines = [
            self.origin,
            str(self.seq),
            _b64(bytes.fromhex(self.head_hash)),
            f"time {self.time_unix_ms}",
        ]
        if self.announce is not None:
            lines.append(f"key {self.announce.vkey}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line of a note."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint with its signature lines, as stored and as appended to the anchor file."""

    checkpoint: Checkpoint
    signatures: tuple[Signature, ...]
    line: int | None = None

    def note(self) -> str:
        """The complete signed note: body, a blank line, the signature lines."""
        sigs = "".join(
            f"{SIGNATURE_PREFIX}{item.name} {_b64(item.key_id + item.signature)}\n"
            for item in self.signatures
        )
        return self.checkpoint.body() + "\n" + sigs

    def signed_by(self, key: PublicKey) -> bool | None:
        """True/False whether ``key``'s signature verifies; None if ``key`` did not sign."""
        message = self.checkpoint.body().encode("utf-8")
        for item in self.signatures:
            if item.name == key.name and item.key_id == key.key_id:
                return key.verify(message, item.signature)
        return None


def sign_checkpoint(checkpoint: Checkpoint, key: SigningKey) -> SignedCheckpoint:
    """Sign ``checkpoint`` with ``key``."""
    signature = key.sign(checkpoint.body().encode("utf-8"))
    return SignedCheckpoint(checkpoint, (Signature(key.name, key.public.key_id, signature),))


def _parse_body(lines: Sequence[str]) -> Checkpoint:
    if len(lines) < 4:
        raise ValueError("a checkpoint body has at least 4 lines")
    origin, size, root, stamp, *extra = lines
    if not size.isdigit() or (len(size) > 1 and size.startswith("0")):
        raise ValueError("the size line is not a decimal number")
    digest = _unb64(root)
    if len(digest) != 32:
        raise ValueError("the root line is not a base64 SHA-256 hash")
    if not stamp.startswith("time ") or not stamp[5:].isdigit():
        raise ValueError("the fourth line is not 'time <unix ms>'")
    announce = None
    for line in extra:
        if line.startswith("key ") and announce is None:
            announce = PublicKey.parse(line[4:])
        else:
            raise ValueError(f"unexpected body line {line[:40]!r}")
    return Checkpoint(origin, int(size), digest.hex(), int(stamp[5:]), announce)


def _parse_signature(line: str) -> Signature:
    parts = line[len(SIGNATURE_PREFIX) :].split(" ")
    if len(parts) != 2:
        raise ValueError("a signature line is '\u2014 <name> <base64>'")
    blob = _unb64(parts[1])
    if len(blob) != 4 + 64:
        raise ValueError("an Ed25519 signature line holds 4 + 64 bytes")
    return Signature(parts[0], blob[:4], blob[4:])


def parse_note(text: str, line: int | None = None) -> SignedCheckpoint:
    """Parse one signed note; raises ValueError if it is malformed."""
    if not text.endswith("\n"):
        raise ValueError("a note ends with a newline")
    head, separator, tail = text.partition("\n\n")
    if not separator:
        raise ValueError("a note has a blank line between body and signatures")
    signature_lines = tail.splitlines()
    if not signature_lines:
        raise ValueError("a note has at least one signature")
    if any(not item.startswith(SIGNATURE_PREFIX) for item in signature_lines):
        raise ValueError("signature lines start with an em dash and a space")
    return SignedCheckpoint(
        _parse_body(head.split("\n")),
        tuple(_parse_signature(item) for item in signature_lines),
        line,
    )


@dataclass(frozen=True, slots=True)
class MalformedEntry:
    """An anchor file entry that does not parse."""

    line: int
    error: str


def parse_anchor_text(text: str) -> list[SignedCheckpoint | MalformedEntry]:
    """Split an anchor file into its entries, in order.

    An entry is body lines, a blank line, signature lines, then a blank line that ends it. An
    entry that does not parse is returned as :class:`MalformedEntry` with its first line number
    (1-based), and the rest of the file is still read.
    """
    entries: list[SignedCheckpoint | MalformedEntry] = []
    body: list[str] = []
    sigs: list[str] = []
    in_sigs = False
    start = 1

    def finish() -> None:
        note = "\n".join(body) + "\n\n" + "".join(item + "\n" for item in sigs)
        try:
            entries.append(parse_note(note, start))
        except ValueError as error:
            entries.append(MalformedEntry(start, str(error)))

    for number, line in enumerate(text.split("\n"), start=1):
        is_sig = line.startswith(SIGNATURE_PREFIX)
        if in_sigs:
            if is_sig:
                sigs.append(line)
                continue
            if sigs:
                finish()
            else:
                entries.append(MalformedEntry(start, "a checkpoint without signature lines"))
            body, sigs, in_sigs = [], [], False
            if line:
                body, start = [line], number
            continue
        if is_sig:
            entries.append(
                MalformedEntry(start if body else number, "no blank line before the signatures")
            )
            body = []
            continue
        if line:
            if not body:
                start = number
            body.append(line)
        elif body:
            in_sigs = True
    if in_sigs and sigs:
        finish()
    elif body:
        entries.append(MalformedEntry(start, "a checkpoint without signature lines"))
    return entries


def read_anchor_file(path: Path) -> list[SignedCheckpoint | MalformedEntry]:
    """Parse the anchor file at ``path``; raises :class:`CheckpointError` if unreadable."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(
            f"cannot read the anchor file {path}: {error.strerror or error}"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not an anchor file (not UTF-8 text)") from None
    return parse_anchor_text(text)


def _last_anchored(handle: int) -> tuple[int, int] | None:
    """(seq, time) of the last well-formed entry of an open anchor file, or None."""
    size = os.fstat(handle).st_size
    start = max(0, size - _TAIL_READ)
    data = os.pread(handle, size - start, start).decode("utf-8", "replace")
    if start:
        # Drop the partial first entry: an entry starts after a blank line, not with a signature.
        match = re.search("\n\n(?!" + SIGNATURE_PREFIX + ")", data)
        data = data[match.end() :] if match else ""
    for item in reversed(parse_anchor_text(data)):
        if isinstance(item, SignedCheckpoint):
            return item.checkpoint.seq, item.checkpoint.time_unix_ms
    return None


def append_anchor(path: Path, signed: SignedCheckpoint) -> bool:
    """Append ``signed`` to the anchor file (created 0600), under an exclusive lock, and fsync.

    Returns False without writing when the file already ends at a later seq or time (another
    process writing the same journal anchored a newer head first): entries never go backwards.
    """
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last = _last_anchored(fd)
        checkpoint = signed.checkpoint
        if last is not None and (last[0] > checkpoint.seq or last[1] > checkpoint.time_unix_ms):
            return False
        os.write(fd, (signed.note() + "\n").encode("utf-8"))
        os.fsync(fd)
        return True
    finally:
        os.close(fd)  # closing releases the lock


# --- the journal side: keys table, checkpoints table, the writer's checkpointer ----------------


def key_name_for(journal_id: str, number: int) -> str:
    """The name of a journal's ``number``-th key (1-based)."""
    return f"journal-{journal_id}-k{number}"


def register_key(
    conn: sqlite3.Connection, public: PublicKey, announced_by: PublicKey | None, now: int
) -> None:
    """Record ``public`` in ``journal_keys`` (inside the caller's transaction)."""
    conn.execute(
        "INSERT OR IGNORE INTO journal_keys (key_id, name, vkey, announced_by, created_at_unix_ms)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            public.key_id.hex(),
            public.name,
            public.vkey,
            None if announced_by is None else announced_by.vkey,
            now,
        ),
    )


def journal_keys(conn: sqlite3.Connection) -> list[tuple[PublicKey, str | None]]:
    """The journal's recorded keys, oldest first, each with the vkey that announced it."""
    rows = conn.execute(
        "SELECT vkey, announced_by FROM journal_keys ORDER BY created_at_unix_ms, rowid"
    ).fetchall()
    keys: list[tuple[PublicKey, str | None]] = []
    for vkey, announced_by in rows:
        with contextlib.suppress(ValueError):
            keys.append((PublicKey.parse(_as_text(vkey)), _as_text_or_none(announced_by)))
    return keys


def _as_text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _as_text_or_none(value: object) -> str | None:
    return None if value is None else _as_text(value)


def has_checkpoint_tables(conn: sqlite3.Connection) -> bool:
    """True when the schema has ``journal_keys`` and ``journal_checkpoints`` (migration 3)."""
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        " AND name IN ('journal_keys', 'journal_checkpoints')"
    ).fetchall()
    return len(rows) == 2


def ensure_journal_key(
    conn: sqlite3.Connection, journal_id: str, key_path: Path, now: int
) -> SigningKey | None:
    """Make sure the journal has a signing key at ``key_path``, creating it for a new journal.

    A journal with no recorded key gets a fresh one (written to ``key_path`` with mode 0600, or
    the existing file there adopted) and its public half recorded. A journal that already has
    keys must be given its current one: a key file of another key is refused. Returns None when
    the journal has keys but ``key_path`` does not exist (a copied file, say): checkpoints are
    then off for this session rather than signed by a key the journal never announced.
    """
    recorded = journal_keys(conn)
    if recorded and not key_path.exists():
        _LOG.warning("no signing key at %s: checkpoints are off for this session", key_path)
        return None
    if not key_path.exists():
        key = generate_key(key_name_for(journal_id, 1))
        # Another process may have created it first: then theirs is used.
        with contextlib.suppress(FileExistsError):
            write_key_file(key_path, key)
    key = load_key_file(key_path)
    if not recorded:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not journal_keys(conn):
                register_key(conn, key.public, None, now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        recorded = journal_keys(conn)
    current = current_key(recorded)
    if current is None or current.vkey != key.public.vkey:
        raise CheckpointError(
            f"the signing key at {key_path} ({key.public.name}) is not this journal's current key"
            f" ({current.name if current else 'none'}); pass the right key_path"
        )
    return key


def current_key(recorded: Sequence[tuple[PublicKey, str | None]]) -> PublicKey | None:
    """The key in use: the first key, followed through every announcement."""
    if not recorded:
        return None
    current = recorded[0][0]
    changed = True
    while changed:
        changed = False
        for key, announced_by in recorded:
            if announced_by == current.vkey and key.vkey != current.vkey:
                current = key
                changed = True
                break
    return current


_CHECKPOINT_INSERT = (
    "INSERT INTO journal_checkpoints (seq, head_hash, time_unix_ms, key_id, note)"
    " VALUES (?, ?, ?, ?, ?)"
)
_CHAIN_HEAD = "SELECT seq, hash FROM journal_events ORDER BY seq DESC LIMIT 1"
_LAST_CHECKPOINT = (
    "SELECT seq, time_unix_ms FROM journal_checkpoints ORDER BY seq DESC, id DESC LIMIT 1"
)


@dataclass(slots=True)
class Checkpointer:
    """The writer thread's checkpoint maker (one per :class:`~journal_core.store.Journal`).

    Inside a batch transaction, just before COMMIT, :meth:`before_commit` decides whether a
    checkpoint is due, signs the head *as the table holds it under the write lock* and inserts
    the row, so a checkpoint row commits or rolls back with the events it covers. After COMMIT,
    :meth:`after_commit` appends the note to the anchor file; after a ROLLBACK, :meth:`discard`
    drops it. A signature that never committed is never published and the head signed always
    exists, so two inconsistent heads are never signed.
    """

    journal_id: str
    key: SigningKey
    anchor_path: Path
    every_events: int
    every_s: float
    last_seq: int = 0
    last_time_ms: int = 0
    last_monotonic: float = field(default_factory=time.monotonic)
    pending: list[tuple[SignedCheckpoint, SigningKey | None]] = field(default_factory=list)

    def load_state(self, conn: sqlite3.Connection) -> None:
        """Start from the newest stored checkpoint."""
        row = conn.execute(_LAST_CHECKPOINT).fetchone()
        if row is not None:
            self.last_seq, self.last_time_ms = int(row[0]), int(row[1])

    def _due(self, head_seq: int) -> bool:
        if head_seq <= self.last_seq:
            return False
        if self.every_events and head_seq - self.last_seq >= self.every_events:
            return True
        return bool(self.every_s) and time.monotonic() - self.last_monotonic >= self.every_s

    def idle_timeout(self, head_seq: int) -> float | None:
        """How long the writer may sleep before a time-based checkpoint is due (None: forever)."""
        if not self.every_s or head_seq <= self.last_seq:
            return None
        return max(0.0, self.every_s - (time.monotonic() - self.last_monotonic))

    def before_commit(self, conn: sqlite3.Connection, head_seq_hint: int | None = None) -> None:
        """Inside the open write transaction: sign and store a checkpoint if one is due.

        Never fails the transaction: a checkpoint that cannot be made is logged and the next
        one covers the head.
        """
        if self.pending or (head_seq_hint is not None and not self._due(head_seq_hint)):
            return
        try:
            self._sign(conn, force=head_seq_hint is None, announce=None)
        except (sqlite3.Error, ValueError) as error:
            _LOG.error("cannot make a checkpoint: %s", error)

    def _sign(
        self, conn: sqlite3.Connection, *, force: bool, announce: SigningKey | None
    ) -> SignedCheckpoint | None:
        head = conn.execute(_CHAIN_HEAD).fetchone()
        if head is None:
            return None
        seq, digest = int(head[0]), _as_text(head[1])
        stored = conn.execute(_LAST_CHECKPOINT).fetchone()
        if stored is not None:
            # Another process may have checkpointed meanwhile: never go backwards.
            self.last_seq = max(self.last_seq, int(stored[0]))
            self.last_time_ms = max(self.last_time_ms, int(stored[1]))
        if announce is None and (seq <= self.last_seq or not (force or self._due(seq))):
            return None
        if seq < self.last_seq or len(digest) != 64:
            return None
        bytes.fromhex(digest)  # a damaged head is for the verifier to report, not to sign
        now = max(time.time_ns() // 1_000_000, self.last_time_ms)
        checkpoint = Checkpoint(
            self.journal_id, seq, digest, now, None if announce is None else announce.public
        )
        signed = sign_checkpoint(checkpoint, self.key)
        conn.execute(
            _CHECKPOINT_INSERT, (seq, digest, now, self.key.public.key_id.hex(), signed.note())
        )
        if announce is not None:
            register_key(conn, announce.public, self.key.public, now)
        self.pending.append((signed, announce))
        return signed

    def rotate(self, conn: sqlite3.Connection, new_key: SigningKey) -> SignedCheckpoint:
        """Inside a write transaction: announce ``new_key`` in a checkpoint the current key signs.

        The switch to the new key takes effect when the transaction commits.
        """
        if self.pending:
            raise CheckpointError("a checkpoint is already pending in this transaction")
        signed = self._sign(conn, force=True, announce=new_key)
        if signed is None:
            raise CheckpointError("cannot rotate the key of an empty journal: append first")
        # The new key signs the same head at once, so the newest checkpoint is always signed by
        # the current key (an incremental verify that trusts only that key can start there).
        cp = signed.checkpoint
        follow = sign_checkpoint(
            Checkpoint(cp.origin, cp.seq, cp.head_hash, cp.time_unix_ms), new_key
        )
        conn.execute(
            _CHECKPOINT_INSERT,
            (cp.seq, cp.head_hash, cp.time_unix_ms, new_key.public.key_id.hex(), follow.note()),
        )
        self.pending.append((follow, None))
        return signed

    def after_commit(self) -> None:
        """After COMMIT: remember the checkpoints and append them to the anchor file (fsynced)."""
        for signed, new_key in self.pending:
            self.last_seq = signed.checkpoint.seq
            self.last_time_ms = signed.checkpoint.time_unix_ms
            self.last_monotonic = time.monotonic()
            try:
                append_anchor(self.anchor_path, signed)
            except OSError as error:
                # The row is stored and the next checkpoint covers this head; the journal goes on.
                _LOG.error("cannot append to the anchor file %s: %s", self.anchor_path, error)
            if new_key is not None:
                self.key = new_key
        self.pending.clear()

    def discard(self) -> None:
        """After ROLLBACK: forget what was signed in the transaction (it was never published)."""
        self.pending.clear()

    def checkpoint_now(self, conn: sqlite3.Connection, begin: Callable[[], None]) -> None:
        """Checkpoint the current head if it moved: ``begin`` takes the write lock, then commit.

        Used on clean close and when the writer is idle past the time interval.
        """
        try:
            begin()
            try:
                self.before_commit(conn)
                conn.execute("COMMIT")
            except BaseException:
                self.discard()
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            self.after_commit()
        except (JournalError, sqlite3.Error) as error:
            _LOG.error("cannot make a checkpoint: %s", error)
        finally:
            # Whether or not a head was signed (a damaged or vanished head is not), wait a full
            # interval before the next idle attempt rather than spin.
            self.last_monotonic = time.monotonic()


def open_checkpointer(
    conn: sqlite3.Connection, info: JournalInfo, config: JournalConfig
) -> Checkpointer | None:
    """The checkpointer of a writer, or None when checkpoints are off or no key is at hand."""
    if not config.checkpoints or not has_checkpoint_tables(conn):
        return None
    key_path = config.key_file(info.path)
    if not key_path.exists():
        return None
    key = load_key_file(key_path)
    checkpointer = Checkpointer(
        journal_id=info.journal_id,
        key=key,
        anchor_path=config.anchor_file(info.path),
        every_events=config.checkpoint_every_events,
        every_s=config.checkpoint_every_s,
    )
    checkpointer.load_state(conn)
    return checkpointer


async def rotate_key(
    journal: Journal, new_key_path: str | os.PathLike[str] | None = None
) -> PublicKey:
    """Replace the journal's signing key; returns the new verifier key.

    The new key is announced in a checkpoint signed by the current key (a ``key`` body line),
    and signs every checkpoint after it. With ``new_key_path`` the new private key is written
    there (pass it as ``JournalConfig.key_path`` from now on); without it, it replaces the key
    file in place once the rotation is committed, so the old private key is gone.
    """
    checkpointer = journal._writer.checkpointer
    if checkpointer is None:
        raise CheckpointError("checkpoints are off for this journal: there is no key to rotate")
    current_path = journal.config.key_file(journal.info.path)
    target = Path(new_key_path) if new_key_path is not None else Path(f"{current_path}.next")
    if new_key_path is None:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()  # a leftover of a rotation that did not commit

    def work(ctx: WriteContext) -> PublicKey:
        conn = ctx.connection
        number = len(journal_keys(conn)) + 1
        new_key = generate_key(key_name_for(journal.journal_id, number))
        write_key_file(target, new_key)
        checkpointer.rotate(conn, new_key)
        return new_key.public

    public = await journal.transact(work)
    if new_key_path is None:
        os.replace(target, current_path)
    return public


def stored_checkpoints(conn: sqlite3.Connection) -> list[SignedCheckpoint]:
    """Every parseable checkpoint note stored in ``journal_checkpoints``, oldest first."""
    result: list[SignedCheckpoint] = []
    for (note,) in conn.execute("SELECT note FROM journal_checkpoints ORDER BY id").fetchall():
        with contextlib.suppress(ValueError):
            result.append(parse_note(_as_text(note)))
    return result


# --- verification -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnchorFinding:
    """One problem found by checking the journal against its anchor file."""

    code: str
    seq: int | None
    line: int | None
    expected: str | None
    found: str | None
    summary: str

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "code": self.code,
            "seq": self.seq,
            "line": self.line,
            "expected": self.expected,
            "found": self.found,
            "summary": self.summary,
        }


@dataclass(slots=True)
class AnchorReport:
    """The outcome of checking a journal against an anchor file."""

    anchor_path: str
    entries: int = 0
    verified_entries: int = 0
    latest_anchored_seq: int | None = None
    keys: list[str] = field(default_factory=list)
    findings: list[AnchorFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every entry verifies and the journal matches every anchored head."""
        return not self.findings

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "status": "ok" if self.ok else "broken",
            "anchor_path": self.anchor_path,
            "entries": self.entries,
            "verified_entries": self.verified_entries,
            "latest_anchored_seq": self.latest_anchored_seq,
            "keys": self.keys,
            "findings": [item.to_dict() for item in self.findings],
        }


@dataclass(slots=True)
class _Trust:
    """The keys trusted so far while walking notes in order, following rotations."""

    trusted: list[PublicKey]
    retired: list[PublicKey] = field(default_factory=list)

    def check(self, signed: SignedCheckpoint) -> tuple[str | None, PublicKey | None]:
        """(finding code or None, the key that verified)."""
        for key in self.trusted:
            verdict = signed.signed_by(key)
            if verdict is True:
                return None, key
            if verdict is False:
                return BAD_SIGNATURE, key
        # Signed by no trusted key: never announced, or retired by a rotation.
        return UNKNOWN_KEY, None

    def follow(self, signed: SignedCheckpoint, signer: PublicKey) -> None:
        """A verified note announcing a key: the new key signs from now on, the old retires."""
        announced = signed.checkpoint.announce
        if announced is None:
            return
        self.trusted = [key for key in self.trusted if key != signer] + [announced]
        self.retired.append(signer)


def trust_chain(
    roots: Sequence[PublicKey], notes: Iterable[SignedCheckpoint]
) -> tuple[list[PublicKey], list[PublicKey]]:
    """(trusted, every key ever valid) after following the rotations in ``notes`` from ``roots``."""
    trust = _Trust(list(roots))
    for signed in notes:
        code, signer = trust.check(signed)
        if code is None and signer is not None:
            trust.follow(signed, signer)
    return trust.trusted, trust.trusted + trust.retired


def _hash_at(conn: sqlite3.Connection, seq: int) -> str | None:
    row = conn.execute("SELECT hash FROM journal_events WHERE seq = ?", (seq,)).fetchone()
    return None if row is None else _as_text(row[0])


def verify_anchors(
    conn: sqlite3.Connection,
    journal_id: str,
    entries: Sequence[SignedCheckpoint | MalformedEntry],
    roots: Sequence[PublicKey],
    *,
    anchor_path: str = "",
) -> AnchorReport:
    """Check the journal on ``conn`` against anchor ``entries``, trusting ``roots`` first.

    Walks the entries in file order, following key rotations; then compares every verified
    entry with the journal: a stored hash differing at an anchored seq is ``history_rewritten``
    (reported once, at the first such seq), a journal ending before an anchored seq is
    ``tail_truncated`` or, when the file is a complete earlier state, ``rolled_back``.
    """
    report = AnchorReport(anchor_path=anchor_path, entries=len(entries))
    verified, trust = walk_entries(report, journal_id, entries, roots)
    if verified:
        _compare_with_journal(conn, verified, trust, report)
    return report


def walk_entries(
    report: AnchorReport,
    journal_id: str,
    entries: Sequence[SignedCheckpoint | MalformedEntry],
    roots: Sequence[PublicKey],
) -> tuple[list[SignedCheckpoint], _Trust]:
    """Check each entry on its own and in order (signature, journal, monotony), into ``report``.

    Returns the entries that verified and the trust reached after following key rotations;
    sets ``verified_entries``, ``keys`` and ``latest_anchored_seq``. Comparing the entries with
    a copy of the journal is the caller's part.
    """
    findings = report.findings
    trust = _Trust(list(roots))
    verified: list[SignedCheckpoint] = []
    previous: SignedCheckpoint | None = None
    for item in entries:
        if isinstance(item, MalformedEntry):
            findings.append(
                AnchorFinding(
                    ANCHOR_MALFORMED, None, item.line, None, None, f"unreadable entry: {item.error}"
                )
            )
            continue
        cp = item.checkpoint
        if cp.origin != journal_id:
            findings.append(
                AnchorFinding(
                    WRONG_JOURNAL,
                    cp.seq,
                    item.line,
                    journal_id,
                    cp.origin,
                    "the checkpoint is for another journal",
                )
            )
            continue
        code, signer = trust.check(item)
        if code is not None or signer is None:
            names = ", ".join(sig.name for sig in item.signatures)
            summary = (
                f"the signature of {names} does not verify"
                if code == BAD_SIGNATURE
                else f"signed by {names}, a key never announced (or already retired)"
            )
            findings.append(
                AnchorFinding(code or UNKNOWN_KEY, cp.seq, item.line, None, names, summary)
            )
            continue
        if previous is not None:
            prior = previous.checkpoint
            if cp.seq < prior.seq or cp.time_unix_ms < prior.time_unix_ms:
                findings.append(
                    AnchorFinding(
                        CHECKPOINTS_BACKWARDS,
                        cp.seq,
                        item.line,
                        f"seq >= {prior.seq}, time >= {prior.time_unix_ms}",
                        f"seq {cp.seq}, time {cp.time_unix_ms}",
                        "this checkpoint goes back from the one before it",
                    )
                )
            elif cp.seq == prior.seq and cp.head_hash != prior.head_hash:
                findings.append(
                    AnchorFinding(
                        CHECKPOINTS_BACKWARDS,
                        cp.seq,
                        item.line,
                        prior.head_hash,
                        cp.head_hash,
                        "two checkpoints at the same seq disagree (a fork)",
                    )
                )
        trust.follow(item, signer)
        verified.append(item)
        previous = item
    report.verified_entries = len(verified)
    report.keys = [key.vkey for key in trust.trusted]
    if verified:
        report.latest_anchored_seq = max(item.checkpoint.seq for item in verified)
    return verified, trust


def _compare_with_journal(
    conn: sqlite3.Connection,
    verified: Sequence[SignedCheckpoint],
    trust: _Trust,
    report: AnchorReport,
) -> None:
    findings = report.findings
    head = conn.execute(_CHAIN_HEAD).fetchone()
    head_seq = 0 if head is None else int(head[0])
    rewritten: list[SignedCheckpoint] = []
    for item in verified:
        cp = item.checkpoint
        if cp.seq > head_seq:
            continue
        stored = _hash_at(conn, cp.seq)
        if stored is not None and stored != cp.head_hash:
            rewritten.append(item)
    if rewritten:
        first = min(rewritten, key=lambda entry: entry.checkpoint.seq)
        findings.append(
            AnchorFinding(
                HISTORY_REWRITTEN,
                first.checkpoint.seq,
                first.line,
                first.checkpoint.head_hash,
                _hash_at(conn, first.checkpoint.seq),
                f"the stored hash differs from the signed head at {len(rewritten)} anchored"
                " seq(s): history was rewritten",
            )
        )
    beyond = [item for item in verified if item.checkpoint.seq > head_seq]
    if not beyond:
        if not findings:
            # Only meaningful for an anchor file whose every entry verified: a damaged entry is
            # already reported, and its checkpoint would show here again as missing.
            anchored = {(item.checkpoint.seq, item.checkpoint.head_hash) for item in verified}
            _missing_entries(conn, trust, anchored, report)
        return
    newest = max(beyond, key=lambda entry: entry.checkpoint.seq)
    rolled_back = _is_complete_earlier_state(conn, head_seq, verified, trust)
    code = ROLLED_BACK if rolled_back else TAIL_TRUNCATED
    summary = (
        f"the whole journal is an earlier state (head seq {head_seq}) than the checkpoint at"
        f" seq {newest.checkpoint.seq}: it was rolled back, e.g. to an older copy"
        if rolled_back
        else f"the journal ends at seq {head_seq}, before the checkpoint at seq"
        f" {newest.checkpoint.seq}: its tail was removed"
    )
    findings.append(
        AnchorFinding(
            code,
            newest.checkpoint.seq,
            newest.line,
            newest.checkpoint.head_hash,
            f"head seq {head_seq}",
            summary,
        )
    )


def _is_complete_earlier_state(
    conn: sqlite3.Connection,
    head_seq: int,
    verified: Sequence[SignedCheckpoint],
    trust: _Trust,
) -> bool:
    """True when the file looks like a whole older copy rather than a cut-down current one.

    An older copy is consistent in itself: the highest seq ever assigned (``sqlite_sequence``)
    is its head, and its own newest checkpoint is signed, lies at or below its head, matches the
    stored hash there and is one the anchor file holds. A truncated file keeps the higher
    ``sqlite_sequence`` and checkpoint rows beyond its head.
    """
    used = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal_events'").fetchone()
    if used is not None and int(used[0]) != head_seq:
        return False
    if not has_checkpoint_tables(conn):
        return False
    row = conn.execute(
        "SELECT note FROM journal_checkpoints ORDER BY seq DESC, id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return False
    try:
        own = parse_note(_as_text(row[0]))
    except ValueError:
        return False
    keys = trust.trusted + trust.retired
    if not any(own.signed_by(key) for key in keys):
        return False
    cp = own.checkpoint
    if cp.seq > head_seq or _hash_at(conn, cp.seq) != cp.head_hash:
        return False
    return any(
        item.checkpoint.seq == cp.seq and item.checkpoint.head_hash == cp.head_hash
        for item in verified
    )


def _missing_entries(
    conn: sqlite3.Connection,
    trust: _Trust,
    anchored: set[tuple[int, str]],
    report: AnchorReport,
) -> None:
    """Signed checkpoints the journal stored, up to the newest anchored seq, absent from the file.

    The writer appends every checkpoint it commits; one missing between anchored entries means
    an entry was cut out of the anchor file.
    """
    if not has_checkpoint_tables(conn) or report.latest_anchored_seq is None:
        return
    keys = trust.trusted + trust.retired
    for signed in stored_checkpoints(conn):
        cp = signed.checkpoint
        if cp.seq > report.latest_anchored_seq or (cp.seq, cp.head_hash) in anchored:
            continue
        if any(signed.signed_by(key) for key in keys):
            report.findings.append(
                AnchorFinding(
                    ANCHOR_ENTRY_MISSING,
                    cp.seq,
                    None,
                    cp.head_hash,
                    None,
                    "the journal holds a signed checkpoint the anchor file lacks: an entry was"
                    " removed from the anchor file",
                )
            )


def default_roots(
    conn: sqlite3.Connection,
    db_path: Path,
    pubkey: PublicKey | None = None,
    *,
    local_key: bool = False,
) -> list[PublicKey]:
    """The keys a verifier starts from.

    ``pubkey`` if given; else, with ``local_key``, the public half of the key file beside the
    database (``<db>.key``, the current key: enough for the newest checkpoints); else the
    journal's first recorded key. That last one is trust on first use: whoever can rewrite the
    database can replace it, which an anchor check still exposes (the anchored notes no longer
    verify) but an incremental verify would not, so pin a key with ``--pubkey``.
    """
    if pubkey is not None:
        return [pubkey]
    key_path = Path(f"{db_path}.key")
    if local_key:
        with contextlib.suppress(CheckpointError, OSError):
            if key_path.is_file():
                return [load_key_file(key_path).public]
    if not has_checkpoint_tables(conn):
        return []
    return [key for key, announced_by in journal_keys(conn) if announced_by is None][:1]


def latest_trusted_checkpoint(
    conn: sqlite3.Connection,
    journal_id: str,
    roots: Sequence[PublicKey],
    up_to_seq: int | None = None,
) -> SignedCheckpoint | None:
    """The newest stored checkpoint that a trusted key signed and that matches the stored chain.

    Trust starts at ``roots`` and follows the rotation notes (few, so all are checked); then the
    checkpoints are tried newest first, each against the key that was current when it was made,
    until one verifies and its head hash equals the stored hash at its seq (only those at or below
    ``up_to_seq``). The cost does not grow with the journal unless many recent checkpoints are
    bad.
    """
    if not roots or not has_checkpoint_tables(conn):
        return None
    trust = _Trust(list(roots))
    # A key is valid for the checkpoint rows with ids in [start, end).
    starts: dict[str, int] = {key.vkey: 0 for key in roots}
    windows: list[tuple[PublicKey, int, float]] = []
    rotations = conn.execute(
        "SELECT id, note FROM journal_checkpoints WHERE instr(note, char(10) || 'key ') > 0"
        " ORDER BY id"
    ).fetchall()
    for row_id, note in rotations:
        try:
            signed = parse_note(_as_text(note))
        except ValueError:
            continue
        code, signer = trust.check(signed)
        announced = signed.checkpoint.announce
        if code is None and signer is not None and announced is not None:
            if signed.checkpoint.origin != journal_id:
                continue
            windows.append((signer, starts.get(signer.vkey, 0), int(row_id)))
            starts[announced.vkey] = int(row_id)
            trust.follow(signed, signer)
    windows.extend((key, starts.get(key.vkey, 0), float("inf")) for key in trust.trusted)
    cursor = conn.execute(
        "SELECT id, note FROM journal_checkpoints WHERE seq <= ? ORDER BY seq DESC, id DESC",
        (up_to_seq if up_to_seq is not None else (1 << 62),),
    )
    for row_id, note in cursor:
        try:
            signed = parse_note(_as_text(note))
        except ValueError:
            continue
        cp = signed.checkpoint
        if cp.origin != journal_id:
            continue
        valid = any(
            start <= int(row_id) <= end and signed.signed_by(key) is True
            for key, start, end in windows
        )
        if valid and _hash_at(conn, cp.seq) == cp.head_hash:
            return signed
    return None
