"""Behaviour knobs and the key ring (pure, thread-safe objects)."""

from __future__ import annotations

import threading

import pytest

from chatprovider_tools.devserver import Behaviour, KeyRing


def test_unknown_knob_is_an_error_not_a_silent_no_op():
    behaviour = Behaviour()
    with pytest.raises(AttributeError):
        behaviour.stauts = 503  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        behaviour.update(stauts=503)


def test_update_reset_and_snapshot_are_independent_copies():
    behaviour = Behaviour()
    behaviour.update(status=503, retry_after=2, models=["a", "b"], fault_paths=["/v1/models"])
    snap = behaviour.snapshot()
    behaviour.reset()
    assert (snap.status, snap.retry_after, snap.models) == (503, 2, ("a", "b"))
    assert snap.fault_paths == frozenset({"/v1/models"})
    assert behaviour.status is None and behaviour.models is None
    assert behaviour.stream_frames == 8


def test_fail_times_fails_the_next_requests_then_recovers():
    behaviour = Behaviour(status=500, fail_times=2)
    assert [behaviour.take("/v1/models").status for _ in range(3)] == [500, 500, None]
    assert behaviour.status is None and behaviour.fail_times is None


def test_fail_times_counts_only_requests_on_fault_paths():
    behaviour = Behaviour(status=503, fail_times=1, fault_paths=frozenset({"/v1/models"}))
    behaviour.take("/v1/chat/completions")
    assert behaviour.fail_times == 1
    assert behaviour.take("/v1/models").status == 503
    assert behaviour.status is None


def test_concurrent_updates_never_give_a_torn_snapshot():
    behaviour = Behaviour()
    stop = threading.Event()

    def writer():
        flip = False
        while not stop.is_set():
            flip = not flip
            behaviour.update(status=503 if flip else 429, retry_after=1 if flip else 2)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(2000):
            snap = behaviour.snapshot()
            assert (snap.status, snap.retry_after) in {(None, None), (503, 1), (429, 2)}
    finally:
        stop.set()
        thread.join()


def test_key_ring_allows_bearer_tokens_of_current_keys_only():
    ring = KeyRing(["a"])
    assert ring.enabled and ring.allows("Bearer a")
    assert not ring.allows("Bearer b") and not ring.allows(None) and not ring.allows("a")
    ring.set(["b"])
    assert ring.keys == frozenset({"b"}) and ring.allows("Bearer b") and not ring.allows("Bearer a")
    ring.set([])
    assert not ring.enabled and ring.allows(None)
    with pytest.raises(ValueError):
        ring.set([""])
