"""Environment variables set for the duration of a block, and restored after it."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Mapping

__all__ = ["environment", "positive_int_variable"]


@contextlib.contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set the variables ``values`` (None: unset) for the block; afterwards each has the value it
    had before (or is unset again), even when the block raises."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def positive_int_variable(name: str, what: str) -> int | None:
    """The environment variable ``name`` as an int >= 1, None when unset or empty; ValueError naming
    the variable, its value and what it should be (``what``: "a thread count", ...) otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={raw!r} is not {what}; valid: a positive integer (or unset)")
    return value

