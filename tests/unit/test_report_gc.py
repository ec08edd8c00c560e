"""The review's GC pause: the collector is off while any review holds its events, back on when
the last one ends (only if it was on before), and what was alive then is left out of its passes."""

from __future__ import annotations

import gc
import threading

from livecue.report._gc import gc_paused


def test_nested_and_concurrent_pauses_restore_the_collector() -> None:
    assert gc.isenabled()
    inner_started, outer_may_end = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other_review() -> None:
        with gc_paused():
            inner_started.set()
            outer_may_end.wait(10)
            seen.append(gc.isenabled())

    try:
        with gc_paused():
            with gc_paused():
                assert not gc.isenabled()
            assert not gc.isenabled(), "an inner pause ending does not end the outer one"
            t = threading.Thread(target=other_review)
            t.start()
            inner_started.wait(10)
            held = [[i] for i in range(100)]  # a review's events: tracked containers
        assert not gc.isenabled(), "a concurrent review still holds its events"
        outer_may_end.set()
        t.join(10)
        assert seen == [False]
        assert gc.isenabled(), "the last pause ending brings the collector back"
        tracked = {id(o) for o in gc.get_objects()}  # generations 0-2: not the frozen ones
        assert not any(id(h) in tracked for h in held), "what was alive is left out of later passes"
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()
