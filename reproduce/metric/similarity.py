"""The published label-free layer scores, from a block's input and output on the same samples.

* **Block Influence** (ShortGPT, Men et al. 2024, arXiv 2403.03853): ``BI = 1 - E[cos(x_in, x_out)]``,
  the expectation over samples (token positions for a language model); a block whose output points
  where its input did scores 0 and is the first ShortGPT removes.
* **Angular distance** (Gromov et al. 2024, arXiv 2403.17887, for a block of ``n = 1`` layers):
  ``E[arccos(cos(x_in, x_out)) / pi]``, in [0, 1]. Gromov et al. take it at the last token of each
  sequence; here it is averaged over the same samples as Block Influence and the bundle metric, so
  the scores of one table rank one set of samples.

Neither looks at the labels; the bundle entropy and the distance to bundling
(:mod:`reproduce.metric.bundles`) do. The cosine is taken in float64 over each sample's flattened
vector; the cosine with a zero vector counts as 0 (torch's ``cosine_similarity`` clamps the norms).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["cosine_per_sample", "block_influence", "angular_distance"]


def cosine_per_sample(x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each sample's input and output, float64 ``[N]``; ``x_in`` and ``x_out``
    are ``[N, ...]`` of one shape (flattened per sample)."""
    if not isinstance(x_in, torch.Tensor) or not isinstance(x_out, torch.Tensor):
        raise ValueError(f"x_in and x_out must be tensors, got {type(x_in).__name__} and {type(x_out).__name__}")
    if x_in.shape != x_out.shape or x_in.dim() < 1 or x_in.shape[0] == 0:
        raise ValueError(f"x_in and x_out must be [N, ...] of one shape with N >= 1, got {tuple(x_in.shape)} and "
                         f"{tuple(x_out.shape)}")
    n = x_in.shape[0]
    a = x_in.detach().reshape(n, -1).to(torch.float64)
    b = x_out.detach().reshape(n, -1).to(torch.float64)
    return F.cosine_similarity(a, b, dim=1, eps=1e-300)


def block_influence(x_in: torch.Tensor, x_out: torch.Tensor) -> float:
    """ShortGPT's Block Influence ``1 - mean cos(x_in, x_out)`` (module docstring)."""
    return float(1.0 - cosine_per_sample(x_in, x_out).mean())


def angular_distance(x_in: torch.Tensor, x_out: torch.Tensor) -> float:
    """Gromov et al.'s angular distance ``mean arccos(cos(x_in, x_out)) / pi`` (module docstring)."""
    cos = cosine_per_sample(x_in, x_out).clamp(-1.0, 1.0)
    return float(torch.arccos(cos).mean() / math.pi)
