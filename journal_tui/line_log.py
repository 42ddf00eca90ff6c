"""A scrolling view of many lines that follows new ones, built on Textual's Line API.

Textual's ``Log`` and ``RichLog`` cost a millisecond or two per written line; a live
journal writes thousands. :class:`LineLog` keeps prepared ``Text`` lines and renders only
the rows on screen (``render_line``), so appending a batch costs a list extend and one
refresh. It follows the end while ``follow`` is on; scrolling up turns following off (and
says so), ``End`` turns it back on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.events import MouseScrollUp
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip


class LineLog(ScrollView, can_focus=True):
    """Lines of literal text, scrollable both ways, following the end when asked."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end,G", "follow", "Follow", show=True),
        Binding("home,g", "top", "Top", show=False),
    ]

    DEFAULT_CSS = """
    LineLog {
        background: $surface;
        scrollbar-size-vertical: 1;
    }
    """

    follow: reactive[bool] = reactive(True)

    class FollowChanged(Message):
        """Following turned on or off (by the user scrolling, or a key)."""

        def __init__(self, log: LineLog, follow: bool) -> None:
            super().__init__()
            self.log = log
            self.follow = follow

        @property
        def control(self) -> LineLog:
            """The log that changed (lets ``@on(..., "#id")`` match it)."""
            return self.log

    class TopReached(Message):
        """The view was scrolled to its first line: time to page in earlier lines."""

        def __init__(self, log: LineLog) -> None:
            super().__init__()
            self.log = log

        @property
        def control(self) -> LineLog:
            """The log that reached its top."""
            return self.log

    def __init__(
        self,
        *,
        max_lines: int = 100_000,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._lines: list[Text] = []
        self._width = 0
        self._max_lines = max_lines
        self._cache: dict[int, Strip] = {}
        self.unseen = 0

    @property
    def line_count(self) -> int:
        """How many lines the view holds."""
        return len(self._lines)

    def line(self, index: int) -> Text:
        """The line at ``index``."""
        return self._lines[index]

    def clear(self) -> None:
        """Remove every line."""
        self._lines.clear()
        self._width = 0
        self.unseen = 0
        self._changed(scroll_end=self.follow)

    def set_lines(self, lines: Sequence[Text]) -> None:
        """Replace every line."""
        self._lines = list(lines[-self._max_lines :])
        self._width = max((line.cell_len for line in self._lines), default=0)
        self._changed(scroll_end=self.follow)

    def append(self, lines: Sequence[Text]) -> None:
        """Add lines at the end (one refresh for the whole batch)."""
        if not lines:
            return
        self._lines.extend(lines)
        self._width = max(self._width, *(line.cell_len for line in lines))
        overflow = len(self._lines) - self._max_lines
        if overflow > 0:
            del self._lines[:overflow]
            self._cache.clear()
        if not self.follow:
            self.unseen += len(lines)
        self._changed(scroll_end=self.follow)

    def replace_from(self, index: int, lines: Sequence[Text]) -> None:
        """Replace the lines from ``index`` to the end (for a block that grows, like a stream)."""
        del self._lines[index:]
        for key in [key for key in self._cache if key >= index]:
            del self._cache[key]
        if lines:
            self.append(lines)
        else:
            self._changed(scroll_end=self.follow)

    def prepend(self, lines: Sequence[Text]) -> None:
        """Add earlier lines at the top, keeping what is on screen where it is."""
        if not lines:
            return
        self._lines[:0] = lines
        self._width = max(self._width, *(line.cell_len for line in lines))
        self._cache.clear()
        self._changed(scroll_end=False)
        self.scroll_to(y=self.scroll_y + len(lines), animate=False)

    def _changed(self, *, scroll_end: bool) -> None:
        self.virtual_size = Size(self._width, len(self._lines))
        if scroll_end:
            self._to_end()
        self.refresh()

    def _to_end(self) -> None:
        # force: the scrollbar may not exist until the next layout (or the tab is hidden yet).
        self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def on_resize(self) -> None:
        """Stay at the end while following, whatever the new size."""
        if self.follow:
            self.call_after_refresh(self._to_end)

    def render_line(self, y: int) -> Strip:
        """Render one row of the view (only rows on screen are ever rendered)."""
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        if index >= len(self._lines):
            return Strip.blank(self.size.width, self.rich_style)
        strip = self._cache.get(index)
        if strip is None:
            segments = [
                segment
                for segment in self._lines[index].render(self.app.console)
                if segment.text != "\n"
            ]
            strip = Strip(segments).apply_style(self.rich_style)
            if len(self._cache) > 4_096:
                self._cache.clear()
            self._cache[index] = strip
        return strip.crop_extend(scroll_x, scroll_x + self.size.width, self.rich_style)

    def watch_follow(self, follow: bool) -> None:
        """Tell the screen, so it can say "paused"."""
        if follow:
            self.unseen = 0
            self._to_end()
        self.post_message(self.FollowChanged(self, follow))

    def _pause(self) -> None:
        if self.follow and self.max_scroll_y > 0:
            self.follow = False

    def action_follow(self) -> None:
        """Jump to the end and follow new lines."""
        self.follow = True

    def action_top(self) -> None:
        """Jump to the first line (pauses following)."""
        self._pause()
        self.scroll_home(animate=False)
        self.post_message(self.TopReached(self))

    def action_scroll_up(self) -> None:
        """Scroll up a line (pauses following)."""
        self._pause()
        super().action_scroll_up()
        self._maybe_top()

    def action_page_up(self) -> None:
        """Scroll up a page (pauses following)."""
        self._pause()
        super().action_page_up()
        self._maybe_top()

    def action_scroll_home(self) -> None:
        """Go to the top (pauses following)."""
        self.action_top()

    def _on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        self._pause()
        self.call_after_refresh(self._maybe_top)

    def _maybe_top(self) -> None:
        if self.scroll_y <= 0:
            self.post_message(self.TopReached(self))

    def action_scroll_down(self) -> None:
        """Scroll down a line; following resumes at the end."""
        super().action_scroll_down()
        self.call_after_refresh(self._resume_at_end)

    def action_page_down(self) -> None:
        """Scroll down a page; following resumes at the end."""
        super().action_page_down()
        self.call_after_refresh(self._resume_at_end)

    def _resume_at_end(self) -> None:
        if not self.follow and self.scroll_y >= self.max_scroll_y:
            self.follow = True


def blank_line() -> Text:
    """An empty line."""
    return Text("", end="")
