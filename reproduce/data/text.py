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

:func:`token_lm_data` cuts the same text the same way after a given tokenizer has encoded it (a
pretrained model's own tokenizer, e.g. GPT-2's byte-level BPE at the ``paper`` preset of notebook
08): the split falls at the token nearest ``1 - test_fraction`` of the tokens, and the tokenizer's
name is part of the data's identity.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch.utils.data import TensorDataset

__all__ = ["TextBundle", "python_topics_text", "char_lm_data", "token_lm_data"]


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
        """The characters of ``ids`` (a character-level bundle; a tokenized one has no vocabulary string)."""
        if not self.vocabulary:
            raise ValueError(f"{self.name} was tokenized by {self.identity.get('tokenizer')!r}: decode with it")
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


def _check_cut(context: int, test_fraction: float, limit: int | None, what: str) -> None:
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise ValueError(f"context must be an int >= 1, got {context!r}")
    if not 0 < float(test_fraction) < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= context):
        raise ValueError(f"{what} must be None or an int > context ({context}), got {limit!r}")


def _split(ids: torch.Tensor, context: int, limit: int | None, test_fraction: float
           ) -> tuple[TensorDataset, TensorDataset]:
    cut = int(round(len(ids) * (1 - float(test_fraction))))
    train_ids = ids[:cut] if limit is None else ids[: min(cut, int(limit))]
    return _windows(train_ids, context), _windows(ids[cut:], context)


def char_lm_data(*, context: int, train_chars: int | None = None, test_fraction: float = 0.1) -> TextBundle:
    """The Python help topics (module docstring) as windows of ``context`` characters; the training
    part cut to its first ``train_chars`` characters when given (the test part stays whole)."""
    _check_cut(context, test_fraction, train_chars, "train_chars")
    text = python_topics_text()
    vocabulary = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocabulary)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.int64)
    train, test = _split(ids, context, train_chars, test_fraction)
    identity = {"name": "python-topics", "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                "context": context, "train_chars": train_chars, "test_fraction": float(test_fraction)}
    return TextBundle("python-topics", train, train, test, len(vocabulary), vocabulary, context, identity)


def token_lm_data(encode: Callable[[str], Sequence[int]], *, vocabulary_size: int, tokenizer: str, context: int,
                  train_tokens: int | None = None, test_fraction: float = 0.1) -> TextBundle:
    """The Python help topics encoded by ``encode`` (text -> token ids below ``vocabulary_size``;
    ``tokenizer`` names it in the identity), as windows of ``context`` tokens, cut as
    :func:`char_lm_data` cuts characters (``train_tokens`` limits the training part)."""
    _check_cut(context, test_fraction, train_tokens, "train_tokens")
    if isinstance(vocabulary_size, bool) or not isinstance(vocabulary_size, int) or vocabulary_size < 1:
        raise ValueError(f"vocabulary_size must be an int >= 1, got {vocabulary_size!r}")
    text = python_topics_text()
    ids = torch.as_tensor(list(encode(text)), dtype=torch.int64)
    bad = ids[(ids < 0) | (ids >= vocabulary_size)]
    if len(bad):
        raise ValueError(f"{tokenizer!r} gave token ids outside 0..{vocabulary_size - 1}, "
                         f"e.g. {int(bad[0])}")
    train, test = _split(ids, context, train_tokens, test_fraction)
    identity = {"name": "python-topics", "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                "tokenizer": str(tokenizer), "context": context, "train_tokens": train_tokens,
                "test_fraction": float(test_fraction)}
    return TextBundle("python-topics", train, train, test, int(vocabulary_size), "", context, identity)
