"""A small in-process sliding-window rate limiter: at most N requests per key in any window of W seconds."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable


class SlidingWindowLimiter:
    """Counts requests per key over the last ``window`` seconds (thread-safe; one per application)."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._hits: dict[Hashable, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: Hashable, limit: int) -> float:
        """Count one request for ``key`` and return 0, or, when ``limit`` requests already fell in the window,
        count nothing and return the seconds until one more is allowed."""
        with self._lock:
            now = self.clock()
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= limit:
                return hits[len(hits) - limit] + self.window - now
            hits.append(now)
            return 0.0
