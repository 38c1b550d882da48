"""
Reconnection delays: exponential backoff with full jitter between two bounds.

After the n-th failure in a row (counting from 0) the delay is drawn uniformly from
``[low, min(high, low * 2 ** (n + 1))]``: the ceiling doubles with each failure until it reaches
``high``, and the draw spreads the retries of many nodes that failed together (a switch that
rebooted) over the whole interval instead of sending them back in one burst ("full jitter",
as described in the AWS Architecture Blog's "Exponential Backoff And Jitter").
"""

from __future__ import annotations

import math
import random

__all__ = ["Backoff", "check_bounds"]

# Past this many failures the ceiling has long reached any sane upper bound; stop doubling.
_MAX_DOUBLINGS = 64


def check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    """
    Checks a ``(low, high)`` pair of delays in seconds.

    :raises ValueError: unless ``0 <= low <= high`` and both are finite.
    :returns: The pair as floats.
    """
    try:
        low, high = (float(bound) for bound in bounds)
    except (TypeError, ValueError) as ex:
        raise ValueError(f"reconnect_delay must be a pair of numbers, not {bounds!r}") from ex
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise ValueError(f"reconnect_delay must satisfy 0 <= low <= high (finite), not {bounds!r}")
    return low, high


class Backoff:
    """
    The delays before successive reconnection attempts of one node, in seconds.

    :param float low: The shortest delay.
    :param float high: The longest delay.
    :param random.Random rng: The source of jitter (default: a new :class:`random.Random`).
    """

    __slots__ = ("_random", "failures", "high", "low")

    def __init__(self, low: float, high: float, rng: random.Random | None = None) -> None:
        self.low, self.high = check_bounds((low, high))
        self.failures = 0
        self._random = rng if rng is not None else random.Random()

    def ceiling(self) -> float:
        """The largest delay the next :meth:`next_delay` can return."""
        if self.low <= 0:
            return self.high
        return min(self.high, self.low * 2.0 ** min(self.failures + 1, _MAX_DOUBLINGS))

    def next_delay(self) -> float:
        """Counts one more failure and returns the delay before the next attempt."""
        ceiling = self.ceiling()
        self.failures += 1
        return self.low + self._random.random() * (ceiling - self.low)

    def reset(self) -> None:
        """Forgets the failures: the next delay is short again."""
        self.failures = 0
