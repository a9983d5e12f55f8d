"""Progress bars: one helper, so every bar of the package behaves the same.

``tqdm.auto`` (a widget in Jupyter, text elsewhere) unless ``$REPRODUCE_PROGRESS`` says otherwise:
``text`` forces plain text bars -- the notebook runner sets it, so executed copies hold the bars'
final text instead of widgets that show "0%" (or "model not found") once the kernel is gone --
and ``off`` hides them. ``TQDM_DISABLE=1`` (tests, CI) hides them as well.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

__all__ = ["PROGRESS_ENV", "PROGRESS_MODES", "progress_bar"]

PROGRESS_ENV = "REPRODUCE_PROGRESS"
PROGRESS_MODES = ("auto", "text", "off")


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any):
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``); hidden when not ``enabled``."""
    mode = os.environ.get(PROGRESS_ENV, "").strip() or "auto"
    if mode not in PROGRESS_MODES:
        raise ValueError(f"${PROGRESS_ENV}={mode!r}; valid values are {', '.join(PROGRESS_MODES)}")
    if mode == "text":
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    if not enabled or mode == "off":
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
