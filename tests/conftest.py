"""Shared fixtures."""

import gc
import os
import signal
import sys

import pytest

import ntk_rnn  # noqa: F401  (every test runs in float64, as the library does)


class _SignalsInFinalizer:
    """Sends SIGINT to its own process when collected: the handler's KeyboardInterrupt is raised inside
    __del__, where Python drops it (sys.unraisablehook), as with a real Ctrl-C that lands in a finalizer."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(1000))  # bytecodes for the pending handler to run on


@pytest.fixture
def lost_interrupt(monkeypatch):
    """A function that delivers SIGINT where its KeyboardInterrupt is lost; .dropped lists what Python dropped.

    Python's own SIGINT handler is reinstated for the test: a suite started as a shell's background job
    inherits SIGINT ignored, which the code under test rightly leaves ignored."""
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: dropped.append(info.exc_type))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def deliver() -> None:
        cycle = _SignalsInFinalizer()
        cycle.self = cycle  # only the collector frees it, so __del__ runs inside gc.collect()
        del cycle
        gc.collect()

    deliver.dropped = dropped
    yield deliver
    signal.signal(signal.SIGINT, previous)
