"""Seeds derived from a run's seed: the one formula, and the streams that use it.

Every random draw of the package that is not the model's initialisation comes from a seed derived
from ``(seed, counter)`` for a named stream: ``(seed * a + counter * b + c) mod (2**63 - 1)``,
with the stream's constants ``(a, b, c)``. Each stream keeps the constants it was introduced with,
so every stored result stays reproducible:

* ``epoch``: an epoch's shuffling and its global RNG (counter: the epoch), in
  :mod:`reproduce.training.loop`;
* ``torchvision-epoch``: the same for the torchvision ResNets of the prune study (notebook 07),
  which was trained with its own offset from the start;
* ``measurement``: a fresh measurement batch (counter: the draw), :func:`reproduce.data.measurement_samples`;
* ``device-augmentation``: the device generator of a pass's augmentation (counter 0; the seed is
  that of the pass's shuffling generator), :mod:`reproduce.data.device_data`;
* ``autotune-attempt``: the training seed (initialisation, shuffling) and measurement seed of
  attempt ``i >= 1`` of an auto-tune search (counter: the attempt), :mod:`reproduce.experiments.autotune`.
"""

from __future__ import annotations

import numbers
from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["STREAMS", "MAX_SEED", "derive_seed", "check_seeds"]

_MODULUS = 2**63 - 1

#: the largest seed a run takes: the data split draws with scikit-learn's ``random_state``, which
#: takes seeds below 2**32 (a larger one failed only when the data was loaded, in every job)
MAX_SEED = 2**32 - 1

#: stream -> (a, b, c) of ``(seed * a + counter * b + c) mod (2**63 - 1)``
STREAMS: Mapping[str, tuple[int, int, int]] = MappingProxyType({
    "epoch": (1_000_003, 7_919, 12_345),
    "torchvision-epoch": (1_000_003, 7_919, 4_242),
    "measurement": (1_000_003, 104_729, 7),
    "device-augmentation": (2_654_435_761, 0, 97),
    "autotune-attempt": (1_000_003, 15_485_863, 31),
})


def derive_seed(seed: int, counter: int, stream: str) -> int:
    """The seed of draw ``counter`` of ``stream`` for a run seeded ``seed`` (see the module docstring)."""
    try:
        a, b, c = STREAMS[stream]
    except KeyError:
        raise ValueError(f"unknown seed stream {stream!r}; valid choices are {', '.join(STREAMS)}") from None
    return (int(seed) * a + int(counter) * b + c) % _MODULUS


def check_seeds(seeds: Any) -> tuple[int, ...]:
    """``seeds`` as a tuple of distinct ints >= 0 (at least one seed); ValueError naming the bad
    value otherwise (the seeds of a study's independent runs)."""
    try:
        values = tuple(seeds)
    except TypeError:
        raise ValueError(f"seeds must be a non-empty sequence of distinct ints >= 0, got {seeds!r}") from None
    if not values:
        raise ValueError("seeds must name at least one seed, got none")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0]
    if bad:
        raise ValueError(f"every seed must be an int >= 0, got {bad[0]!r} in {values!r}")
    large = [v for v in values if v > MAX_SEED]
    if large:
        raise ValueError(f"every seed must be at most {MAX_SEED} (the data split takes seeds below 2**32), "
                         f"got {large[0]} in {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"seeds must be distinct, got {values!r}")
    return tuple(int(v) for v in values)
