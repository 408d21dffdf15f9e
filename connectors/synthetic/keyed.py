"""Randomness for the generator, of two kinds.

- Entity attributes (a consumer's ID number, a merchant's category) are pure
  functions of (seed, stream, entity id), computed with a keyed 64-bit mix. The
  same consumer therefore looks the same in every table and every batch.
- Event values (a transaction's amount, a loan's term) come from a numpy
  Generator(PCG64) seeded by (seed, table, block index), so any block can be
  regenerated on its own and memory stays bounded.
"""

from __future__ import annotations

import zlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 2.0**-53


def _stream_id(stream: str) -> int:
    return zlib.crc32(stream.encode())


def stream_key(seed: int, stream: str) -> np.uint64:
    """A 64-bit key for one named stream of one seed."""
    return np.random.SeedSequence([seed, _stream_id(stream)]).generate_state(1, np.uint64)[0]


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijection on uint64 whose outputs look independent."""
    z = values + _GOLDEN
    z ^= z >> np.uint64(30)
    z *= _MIX_1
    z ^= z >> np.uint64(27)
    z *= _MIX_2
    z ^= z >> np.uint64(31)
    return z


def hash_bits(seed: int, stream: str, ids: np.ndarray) -> np.ndarray:
    """64 random-looking bits per id, fixed by (seed, stream, id)."""
    return mix64(ids.astype(np.uint64) ^ stream_key(seed, stream))


def hash_lanes(seed: int, stream: str, ids: np.ndarray) -> np.ndarray:
    """64 keyed bits per id as four independent 16-bit lanes: an (n, 4) uint16 array."""
    return hash_bits(seed, stream, ids).view(np.uint16).reshape(len(ids), 4)


def scale_lane(lane: np.ndarray, size: int) -> np.ndarray:
    """A 16-bit lane mapped evenly onto [0, size), by multiply-shift."""
    return (lane.astype(np.int64) * size) >> 16


def hash_uniform(seed: int, stream: str, ids: np.ndarray) -> np.ndarray:
    """A uniform float in [0, 1) per id, fixed by (seed, stream, id)."""
    return (hash_bits(seed, stream, ids) >> np.uint64(11)).astype(np.float64) * _TO_UNIT


def hash_normal(seed: int, stream: str, ids: np.ndarray) -> np.ndarray:
    """A standard normal value per id (Box-Muller on two keyed uniforms)."""
    radius = np.sqrt(-2.0 * np.log1p(-hash_uniform(seed, stream + ".r", ids)))
    return radius * np.cos(2.0 * np.pi * hash_uniform(seed, stream + ".a", ids))


def block_rng(seed: int, table: str, block_index: int) -> np.random.Generator:
    """The generator for one block of one table: independent of every other block."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _stream_id(table), block_index])))


class WeightedChoice:
    """Draws indices in proportion to weights, by a precomputed inverse-CDF table (one gather per draw).

    `weights` is one row of weights, or one row per condition (e.g. per city tier);
    `pick(uniform, condition)` then uses the row of each draw's condition. The
    table has 2**16 slots, so shares are exact to about 1/65,536.
    """

    SLOTS = 1 << 16

    def __init__(self, weights):
        rows = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        cumulative = np.cumsum(rows, axis=1) / rows.sum(axis=1, keepdims=True)
        slot_middles = (np.arange(self.SLOTS) + 0.5) / self.SLOTS
        tables = [np.searchsorted(row, slot_middles, side="right") for row in cumulative]
        self.table = np.minimum(np.concatenate(tables), rows.shape[1] - 1).astype(np.int64)

    def pick(self, uniform: np.ndarray, condition: np.ndarray | None = None) -> np.ndarray:
        return self.pick_slots((uniform * self.SLOTS).astype(np.int64), condition)

    def pick_slots(self, slots: np.ndarray, condition: np.ndarray | None = None) -> np.ndarray:
        """Like `pick`, from random integers in [0, SLOTS) (e.g. 16 random bits) instead of uniforms."""
        if condition is not None:
            slots = slots + condition * self.SLOTS
        return np.take(self.table, slots)


class PairPermutation:
    """A keyed bijection of [0, a*b) onto the pairs Z_a x Z_b: a four-round Feistel network with modular addition.

    Used to give every consumer id a distinct (district and sequence, birth day)
    combination, so generated ID numbers never collide, while neighbouring ids
    still get unrelated attributes.
    """

    ROUNDS = 4

    def __init__(self, seed: int, stream: str, a: int, b: int):
        if not 0 < a < 2**32 or not 0 < b < 2**32:
            raise ValueError("both factors must be below 2**32")
        self.a, self.b = np.uint64(a), np.uint64(b)
        self.size = a * b
        self.keys = [stream_key(seed, f"{stream}.{round_index}") for round_index in range(self.ROUNDS)]

    def __call__(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        right, left = np.divmod(values.astype(np.uint64), self.a)
        for round_index, key in enumerate(self.keys):
            if round_index % 2 == 0:
                left = _add_mod(left, _reduce(mix64(right ^ key), self.a), self.a)
            else:
                right = _add_mod(right, _reduce(mix64(left ^ key), self.b), self.b)
        return left.astype(np.int64), right.astype(np.int64)


def _reduce(bits: np.ndarray, modulus: np.uint64) -> np.ndarray:
    """Map 64 random bits onto [0, modulus) by multiply-shift on the top 32 bits: no division (modulus < 2**32)."""
    return ((bits >> np.uint64(32)) * modulus) >> np.uint64(32)


def _add_mod(a: np.ndarray, b: np.ndarray, modulus: np.uint64) -> np.ndarray:
    """(a + b) mod modulus for a, b already in [0, modulus)."""
    total = a + b
    total -= modulus * (total >= modulus)
    return total
