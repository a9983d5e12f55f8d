"""Claims tables: one :class:`Claim` per row, the verdict rule over seeds, the table's file.

* :func:`write_claims` -- ``figures/<scale>/<stem>-claims.csv`` with columns
  ``claim,paper,measured,verdict,seeds`` (a verdict is one of :data:`VERDICTS`; ``seeds`` is the
  number of independent seeds behind it).
* :func:`over_seeds` / :func:`seed_values` / :func:`seed_outcomes` -- the verdict rule over seeds
  and the per-seed text of a ``measured`` cell (``docs/method.md#seeds``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

from reproduce.config.scales import Scale
from reproduce.files.paths import figures_dir
from reproduce.files.storage import atomic_write_text

__all__ = ["VERDICTS", "Claim", "write_claims", "over_seeds", "seed_outcomes", "seed_values"]


#: the verdict of a claim: its rule held, did not hold, or could not be applied at this scale
VERDICTS = ("holds", "does not hold", "not testable")


@dataclass(frozen=True)
class Claim:
    """One row of a notebook's claims table, decided by a rule stated before the run.

    ``holds`` is True or False when the rule could be applied, None when it could not (e.g. no
    conflicting block to remove): the verdict is then "not testable".
    """

    claim: str
    paper: str
    measured: str
    holds: bool | None
    #: how many independent seeds (training runs of the same configuration) the verdict rests on
    seeds: int = 1

    def __post_init__(self) -> None:
        if self.holds is not None:
            object.__setattr__(self, "holds", bool(self.holds))
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds must be an int >= 1, got {self.seeds!r}")

    @property
    def verdict(self) -> str:
        """One of :data:`VERDICTS`."""
        return VERDICTS[2] if self.holds is None else VERDICTS[0] if self.holds else VERDICTS[1]


def write_claims(claims: Iterable[Claim], scale: Scale | str, stem: str) -> pd.DataFrame:
    """Write ``figures/<scale>/<stem>-claims.csv`` (columns claim,paper,measured,verdict,seeds); return it."""
    rows = [{"claim": c.claim, "paper": c.paper, "measured": c.measured, "verdict": c.verdict, "seeds": c.seeds}
            for c in claims]
    frame = pd.DataFrame(rows, columns=["claim", "paper", "measured", "verdict", "seeds"])
    if frame.empty:
        raise ValueError("a claims table needs at least one claim")
    atomic_write_text(figures_dir(scale) / f"{stem}-claims.csv", frame.to_csv(index=False))
    return frame


def over_seeds(per_seed: Sequence[bool | None], pooled: bool | None = None) -> bool | None:
    """The verdict rule over seeds (``docs/method.md#seeds``), fixed before any number is seen.

    A claim *holds* when its per-seed rule holds in every seed and, where the claim also has a
    pooled form (the rule applied to the seed mean, or to all seeds' points together), in that
    too. It *does not hold* when the rule fails in any seed or in the pooled form. Otherwise (some
    seed could not apply the rule and none failed) it is *not testable* (None).
    """
    values = [None if v is None else bool(v) for v in per_seed]
    if not values:
        raise ValueError("over_seeds needs the outcome of at least one seed")
    if any(v is False for v in values) or pooled is False:
        return False
    if all(v is True for v in values):  # and the pooled form (if any) held
        return True
    return None


def seed_outcomes(per_seed: Sequence[bool | None], seeds: Sequence[int] | None = None) -> str:
    """Text of the per-seed outcomes, e.g. ``"holds in 2 of 3 seeds (0 yes, 1 no, 2 yes)"``."""
    values = list(per_seed)
    seeds = list(range(len(values))) if seeds is None else list(seeds)
    if len(seeds) != len(values):
        raise ValueError(f"{len(values)} outcomes but {len(seeds)} seeds")
    word = {True: "yes", False: "no", None: "n/a"}
    held = sum(v is True for v in values)
    parts = ", ".join(f"{s} {word[None if v is None else bool(v)]}" for s, v in zip(seeds, values))
    return f"holds in {held} of {len(values)} seeds ({parts})"


def seed_values(values: Sequence[float], fmt: str = "{:.3f}", seeds: Sequence[int] | None = None) -> str:
    """Text of a per-seed number: ``"mean 0.833, range 0.812..0.845 (seeds 0: 0.812, 1: 0.845, 2: 0.842)"``;
    NaN values (e.g. a diverged seed) are shown and left out of the mean and range."""
    import math

    values = [float(v) for v in values]
    seeds = list(range(len(values))) if seeds is None else list(seeds)
    if not values or len(seeds) != len(values):
        raise ValueError(f"{len(values)} values but {len(seeds)} seeds (need at least one)")
    finite = [v for v in values if math.isfinite(v)]
    each = ", ".join(f"{s}: {fmt.format(v)}" for s, v in zip(seeds, values))
    if len(values) == 1:
        return fmt.format(values[0])
    if not finite:
        return f"no finite value (seeds {each})"
    mean = sum(finite) / len(finite)
    return f"mean {fmt.format(mean)}, range {fmt.format(min(finite))}..{fmt.format(max(finite))} (seeds {each})"
