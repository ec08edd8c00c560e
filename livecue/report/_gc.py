"""The cyclic garbage collector paused while a review holds a show's millions of events.

Each generation-2 pass re-scans every object still alive, and a review keeps all of the room's
decoded events alive until its figures are done: with the collector on, reading a 1.3M-event
recording spent a third of its time in it. Reference counting still frees everything a review
drops; the events, items and rows it builds hold no cycles. When the last pause ends, what is
alive then is frozen (``gc.freeze``: left out of later passes, still freed by reference
counting) before the collector comes back: otherwise its first pass scans every event held
(1.5 s of 20 s for a 1.3M-event recording). A process that lives on after a review (the
reporter) calls ``gc.unfreeze()`` once it is done, so that nothing it keeps stays out of the
collector's reach for good. Nested and concurrent uses (the reporter builds reviews in threads)
share one count: the collector comes back when the last one ends, and
only if it was on before the first.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.freeze()
                gc.enable()
