"""Claims tables: three verdicts, written as the CSV the README and the figures read."""

import pandas as pd
import pytest

from reproduce.config.scales import ROOT_ENV
from reproduce.experiments.claims import VERDICTS, Claim, write_claims


def test_a_claim_has_one_of_three_verdicts():
    assert Claim("c", "p", "m", True).verdict == "holds"
    assert Claim("c", "p", "m", False).verdict == "does not hold"
    assert Claim("c", "p", "m", None).verdict == "not testable"
    assert Claim("c", "p", "m", 1).holds is True  # numpy/int truth values become bools
    assert VERDICTS == ("holds", "does not hold", "not testable")


def test_write_claims_writes_the_verdict_column(tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    frame = write_claims([Claim("a", "p", "m", True), Claim("b", "p", "m", None)], "smoke", "99_x")
    on_disk = pd.read_csv(tmp_path / "figures" / "smoke" / "99_x-claims.csv")
    assert list(on_disk.columns) == ["claim", "paper", "measured", "verdict", "seeds"]
    assert list(on_disk["verdict"]) == ["holds", "not testable"] == list(frame["verdict"])
    with pytest.raises(ValueError, match="at least one claim"):
        write_claims([], "smoke", "99_y")


def test_over_seeds_holds_only_in_every_seed_and_the_pooled_form():
    from reproduce.experiments.claims import over_seeds

    assert over_seeds([True, True, True]) is True
    assert over_seeds([True, True, True], pooled=True) is True
    assert over_seeds([True, True, True], pooled=False) is False  # every seed, but not the pooled form
    assert over_seeds([True, False, True]) is False
    assert over_seeds([True, None, False]) is False  # a failing seed decides
    assert over_seeds([True, None, True]) is None  # one seed could not apply the rule, none failed
    assert over_seeds([None, None]) is None
    with pytest.raises(ValueError, match="at least one seed"):
        over_seeds([])


def test_seed_texts_show_every_seed():
    from reproduce.experiments.claims import Claim, seed_outcomes, seed_values

    assert seed_outcomes([True, False, None]) == "holds in 1 of 3 seeds (0 yes, 1 no, 2 n/a)"
    assert seed_outcomes([True, True], seeds=[4, 7]) == "holds in 2 of 2 seeds (4 yes, 7 yes)"
    # mean of 0.5, 0.7, 0.6 = 0.6; range 0.5..0.7
    assert seed_values([0.5, 0.7, 0.6], "{:.2f}") == "mean 0.60, range 0.50..0.70 (seeds 0: 0.50, 1: 0.70, 2: 0.60)"
    assert seed_values([0.25]) == "0.250"
    assert seed_values([1.0, float("nan")], "{:.1f}").startswith("mean 1.0, range 1.0..1.0")
    with pytest.raises(ValueError, match="seeds must be an int >= 1"):
        Claim("c", "p", "m", True, seeds=0)
