"""Helpers the record-module tests share: run a scenario on a journal, read raw file bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from journal_core import Journal, JournalReader, verify_file

T = TypeVar("T")


def run(path: Path, scenario: Callable[[Journal], Awaitable[T]]) -> T:
    """Open the journal at ``path``, run ``scenario`` with it, close it (checkpointing)."""

    async def main() -> T:
        async with await Journal.open(path) as journal:
            return await scenario(journal)

    return asyncio.run(main())


def read(path: Path, scenario: Callable[[JournalReader], Awaitable[T]]) -> T:
    """Run ``scenario`` with a read-only reader of ``path``."""

    async def main() -> T:
        async with await JournalReader.open(path) as reader:
            return await scenario(reader)

    return asyncio.run(main())


def file_bytes(path: Path) -> bytes:
    """The raw bytes of the database and of its -wal and -shm files, as far as they exist."""
    parts = [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")]
    return b"".join(part.read_bytes() for part in parts if part.exists())


def assert_verified(path: Path) -> None:
    """The journal's chain and every record row verify."""
    _, report = verify_file(path)
    assert report.ok, report.to_dict()
