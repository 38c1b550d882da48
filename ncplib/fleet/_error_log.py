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
    records per ``window`` seconds.

    A node may send error fields without end (a misbehaving one, at hundreds of thousands a
    second): a record each would flood the log and the disk under it. The first ``burst``
    errors of a window are logged, the last of them saying so; the rest are counted, and the
    next error logged after the window gives their number. The node's ``last_error`` still
    shows every error.
    """

    __slots__ = ("_held", "_logged", "_start", "burst", "window")

    def __init__(self, burst: int = BURST, window: float = WINDOW) -> None:
        self.burst = burst
        self.window = window
        self._start = 0.0  # when the window began (the clock of record(): seconds)
        self._logged = 0  # errors logged in the window; 0 before the first
        self._held = 0  # errors of the window not logged

    def record(self, now: float, text: str) -> str | None:
        """
        Counts one error reported at ``now``.

        :param float now: The time, in seconds, of a monotonic clock (the same at every call).
        :param str text: The error's description.
        :returns: The text to log for it (``text``, perhaps with a note of errors not logged),
            or :data:`None` to log nothing.
        """
        held = 0
        if self._logged and not 0 <= now - self._start < self.window:
            held, self._logged, self._held = self._held, 0, 0
        if not self._logged:
            self._start = now
        if self._logged >= self.burst:
            self._held += 1
            return None
        self._logged += 1
        if held:
            text = f"{text} ({held} earlier {'error' if held == 1 else 'errors'} of this node not logged)"
        if self._logged == self.burst:
            text = f"{text} (this node's further errors are not logged for up to {self.window:g} s)"
        return text
