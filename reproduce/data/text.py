"""Text that ships offline, as a character-level language-modelling dataset.

The text is the **help topics of the Python documentation** that every CPython carries in its
standard library (``pydoc_data.topics``, the pages ``help("assert")`` shows): 79 topics, about
465,000 characters of English technical prose with code, under the Python Software Foundation's
documentation licence. Nothing is downloaded. The topics are joined in the order of their names,
separated by a blank line; the text's SHA-256 is part of the data's identity, so a Python whose
documentation differs is told apart (:attr:`TextBundle.identity`).

:func:`char_lm_data` cuts it into a training part (the first ``1 - test_fraction`` of the
characters) and a test part (the rest), each into non-overlapping windows of ``context + 1``
characters; a sample is ``x`` = the window's first ``context`` characters and ``y`` = the next
character at each position (both ``[context]`` int64 ids into :attr:`TextBundle.vocabulary`, the
sorted characters of the whole text).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch.utils.data import TensorDataset

__all__ = ["TextBundle", "python_topics_text", "char_lm_data"]


@dataclass
class TextBundle:
    """A character-level language-modelling dataset: ``train`` / ``train_eval`` / ``test`` of
    ``(x [context], y [context])`` id windows, ``num_classes`` = the vocabulary's size."""

    name: str
    train: TensorDataset
    train_eval: TensorDataset
    test: TensorDataset
    num_classes: int
    vocabulary: str
    context: int
    identity: dict = field(default_factory=dict)

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(self.vocabulary[int(i)] for i in ids.reshape(-1))


def python_topics_text() -> str:
    """The help topics of this Python's documentation, joined in the order of their names."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def _windows(ids: torch.Tensor, context: int) -> TensorDataset:
    n = (len(ids) - 1) // context
    if n < 1:
        raise ValueError(f"{len(ids)} characters hold no window of context {context} + 1")
    w = ids[: n * context + 1]
    x = w[:-1].reshape(n, context)
    y = w[1:].reshape(n, context)
    return TensorDataset(x.clone(), y.clone())


def char_lm_data(*, context: int, train_chars: int | None = None, test_fraction: float = 0.1) -> TextBundle:
    """The Python help topics (module docstring) as windows of ``context`` characters; the training
    part cut to its first ``train_chars`` characters when given (the test part stays whole)."""
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise ValueError(f"context must be an int >= 1, got {context!r}")
    if not 0 < float(test_fraction) < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if train_chars is not None and (isinstance(train_chars, bool) or not isinstance(train_chars, int)
                                    or train_chars <= context):
        raise ValueError(f"train_chars must be None or an int > context ({context}), got {train_chars!r}")
    text = python_topics_text()
    vocabulary = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocabulary)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.int64)
    cut = int(round(len(ids) * (1 - float(test_fraction))))
    train_ids = ids[:cut] if train_chars is None else ids[: min(cut, int(train_chars))]
    train = _windows(train_ids, context)
    identity = {"name": "python-topics", "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                "context": context, "train_chars": train_chars, "test_fraction": float(test_fraction)}
    return TextBundle("python-topics", train, train, _windows(ids[cut:], context), len(vocabulary), vocabulary,
                      context, identity)
