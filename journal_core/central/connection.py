"""Connecting to the central store: URL checks, error mapping, and the schema on first use."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from journal_core.central.schema import migrate
from journal_core.errors import CentralStoreError

CentralConnection = psycopg.Connection[tuple[Any, ...]]
AsyncCentralConnection = psycopg.AsyncConnection[tuple[Any, ...]]

_SCHEMES = ("postgresql://", "postgres://")


def is_central_url(target: str) -> bool:
    """True when ``target`` names a PostgreSQL central store rather than a journal file."""
    return target.startswith(_SCHEMES)


def describe_url(url: str) -> str:
    """The URL without its password, for messages (``postgresql://user@host:port/db``)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://?"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host") or "localhost")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


def check_url(url: str) -> str:
    """Validate a central store URL; returns it, or raises a clear :class:`CentralStoreError`."""
    if not isinstance(url, str) or not is_central_url(url):
        raise CentralStoreError(
            f"{url!r} is not a PostgreSQL URL; write postgresql://USER@HOST:PORT/DATABASE"
        )
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # psycopg's message quotes the URL, password included: say only what is wrong.
        raise CentralStoreError(
            "cannot parse the central store URL; write postgresql://USER@HOST:PORT/DATABASE"
        ) from None
    return url


def connection_error(url: str, error: psycopg.Error) -> CentralStoreError:
    """A one-line message for a failed request to the central store at ``url``."""
    text = " ".join(str(error).split()) or type(error).__name__
    return CentralStoreError(f"central store {describe_url(url)}: {text}")


def connect_central(url: str, *, migrate_schema: bool = True) -> CentralConnection:
    """Open a connection to the central store (autocommit; transactions are explicit).

    With ``migrate_schema`` (the default) the central schema is created or brought up to date.
    """
    check_url(url)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as error:
        raise CentralStoreError(
            f"cannot connect to the central store {describe_url(url)}:"
            f" {' '.join(str(error).split())}; check the URL and that the server is running"
        ) from None
    try:
        if migrate_schema:
            migrate(conn)
    except psycopg.Error as error:
        conn.close()
        raise connection_error(url, error) from None
    except CentralStoreError:
        conn.close()
        raise
    return conn


async def connect_central_async(url: str) -> AsyncCentralConnection:
    """An asyncio connection to an existing central store (for readers and LISTEN)."""
    check_url(url)
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as error:
        raise CentralStoreError(
            f"cannot connect to the central store {describe_url(url)}:"
            f" {' '.join(str(error).split())}; check the URL and that the server is running"
        ) from None
    return conn
