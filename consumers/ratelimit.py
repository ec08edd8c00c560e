"""Rate limits (pure: the caller passes the time): a token bucket per connection, and a throttle for log lines."""

from __future__ import annotations

__all__ = ["TokenBucket", "LogThrottle"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` stored; each message takes one.

    Starts full, so a screen may send a burst (auth, resume, a few acks) at once.
    """

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def allow(self, now: float) -> bool:
        """Take a token if there is one. A clock that goes backwards refills nothing."""
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @property
    def tokens(self) -> float:
        return self._tokens


class LogThrottle:
    """At most ``burst`` log lines per key per ``interval_s``; the next line allowed after a
    quiet spell says how many were suppressed. A flood of refused connections then costs a
    few lines a key, not two per attempt (pure: the caller passes the time)."""

    __slots__ = ("interval_s", "burst", "_window", "_suppressed")

    def __init__(self, interval_s: float = 10.0, burst: int = 5) -> None:
        self.interval_s = interval_s
        self.burst = burst
        self._window: dict[str, tuple[float, int]] = {}  # key -> (window start, lines in it)
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str, now: float) -> int | None:
        """None: drop this line. Else log it, with the returned count of lines suppressed
        since the last one logged for ``key``."""
        start, n = self._window.get(key, (now, 0))
        if now - start >= self.interval_s or now < start:
            start, n = now, 0
        if n >= self.burst:
            self._window[key] = (start, n)
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._window[key] = (start, n + 1)
        if len(self._window) > 1000:  # keys are bounded by the caller; this is a backstop
            self._window.clear()
        return self._suppressed.pop(key, 0)
