"""Shared fixtures."""

import gc
import math
import operator
import os
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_rnn  # noqa: F401  (every test runs in float64, as the library does)

# ------------------------------------------------------------------------ one normal-sampler program per size class

_NORMAL = jax.random.normal
_LARGEST = 2**20  # bigger draws take the plain path: their compilation is small next to their run


def _threefry_key(key) -> bool:
    """key is one concrete threefry key (typed, or the raw uint32[2] of the default implementation)."""
    if not isinstance(key, jax.Array) or isinstance(key, jax.core.Tracer):
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.shape == () and str(jax.random.key_impl(key)) == "threefry2x32"
    return key.dtype == jnp.uint32 and key.shape == (2,) and jax.config.jax_default_prng_impl == "threefry2x32"


def _bucketed_normal(key, shape=(), dtype=None, *, out_sharding=None):
    """jax.random.normal, bit for bit, compiled once per power-of-two size instead of once per shape.

    With partitionable threefry (JAX's default) element i of a draw depends only on the key and its flat index
    i, so normal(key, shape) is the first prod(shape) values of normal(key, (size,)) for any size >= prod(shape),
    reshaped. Eager draws of a new shape otherwise compile a program each (about 0.25 s; hundreds of shapes
    in the suite). Anything else (tracers, batched or other keys, shardings, dtypes other than float32 and float64)
    takes the plain path; pytest_configure checks the identity before putting this in place."""
    try:
        dims = tuple(operator.index(d) for d in shape)
    except TypeError:
        dims = None
    try:
        real = dtype is None or np.dtype(dtype) in (np.float32, np.float64)
    except TypeError:
        real = False
    if (dims is None or out_sharding is not None or not real or not jax.config.jax_threefry_partitionable
            or not 0 < math.prod(dims) <= _LARGEST or not _threefry_key(key)):  # fmt: skip
        return _NORMAL(key, shape, dtype, out_sharding=out_sharding)
    n = math.prod(dims)
    flat = np.asarray(_NORMAL(key, (max(64, 1 << (n - 1).bit_length()),), dtype))
    return jnp.asarray(flat[:n].reshape(dims))


def _same_draws() -> bool:
    cases = [(jax.random.key(7), (3, 5), None), (jax.random.PRNGKey(5), (2, 1, 9), jnp.float32),
             (jax.random.fold_in(jax.random.key(1), 3), (70,), jnp.float64)]  # fmt: skip
    for key, shape, dtype in cases:
        a, b = _NORMAL(key, shape, dtype), _bucketed_normal(key, shape, dtype)
        if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(np.asarray(a), np.asarray(b)):
            return False
    return True


def pytest_configure(config):
    if _same_draws():
        jax.random.normal = _bucketed_normal


def pytest_unconfigure(config):
    jax.random.normal = _NORMAL


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
