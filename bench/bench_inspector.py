"""The inspector on big, live journals: first screen, commit-to-screen latency, key to repaint.

    python bench/bench_inspector.py [--quick] [--sizes 100000,1000000] [--repeat R]
        [--ingest-seconds S] [--rate N] [--presses P]

Journals are written by the demo daemon (``python -m journal_core demo --no-ui --events N``,
so they look like a real daemon's: sessions, runs, transcripts, tool jobs, approvals, memory),
built once and cached in ``bench/out/demo-<N>.db`` (1,000,000 events take several minutes;
progress is printed). Every measurement runs the inspector in a fresh subprocess, headless
(``JournalApp.run_test(size=(150, 42))``): no terminal is written to, but Textual lays out and
renders every frame as it would for a terminal (``Screen._compositor_refresh``), which is where
the paint timestamps below are taken.

(a) first screen, for each size (medians of R runs):
    - from process start (interpreter start and imports included) until the sessions table has
      rows, and from ``JournalSource.open`` until then, and until the first paint after it;
    - the process's max RSS (``ru_maxrss``) at that moment, and again once the full chain
      verification the inspector starts on mount (Chain pane) has finished, how long that took
      (it runs on a thread while the UI is already in use) and what it covered.
    Targets: <= 1 s and <= 200 MB.
(b) commit-to-screen latency, on a copy of the largest journal: a writer process appends
    transcript entries (``tape.append_entries``, one call every 5 ms with the entries due) to one
    running session at ``--rate`` entries/s (2,000; each entry is one chained event); the
    inspector process shows that session's TranscriptScreen. Each entry's text carries its number
    (``mk<n>k``); the writer records ``t_commit`` (wall clock right after the append returned: a
    payload cannot carry the time its own commit returned) and the inspector records, per entry:
    when it landed in the LineLog's lines, the first paint of the screen after that ("on
    screen"), and, for the entries that were ever inside the viewport, when ``render_line``
    first drew them. Reported: p50/p95/max of (paint - t_commit); target p95 <= 300 ms.
(c) key press to repaint under that ingest: ``--presses`` key events posted through the
    headless driver, alternately up/down, 50-150 ms apart, first on the transcript's LineLog
    (scrolls a line) and then on the sessions table (moves the cursor; the pane reloads on
    every commit meanwhile). For each press: key posted -> action ran -> first paint after the
    action, and the paint once the (animated, 20 ms) scroll reached its target. Reported:
    p50/p95 of key -> first paint; target p95 <= 100 ms.

The verification the inspector starts on mount is waited for before (b) and (c).
``--quick`` uses 10,000 and 30,000 events, 1 run, 4 s of ingest and 20 presses.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import itertools
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from figures import percentile  # noqa: E402
from journal_files import copy_journal, head_seq, install, journal_files  # noqa: E402

OUT = ROOT / "bench" / "out"
SCREEN_SIZE = (150, 42)
MARK = re.compile(r"\bmk(\d+)k\b")
TARGET_FIRST_S = 1.0
TARGET_RSS_MB = 200.0
TARGET_COMMIT_P95_MS = 300.0
TARGET_KEY_P95_MS = 100.0
WRITE_TICK_S = 0.005
VERIFY_WAIT_S = 600.0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ensure_demo(size: int) -> tuple[Path, float]:
    """The cached demo-daemon journal of ``size`` events (built if missing), and its build time."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"demo-{size}.db"
    meta = OUT / f"demo-{size}.json"
    if path.exists() and meta.exists():
        return path, float(json.loads(meta.read_text())["generation_seconds"])
    part = OUT / f"demo-{size}.db.part"
    for leftover in journal_files(part):
        leftover.unlink(missing_ok=True)
    command = [sys.executable, "-m", "journal_core", "demo", "--db", str(part), "--no-ui"]
    command += ["--events", str(size)]
    print(f"building {path.name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    while process.poll() is None:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            done = head_seq(part)
            elapsed = time.perf_counter() - started
            print(
                f"  {done:,}/{size:,} events after {elapsed:.0f} s ({done / elapsed:,.0f}/s)",
                flush=True,
            )
    assert process.stderr is not None
    summary = process.stderr.read().strip()
    if process.returncode != 0:
        raise SystemExit(f"the demo failed ({process.returncode}): {summary}")
    seconds = time.perf_counter() - started
    install(part, path)
    meta.write_text(
        json.dumps({"events": head_seq(path), "generation_seconds": seconds, "demo": summary})
    )
    print(f"built {path.name} in {seconds:.0f} s: {summary}", flush=True)
    return path, seconds


# --- the inspector side (child processes) -------------------------------------------------------


class Signal:
    """Timestamps of something that happens in the app, and a way to wait for the next one."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._event = asyncio.Event()

    def fire(self) -> None:
        self.times.append(time.perf_counter())
        self._event.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition()`` holds, checking it whenever the signal fires."""
        deadline = time.perf_counter() + timeout
        while not condition():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return False
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except TimeoutError:
                return condition()
        return True


def _hook_paints(paints: Signal, after: Callable[[Any], None] | None = None) -> None:
    """Fire ``paints`` after every compositor refresh (a frame rendered for the terminal)."""
    from textual.screen import Screen

    original = Screen._compositor_refresh

    def hooked(self: Screen[Any]) -> None:
        original(self)
        if after is not None:
            after(self)
        paints.fire()

    Screen._compositor_refresh = hooked  # type: ignore[method-assign]


async def _wait_start_verification(app: Any) -> float:
    """When (perf_counter) the verification the Chain pane starts on mount was done.

    Done: something was verified and no verify worker ran for half a second (the pane may chain
    a full check after a quick one). Gives up after ``VERIFY_WAIT_S``.
    """
    started = time.perf_counter()
    quiet_since: float | None = None
    while time.perf_counter() - started < VERIFY_WAIT_S:
        busy = app.chain.running or any(
            worker.group == "verify" and not worker.is_finished for worker in app.workers
        )
        if busy or not app.chain.state.verified_seq:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.perf_counter()
        elif time.perf_counter() - quiet_since > 0.5:
            return quiet_since
        await asyncio.sleep(0.05)
    return time.perf_counter()


def _verification(app: Any) -> dict[str, object]:
    """What the Chain pane's start-up verification covered."""
    state = app.chain.state
    return {
        "verified_seq": state.verified_seq,
        "records_checked": state.records_checked,
        "full_check": state.full_at_unix_ms is not None,
    }


async def _quiet(app: Any) -> None:
    """Pause live updates before quitting, so no refresh races the shutdown."""
    app.paused = True
    await asyncio.sleep(0.3)


def _run_measured(main: Coroutine[Any, Any, None], result: dict[str, object]) -> None:
    """Run a measuring coroutine; an error the app raises once measured is noted, not fatal."""
    try:
        asyncio.run(main)
    except Exception as error:
        if not result:
            raise
        result["exit_error"] = f"{type(error).__name__}: {error}"[:300]
        print(f"(the app raised while quitting: {result['exit_error']})", file=sys.stderr)


def child_first_screen(path: str, spawned: float) -> dict[str, object]:
    """Start the inspector on ``path``; times until the sessions table has rows and is painted."""
    entered = time.time()
    from textual.widgets import DataTable

    from journal_tui.app import JournalApp
    from journal_tui.source import JournalSource

    imported = time.time()
    paints = Signal()
    _hook_paints(paints)
    result: dict[str, object] = {}

    async def run() -> None:
        opened_at = time.perf_counter()
        source = JournalSource(path, read_only=True)
        await source.open()
        app = JournalApp(source)
        async with app.run_test(size=SCREEN_SIZE):
            table = app.query_one("#sessions-table", DataTable)
            while table.row_count == 0:
                await asyncio.sleep(0.001)
            rows_at = time.perf_counter()
            rows_wall = time.time()
            await paints.wait_for(lambda: bool(paints.times) and paints.times[-1] > rows_at, 10)
            painted_at = paints.times[-1]
            result.update(
                process_to_rows_s=rows_wall - spawned,
                interpreter_s=entered - spawned,
                imports_s=imported - entered,
                open_to_rows_s=rows_at - opened_at,
                open_to_paint_s=painted_at - opened_at,
                rows=table.row_count,
                rss_first_mb=_rss_mb(),
            )
            result["verify_s"] = await _wait_start_verification(app) - opened_at
            result.update(_verification(app))
            result["rss_after_verify_mb"] = _rss_mb()
            await _quiet(app)

    _run_measured(run(), result)
    return result


def child_ingest(
    path: str, session_id: str, phase_s: float, presses: int, out: str
) -> dict[str, object]:
    """The inspector under ingest: transcript latency (b), then key-to-paint (c)."""
    from textual import events
    from textual.widgets import DataTable

    from journal_tui import transcript_screen as transcript_module
    from journal_tui.app import JournalApp
    from journal_tui.line_log import LineLog
    from journal_tui.source import JournalSource
    from journal_tui.transcript_screen import TranscriptScreen

    landed: dict[int, float] = {}
    painted: dict[int, float] = {}
    visible: dict[int, float] = {}
    pending: list[int] = []

    def scan(lines: Any) -> None:
        now = time.time()
        for line in lines:
            for match in MARK.finditer(line.plain):
                number = int(match.group(1))
                if number not in landed:
                    landed[number] = now
                    pending.append(number)

    original_append = LineLog.append
    original_set = LineLog.set_lines
    original_render = LineLog.render_line

    def append(self: LineLog, lines: Any) -> None:
        original_append(self, lines)
        scan(lines)

    def set_lines(self: LineLog, lines: Any) -> None:
        original_set(self, lines)
        scan(lines)

    def render_line(self: LineLog, y: int) -> Any:
        strip = original_render(self, y)
        index = self.scroll_offset.y + y
        if index < self.line_count:
            for match in MARK.finditer(self.line(index).plain):
                visible.setdefault(int(match.group(1)), time.time())
        return strip

    LineLog.append = append  # type: ignore[method-assign]
    LineLog.set_lines = set_lines  # type: ignore[method-assign]
    LineLog.render_line = render_line  # type: ignore[method-assign]

    # How the transcript's reads went: (start, seconds, entries, cancelled) per page read.
    reads: list[tuple[float, float, int, bool]] = []
    original_read = getattr(transcript_module, "session_transcript")  # noqa: B009

    async def session_transcript(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            page = await original_read(*args, **kwargs)
        except asyncio.CancelledError:
            reads.append((began, time.perf_counter() - began, 0, True))
            raise
        reads.append((began, time.perf_counter() - began, len(page.entries), False))
        return page

    setattr(transcript_module, "session_transcript", session_transcript)  # noqa: B010

    def after_paint(screen: Any) -> None:
        if pending and isinstance(screen, TranscriptScreen):
            now = time.time()
            for number in pending:
                painted[number] = now
            pending.clear()

    paints = Signal()
    _hook_paints(paints, after_paint)
    actions = Signal()
    # What the UI thread spends: each screen update (layout + render) and each poll of the app.
    frames: list[tuple[float, float]] = []
    polls: list[tuple[float, float]] = []
    from textual.screen import Screen

    original_update = Screen._on_timer_update

    def timed_update(self: Screen[Any]) -> None:
        began = time.perf_counter()
        original_update(self)
        frames.append((began, time.perf_counter() - began))

    Screen._on_timer_update = timed_update  # type: ignore[method-assign]
    original_poll = JournalApp._poll

    async def timed_poll(self: JournalApp) -> None:
        began = time.perf_counter()
        await original_poll(self)
        polls.append((began, time.perf_counter() - began))

    JournalApp._poll = timed_poll  # type: ignore[method-assign]
    for cls, name in (
        (LineLog, "action_scroll_up"),
        (LineLog, "action_scroll_down"),
        (DataTable, "action_cursor_up"),
        (DataTable, "action_cursor_down"),
    ):
        original = getattr(cls, name)

        def wrapped(self: Any, _original: Any = original) -> None:
            actions.fire()
            _original(self)

        setattr(cls, name, wrapped)

    result: dict[str, object] = {}
    collections: list[tuple[float, float, int]] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            now = time.perf_counter()
            collections.append((gc_started[0], now - gc_started[0], info["generation"]))

    gc.callbacks.append(on_gc)

    def painted_after(moment: float) -> bool:
        return bool(paints.times) and paints.times[-1] > moment

    async def press_keys(
        app: Any, widget: Any, count: int, keys: tuple[str, str]
    ) -> list[dict[str, float]]:
        """Post ``count`` key events alternating ``keys``; time each to the next paints."""
        rng = random.Random(7)
        timings: list[dict[str, float]] = []
        seen = 0
        acted = first = 0.0

        def action_ran() -> bool:
            return len(actions.times) > seen

        def painted_since_action() -> bool:
            return painted_after(acted)

        def settled() -> bool:
            return bool(paints.times[-1] >= first and widget.scroll_y == widget.scroll_target_y)

        for index in range(count):
            seen = len(actions.times)
            posted = time.perf_counter()
            app._driver.send_message(events.Key(keys[index % 2], None))
            if not await actions.wait_for(action_ran, 5):
                timings.append({"posted": posted, "lost": 1.0})
                continue
            acted = actions.times[seen]
            await paints.wait_for(painted_since_action, 5)
            first = paints.times[bisect.bisect_right(paints.times, acted)]
            await paints.wait_for(settled, 5)
            timings.append(
                {
                    "posted": posted,
                    "action": acted - posted,
                    "first": first - posted,
                    "settled": paints.times[-1] - posted,
                }
            )
            await asyncio.sleep(rng.uniform(0.05, 0.15))
        return timings

    async def run() -> None:
        source = JournalSource(path, read_only=True)
        await source.open()
        app = JournalApp(source)
        started = time.perf_counter()
        async with app.run_test(size=SCREEN_SIZE) as pilot:
            result["initial_verify_s"] = await _wait_start_verification(app) - started
            result["initial_verification"] = _verification(app)
            if os.environ.get("BENCH_WHAT_IF_GC"):
                # An experiment, not the inspector as shipped: see --what-if-gc.
                gc.collect()
                gc.freeze()
                gc.set_threshold(50_000, 50, 100)
            screen = TranscriptScreen(source, session_id)
            app.push_screen(screen)
            await pilot.pause(0.5)
            print("READY", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            result["phase_start"] = time.time()
            phase_began = time.perf_counter()
            lags: list[tuple[float, float]] = []

            async def lag_probe() -> None:
                """How late a 10 ms sleep wakes up: how long the UI thread was blocked."""
                while True:
                    began = time.perf_counter()
                    await asyncio.sleep(0.01)
                    lags.append((began - phase_began, time.perf_counter() - began - 0.01))

            probe = asyncio.create_task(lag_probe())
            await asyncio.sleep(phase_s)
            windows = {"transcript": (0.0, time.perf_counter() - phase_began)}
            result["phase_end"] = time.time()
            log = screen.query_one("#transcript-log", LineLog)
            result["screen_on_top"] = app.screen is screen
            result["log_lines"] = log.line_count
            log.focus()
            began = time.perf_counter() - phase_began
            result["keys_log"] = await press_keys(app, log, presses, ("up", "down"))
            windows["keys_log"] = (began, time.perf_counter() - phase_began)
            app.pop_screen()
            await pilot.pause(0.3)
            table = app.query_one("#sessions-table", DataTable)
            table.focus()
            await asyncio.sleep(0.3)
            print("TABLE", flush=True)
            began = time.perf_counter() - phase_began
            result["keys_table"] = await press_keys(app, table, presses, ("down", "up"))
            windows["keys_table"] = (began, time.perf_counter() - phase_began)
            probe.cancel()
            result["keys_end"] = time.time()
            result["windows"] = windows
            result["lags"] = lags
            result["gc"] = [(b - phase_began, d, g) for b, d, g in collections if b >= phase_began]
            result["frames"] = [(b - phase_began, d) for b, d in frames if b >= phase_began]
            result["polls"] = [(b - phase_began, d) for b, d in polls if b >= phase_began]
            result["reads"] = [
                (began - phase_began, seconds, entries, cancelled)
                for began, seconds, entries, cancelled in reads
                if began >= phase_began
            ]
            result["rss_mb"] = _rss_mb()
            result["paints"] = len(paints.times)
            result.update(landed=landed, painted=painted, visible=visible)
            Path(out).write_text(json.dumps(result))
            await _quiet(app)

    _run_measured(run(), result)
    return {"ok": True}


# --- the writer side ---------------------------------------------------------------------------

_TOKEN_WORDS = (
    "the",
    "refresh",
    "path",
    "now",
    "compares",
    "expiry",
    "in",
    "seconds",
    "against",
    "milliseconds",
    "so",
)


def entry(number: int) -> tuple[str, dict[str, object]]:
    """Transcript entry ``number`` of a repeating turn: ask, 40 streamed tokens, tool, reply."""
    mark = f"mk{number}k"
    step = number % 45
    if step == 0:
        return "message.received", {
            "text": f"Please fix the failing auth tests ({mark}).",
            "channel": "cli",
        }
    if step <= 40:
        words = " ".join(_TOKEN_WORDS[(number + i) % len(_TOKEN_WORDS)] for i in range(3))
        return "model_token", {"text": f"{words} {mark} "}
    if step == 41:
        return "tool_proposal", {
            "tool": "shell",
            "arguments": {"command": f"pytest -x tests/test_auth.py  # {mark}"},
            "risk": "low",
        }
    if step == 42:
        return "tool_result", {
            "mark": mark,
            "tool": "shell",
            "exit_code": 0,
            "output_tail": "42 passed in 3.02s",
        }
    if step == 43:
        return "message.replied", {"text": f"The tests pass again ({mark})."}
    return "status", {"mark": mark, "state": "in_progress"}


def child_writer(path: str, rate: float, max_s: float, out: str) -> dict[str, object]:
    """Append transcript entries at ``rate``/s from GO until STOP (or ``max_s``) on stdin."""
    from journal_core import Journal, sessions, tape

    async def run() -> dict[str, object]:
        async with await Journal.open(path, create=False) as journal:
            session = await sessions.create_session(
                journal,
                session_key=f"bench:ingest/{time.time_ns()}",
                principal="user:bench",
                device_id="bench-host",
                channel="cli",
            )
            await sessions.update_session(
                journal, session.session_id, auto_title="Ingest benchmark"
            )
            run_ = await sessions.start_run(journal, session.session_id)
            await sessions.transition_run(journal, run_.run_id, "accepted")
            await sessions.transition_run(journal, run_.run_id, "in_progress")
            print(f"READY {session.session_id}", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
            commits: dict[int, float] = {}
            submits: dict[int, float] = {}
            batches: list[float] = []
            sent = 0
            start = time.perf_counter()
            started_wall = time.time()
            while not stop.done() and time.perf_counter() - start < max_s:
                due = min(500, int((time.perf_counter() - start) * rate) - sent)
                if due > 0:
                    submitted = time.time()
                    await tape.append_entries(
                        journal, run_.run_id, [entry(sent + i) for i in range(due)]
                    )
                    committed = time.time()
                    for number in range(sent, sent + due):
                        submits[number] = submitted
                        commits[number] = committed
                    batches.append(committed - submitted)
                    sent += due
                await asyncio.sleep(WRITE_TICK_S)
            elapsed = time.perf_counter() - start
            stop.cancel()
            return {
                "session_id": session.session_id,
                "entries": sent,
                "seconds": elapsed,
                "started": started_wall,
                "commits": commits,
                "submits": submits,
                "append_p50_ms": percentile(batches, 0.5) * 1000 if batches else 0.0,
                "append_p95_ms": percentile(batches, 0.95) * 1000 if batches else 0.0,
            }

    result = asyncio.run(run())
    Path(out).write_text(json.dumps(result))
    return {"ok": True}


# --- the parent --------------------------------------------------------------------------------


def _child_command(*args: str) -> list[str]:
    return [sys.executable, __file__, "--child", *args]


def measure_first_screen(path: Path, repeat: int) -> dict[str, float]:
    """Medians of the first-screen figures over ``repeat`` fresh processes."""
    runs: list[dict[str, float]] = []
    for _ in range(repeat):
        spawned = time.time()
        done = subprocess.run(
            _child_command("first-screen", str(path), repr(spawned)),
            check=False,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"the first-screen child failed:\n{done.stderr[-4000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    keys = [key for key, value in runs[0].items() if isinstance(value, int | float)]
    return {key: statistics.median(float(run[key]) for run in runs) for key in keys}


def _spy(pid: int, name: str, duration: float | None = None) -> subprocess.Popen[bytes] | None:
    """Sample ``pid`` with py-spy (if installed) into ``bench/out/profile-<name>.txt``."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("  (py-spy is not installed: no profile)")
        return None
    command = [py_spy, "record", "-p", str(pid), "-r", "200", "--nonblocking", "-f", "raw"]
    command += ["-o", str(OUT / f"profile-{name}.txt")]
    if duration is not None:
        command += ["-d", str(max(1, round(duration)))]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise_profile(name: str, top: int = 14) -> None:
    """Print where the samples of ``profile-<name>.txt`` (py-spy raw) went, by function."""
    path = OUT / f"profile-{name}.txt"
    if not path.exists():
        return
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            frame.split(" (")[0] + " (" + frame.rsplit("/", 1)[-1] for frame in stack.split(";")
        ]
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    print(f"  profile {name}: {total:,} samples (all threads); inclusive / self share")
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    for frame, count in ranked:
        print(f"    {count / total:6.1%} {own.get(frame, 0) / total:6.1%}  {frame[:110]}")


def measure_ingest(
    path: Path, rate: float, phase_s: float, presses: int, profile: bool = False
) -> dict[str, Any]:
    """Run the writer and the inspector side by side on a copy of ``path``; join their records."""
    spies: list[subprocess.Popen[bytes] | None] = []
    work = OUT / "ingest-work.db"
    writer_out = OUT / "ingest-writer.json"
    inspector_out = OUT / "ingest-inspector.json"
    for item in (*journal_files(work), writer_out, inspector_out):
        item.unlink(missing_ok=True)
    copy_journal(path, work)
    writer = subprocess.Popen(
        _child_command("writer", str(work), str(rate), "300", str(writer_out)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    inspector: subprocess.Popen[str] | None = None
    try:
        assert writer.stdin is not None
        assert writer.stdout is not None
        ready = writer.stdout.readline().split()
        if not ready or ready[0] != "READY":
            raise SystemExit(f"the writer did not start: {ready}")
        session_id = ready[1]
        inspector = subprocess.Popen(
            _child_command(
                "ingest", str(work), session_id, str(phase_s), str(presses), str(inspector_out)
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert inspector.stdin is not None
        assert inspector.stdout is not None
        if inspector.stdout.readline().strip() != "READY":
            raise SystemExit("the inspector did not start")
        writer.stdin.write("GO\n")
        writer.stdin.flush()
        inspector.stdin.write("GO\n")
        inspector.stdin.flush()
        if profile:
            spies.append(_spy(inspector.pid, "inspector-transcript", phase_s))
            spies.append(_spy(writer.pid, "writer", phase_s))
        if inspector.stdout.readline().strip() == "TABLE" and profile:
            spies.append(_spy(inspector.pid, "inspector-sessions"))
        inspector.wait(timeout=600)
        writer.stdin.write("STOP\n")
        writer.stdin.flush()
        writer.wait(timeout=120)
    finally:
        for spy in spies:
            if spy is not None:
                spy.wait(timeout=60)
        for process in (writer, inspector):
            if process is not None and process.poll() is None:
                process.kill()
        for item in journal_files(work):
            item.unlink(missing_ok=True)
    wrote = json.loads(writer_out.read_text())
    saw = json.loads(inspector_out.read_text())
    return analyse_ingest(wrote, saw)


def _stats_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0.0, "p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    return {
        "n": float(len(values)),
        "p50": percentile(values, 0.5) * 1000,
        "p95": percentile(values, 0.95) * 1000,
        "max": max(values) * 1000,
    }


def analyse_ingest(wrote: dict[str, Any], saw: dict[str, Any]) -> dict[str, Any]:
    """Latencies per entry committed during phase (b), and key timings of phase (c)."""
    commits = {int(k): v for k, v in wrote["commits"].items()}
    landed = {int(k): v for k, v in saw["landed"].items()}
    painted = {int(k): v for k, v in saw["painted"].items()}
    visible = {int(k): v for k, v in saw["visible"].items()}
    start, end = saw["phase_start"], saw["phase_end"]
    numbers = sorted(n for n, t in commits.items() if start <= t <= end)
    in_phase = [commits[n] for n in numbers]
    phase_rate = len(numbers) / (max(in_phase) - min(in_phase)) if len(in_phase) > 1 else 0.0
    missing = [n for n in numbers if n not in painted]
    thirds = [numbers[i * len(numbers) // 3 : (i + 1) * len(numbers) // 3] for i in range(3)]

    def latencies(seen: dict[int, float], which: list[int]) -> list[float]:
        return [seen[n] - commits[n] for n in which if n in seen]

    def keys(name: str) -> dict[str, float]:
        rows = [row for row in saw[name] if "lost" not in row]
        first = [row["first"] for row in rows]
        return {
            **{f"first_{k}": v for k, v in _stats_ms(first).items()},
            "settled_p50": percentile([row["settled"] for row in rows], 0.5) * 1000,
            "settled_p95": percentile([row["settled"] for row in rows], 0.95) * 1000,
            "action_p50": percentile([row["action"] for row in rows], 0.5) * 1000,
            "action_p95": percentile([row["action"] for row in rows], 0.95) * 1000,
            "lost": float(len(saw[name]) - len(rows)),
        }

    reads = saw["reads"]
    done_reads = [row[1] for row in reads if not row[3]]
    late_reads = [row[1] for row in reads if not row[3] and row[0] >= 2 * (end - start) / 3]
    ui: dict[str, dict[str, float]] = {}
    for name, (low, high) in saw["windows"].items():

        def inside(rows: list[list[float]], low: float = low, high: float = high) -> list[float]:
            return [row[1] for row in rows if low <= row[0] <= high]

        frames = inside(saw["frames"])
        pauses = inside(saw["gc"])
        polls = [row for row in saw["polls"] if low <= row[0] <= high]
        periods = [b[0] - a[0] for a, b in itertools.pairwise(polls)]
        ui[name] = {
            **{f"frame_{k}": v for k, v in _stats_ms(frames).items()},
            "frames_busy": sum(frames) / (high - low),
            "gc_total": sum(pauses) / (high - low),
            "gc_max": max(pauses, default=0.0) * 1000,
            **{f"lag_{k}": v for k, v in _stats_ms(inside(saw["lags"])).items()},
            **{f"poll_{k}": v for k, v in _stats_ms([row[1] for row in polls]).items()},
            **{f"period_{k}": v for k, v in _stats_ms(periods).items()},
        }
    return {
        "ui": ui,
        "screen_on_top": saw["screen_on_top"],
        "log_lines": saw["log_lines"],
        "reads": len(reads),
        "reads_cancelled": sum(1 for row in reads if row[3]),
        "read": _stats_ms(done_reads),
        "read_last_third": _stats_ms(late_reads),
        "entries_in_phase": len(numbers),
        "rate": phase_rate,
        "writer_append_p50_ms": wrote["append_p50_ms"],
        "writer_append_p95_ms": wrote["append_p95_ms"],
        "landed": _stats_ms(latencies(landed, numbers)),
        "painted": _stats_ms(latencies(painted, numbers)),
        "visible": _stats_ms(latencies(visible, numbers)),
        "painted_thirds": [_stats_ms(latencies(painted, part)) for part in thirds],
        "missing": len(missing),
        "keys_log": keys("keys_log"),
        "keys_table": keys("keys_table"),
        "keys_during_ingest": saw["keys_end"] <= wrote["started"] + wrote["seconds"],
        "initial_verify_s": saw["initial_verify_s"],
        "rss_mb": saw["rss_mb"],
    }


def _child_main(argv: list[str]) -> int:
    kind = argv[0]
    if kind == "first-screen":
        result = child_first_screen(argv[1], float(argv[2]))
    elif kind == "ingest":
        result = child_ingest(argv[1], argv[2], float(argv[3]), int(argv[4]), argv[5])
    elif kind == "writer":
        result = child_writer(argv[1], float(argv[2]), float(argv[3]), argv[4])
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print(json.dumps(result), flush=True)
    return 0


def median_tree(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every number across ``runs`` (dicts of the same shape), leaf by leaf."""
    first = runs[0]
    merged: dict[str, Any] = {}
    for key, value in first.items():
        values = [run[key] for run in runs]
        if isinstance(value, dict):
            merged[key] = median_tree(values)
        elif isinstance(value, list):
            merged[key] = [median_tree(list(items)) for items in zip(*values, strict=True)]
        elif isinstance(value, bool):
            merged[key] = all(values)
        elif isinstance(value, int | float):
            merged[key] = statistics.median(values)
        else:
            merged[key] = value
    return merged


def print_ui(label: str, ui: dict[str, float]) -> None:
    """One line on what the UI thread did during a window."""
    print(
        f"  UI thread, {label}: {int(ui['frame_n']):,} screen updates (layout + render) p50"
        f" {ui['frame_p50']:.0f} ms p95 {ui['frame_p95']:.0f} ms max {ui['frame_max']:.0f} ms,"
        f" {ui['frames_busy']:.0%} of the time; event-loop lag p95 {ui['lag_p95']:.0f} ms max"
        f" {ui['lag_max']:.0f} ms; polls every {ui['period_p50']:.0f} ms (p95"
        f" {ui['period_p95']:.0f}), each p50 {ui['poll_p50']:.0f} ms p95 {ui['poll_p95']:.0f} ms;"
        f" GC {ui['gc_total']:.0%} of the time, longest pause {ui['gc_max']:.0f} ms"
    )


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> int:
    """Build or reuse the journals, run (a), (b) and (c), print the tables."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return _child_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small journals, short ingest")
    parser.add_argument("--sizes", help="comma-separated journal sizes (default 100000,1000000)")
    parser.add_argument("--repeat", type=int, default=None, help="first-screen runs (default 5)")
    parser.add_argument("--ingest-seconds", type=float, default=None, help="phase (b) length")
    parser.add_argument("--rate", type=float, default=2_000.0, help="entries/s during ingest")
    parser.add_argument("--presses", type=int, default=None, help="key presses per target")
    parser.add_argument(
        "--ingest-runs", type=int, default=None, help="runs of (b) and (c) (default 3; quick 1)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample (b) and (c) with py-spy and summarise"
    )
    parser.add_argument(
        "--what-if-gc",
        action="store_true",
        help="experiment: freeze the heap after start-up and raise GC thresholds in the inspector",
    )
    parser.add_argument("--skip-first-screen", action="store_true", help="run only (b) and (c)")
    args = parser.parse_args(argv)
    if args.sizes:
        sizes = sorted(int(item) for item in args.sizes.split(","))
    else:
        sizes = [10_000, 30_000] if args.quick else [100_000, 1_000_000]
    repeat = args.repeat or (1 if args.quick else 5)
    phase_s = args.ingest_seconds or (4.0 if args.quick else 10.0)
    presses = args.presses or (20 if args.quick else 50)
    ingest_runs = args.ingest_runs or (1 if args.quick else 3)
    if args.what_if_gc:
        os.environ["BENCH_WHAT_IF_GC"] = "1"
        print("EXPERIMENT: inspector with gc.freeze() after start-up and gc thresholds raised")

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, screen {SCREEN_SIZE}")
    journals = {size: ensure_demo(size) for size in sizes}
    for size, (path, seconds) in journals.items():
        mb = sum(item.stat().st_size for item in journal_files(path)[:2] if item.exists()) / 1e6
        print(f"demo journal {size:,} events: {mb:,.0f} MB, built in {seconds:.0f} s")

    if not args.skip_first_screen:
        print()
        print(f"(a) first screen, headless {SCREEN_SIZE[0]}x{SCREEN_SIZE[1]}, medians of {repeat}")
        print(
            f"{'events':>11}{'start->rows':>12}{'interp':>8}{'imports':>8}{'open->rows':>11}"
            f"{'->paint':>9}{'RSS MB':>8}{'verify s':>9}{'RSS after':>10}"
        )
        first: dict[int, dict[str, float]] = {}
        for size, (path, _) in journals.items():
            row = first[size] = measure_first_screen(path, repeat)
            print(
                f"{size:>11,}{row['process_to_rows_s']:>11.2f}s{row['interpreter_s']:>7.2f}s"
                f"{row['imports_s']:>7.2f}s{row['open_to_rows_s']:>10.2f}s"
                f"{row['open_to_paint_s']:>8.2f}s{row['rss_first_mb']:>8.0f}{row['verify_s']:>9.1f}"
                f"{row['rss_after_verify_mb']:>10.0f}"
            )
            print(
                f"{'':>11} start-up verification: chain to seq {row['verified_seq']:,.0f},"
                f" {row['records_checked']:,.0f} record rows checked"
                f" ({'a full check' if row['full_check'] else 'no full check with records'})"
            )
        largest = first[sizes[-1]]
        print(
            f"  target <= {TARGET_FIRST_S:.0f} s from process start:"
            f" {_met(largest['process_to_rows_s'] <= TARGET_FIRST_S)};"
            f" <= {TARGET_RSS_MB:.0f} MB RSS at first screen:"
            f" {_met(largest['rss_first_mb'] <= TARGET_RSS_MB)},"
            " after the initial verification:"
            f" {_met(largest['rss_after_verify_mb'] <= TARGET_RSS_MB)}"
        )

    path = journals[sizes[-1]][0]
    print()
    print(
        f"(b) commit-to-screen on a copy of the {sizes[-1]:,}-event journal: writer at"
        f" {args.rate:,.0f} entries/s for {phase_s:.0f} s, inspector on its TranscriptScreen"
    )
    runs = []
    for attempt in range(ingest_runs):
        runs.append(measure_ingest(path, args.rate, phase_s, presses, args.profile and not attempt))
        print(
            f"  run {attempt + 1}/{ingest_runs}: commit-to-paint p95"
            f" {runs[-1]['painted']['p95']:.0f} ms; key-to-paint p95 log"
            f" {runs[-1]['keys_log']['first_p95']:.0f} ms, table"
            f" {runs[-1]['keys_table']['first_p95']:.0f} ms",
            flush=True,
        )
    ingest = median_tree(runs)
    print(f"  medians of {ingest_runs} run(s):")
    print(
        f"  {int(ingest['entries_in_phase']):,} entries committed in the window, achieved"
        f" {ingest['rate']:,.0f}/s; writer append_entries p50 {ingest['writer_append_p50_ms']:.1f}"
        f" ms, p95 {ingest['writer_append_p95_ms']:.1f} ms; inspector waited"
        f" {ingest['initial_verify_s']:.1f} s for its start-up verification first"
    )
    for label, key in (
        ("in LineLog lines", "landed"),
        ("painted (first frame after)", "painted"),
        ("drawn in the viewport", "visible"),
    ):
        stats = ingest[key]
        print(
            f"  t_commit -> {label:<28} p50 {stats['p50']:7.0f} ms  p95 {stats['p95']:7.0f} ms"
            f"  max {stats['max']:7.0f} ms  ({int(stats['n']):,} entries)"
        )
    read, late = ingest["read"], ingest["read_last_third"]
    print(
        f"  transcript page reads (session_transcript) during the window: {int(ingest['reads'])},"
        f" {int(ingest['reads_cancelled'])} cancelled by the next poll; p50 {read['p50']:.0f} ms,"
        f" p95 {read['p95']:.0f} ms, max {read['max']:.0f} ms (last third: p50"
        f" {late['p50']:.0f} ms, p95 {late['p95']:.0f} ms)"
    )
    print_ui("transcript window", ingest["ui"]["transcript"])
    if not ingest["screen_on_top"]:
        print("  (warning: the TranscriptScreen was not on top at the end of the window)")
    thirds = "  ".join(f"{part['p95']:.0f}" for part in ingest["painted_thirds"])
    print(
        f"  painted p95 by third of the window (ms): {thirds};"
        f" never painted: {int(ingest['missing'])}"
    )
    painted_ok = ingest["painted"]["p95"] <= TARGET_COMMIT_P95_MS
    print(f"  target p95 <= {TARGET_COMMIT_P95_MS:.0f} ms: {_met(painted_ok)}")

    print()
    print(f"(c) key press -> repaint under the same ingest ({presses} presses per target)")
    worst = 0.0
    for label, key in (
        ("transcript log up/down", "keys_log"),
        ("sessions table up/down", "keys_table"),
    ):
        stats = ingest[key]
        worst = max(worst, stats["first_p95"])
        print(
            f"  {label:<24} key->first paint p50 {stats['first_p50']:6.0f} ms"
            f" p95 {stats['first_p95']:6.0f} ms max {stats['first_max']:6.0f} ms;"
            f" key->action p95 {stats['action_p95']:5.0f} ms;"
            f" scroll settled p95 {stats['settled_p95']:6.0f} ms; lost {int(stats['lost'])}"
        )
    print_ui("log key presses", ingest["ui"]["keys_log"])
    print_ui("table key presses", ingest["ui"]["keys_table"])
    if not ingest["keys_during_ingest"]:
        print("  (warning: the writer stopped before the last key press)")
    print(f"  target p95 <= {TARGET_KEY_P95_MS:.0f} ms: {_met(worst <= TARGET_KEY_P95_MS)}")
    print(f"  inspector max RSS during (b) and (c): {ingest['rss_mb']:.0f} MB")
    if args.profile:
        print()
        for name in ("inspector-transcript", "inspector-sessions", "writer"):
            summarise_profile(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
