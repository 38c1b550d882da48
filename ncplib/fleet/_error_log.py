"""How a fleet logs the errors one node reports: a burst at most per window, then a count."""

from __future__ import annotations

__all__ = ["BURST", "WINDOW", "ErrorLog"]

#: The most errors of one node logged per window.
BURST = 10
#: The window, in seconds.
WINDOW = 60.0


class ErrorLog:
    """
    What to log for the errors one node reports (its ``ERRO`` fields): at most ``burst`` log
    records per window of ``window`` seconds.

    A node may send error fields without end (a misbehaving one, at hundreds of thousands a
    second): a record each would flood the log and the disk under it. A window opens at the
    first error after the last one closed. Its first ``burst`` errors are logged, the last of
    them saying so; the rest are counted, and the next error logged after the window gives
    their number and the last of them, as does :meth:`summary` when the connection ends. The
    node's ``last_error`` still shows every error.
    """

    __slots__ = ("_held", "_last_held", "_logged", "_start", "burst", "window")

    def __init__(self, burst: int = BURST, window: float = WINDOW) -> None:
        self.burst = burst
        self.window = window
        self._start = 0.0  # when the window opened (the clock of record(): seconds)
        self._logged = 0  # errors logged in the window; 0 before the first
        self._held = 0  # errors not logged since the last record that gave their number
        self._last_held = ""  # the last of those

    def record(self, now: float, text: str) -> str | None:
        """
        Counts one error reported at ``now``.

        :param float now: The time, in seconds, of a monotonic clock (the same at every call).
        :param str text: The error's description.
        :returns: The text to log for it (``text``, perhaps with a note of errors not logged),
            or :data:`None` to log nothing.
        """
        if self._logged and not 0 <= now - self._start < self.window:
            self._logged = 0
        if not self._logged:
            self._start = now
        if self._logged >= self.burst:
            self._held += 1
            self._last_held = text
            return None
        self._logged += 1
        held = self._take_held()
        if held:
            text = f"{text} (before it, {held})"
        if self._logged == self.burst:
            text = f"{text} (this node's further errors are not logged for up to {self.window:g} s)"
        return text

    def summary(self) -> str | None:
        """
        The errors not logged since the last record that gave their number, as text to log
        (their number and the last of them), or :data:`None` if there are none. Called when the
        node's connection ends, so that the count of a flood that stopped is not lost.
        """
        held = self._take_held()
        return held or None

    def _take_held(self) -> str:
        held, self._held = self._held, 0
        if not held:
            return ""
        errors = "error" if held == 1 else "errors"
        return f"{held} {errors} of this node not logged, the last: {self._last_held}"
