"""The inspector's wall clock, in one place (countdowns, "3s ago", run durations).

Screen tests replace :func:`now_ms` to draw the same picture on every run.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Now, in unix milliseconds."""
    return time.time_ns() // 1_000_000


def monotonic() -> float:
    """Seconds on a clock that never goes backwards (for throttling refreshes)."""
    return time.monotonic()
