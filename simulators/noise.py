"""Stateless, vectorised pseudo-random numbers: a value is a function of (seed, position) only.

A simulated signal must be computable for any device at any timestamp without replaying what
came before, so the randomness is a hash (splitmix64) of the device's seed and a counter, not
a generator's state. Everything works on numpy uint64 arrays; integer overflow wraps, which is
what the hash wants.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN_INT = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TO_UNIT = 2.0**-53


def device_seed(seed: int, device_id: str) -> int:
    """The seed of one device: the run's seed mixed with the device id (stable across runs)."""
    digest = hashlib.blake2b(f"{seed}:{device_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def id_unit(device_id: str, salt: str) -> float:
    """A number in [0, 1) from the device id alone: for what the registry also knows (tank depth)."""
    digest = hashlib.blake2b(f"{salt}:{device_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 11) * _TO_UNIT


def _mix(x: U64) -> U64:
    x = x ^ (x >> _S30)
    x = x * _M1
    x = x ^ (x >> _S27)
    x = x * _M2
    return x ^ (x >> _S31)


def uniform(seeds: U64, k: npt.ArrayLike, salt: int) -> F64:
    """Uniform numbers in [0, 1), one per (seed, k); k broadcasts against seeds."""
    kk = np.atleast_1d(np.asarray(k)).astype(np.int64).astype(np.uint64)
    salted = kk + np.uint64((salt * _GOLDEN_INT) & _MASK)
    x = _mix(np.atleast_1d(seeds) ^ _mix(salted))
    return (x >> _S11).astype(np.float64) * _TO_UNIT


def white(seeds: U64, ts_ms: I64, salt: int) -> F64:
    """Sensor noise in [-1, 1): independent for every millisecond timestamp."""
    return 2.0 * uniform(seeds, ts_ms, salt) - 1.0


def smooth(seeds: U64, t: F64, period_s: float | F64, salt: int) -> F64:
    """Smooth noise in [-1, 1]: random knots every period_s seconds, smoothstep in between.

    Its slope is at most 1.5 * 2 / period_s per second, which keeps rate-of-change rules quiet.
    """
    x = np.asarray(t, np.float64) / period_s
    k = np.floor(x)
    f = x - k
    a = uniform(seeds, k, salt)
    b = uniform(seeds, k + 1, salt)
    s = f * f * (3.0 - 2.0 * f)
    return 2.0 * (a + (b - a) * s) - 1.0


def between(seeds: U64, index: int, low: float, high: float) -> F64:
    """A per-device parameter in [low, high): parameter number `index` of each seed."""
    return low + (high - low) * uniform(seeds, np.zeros(1, np.int64), 0x5EED + index)
