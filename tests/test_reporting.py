"""Claims tables: three verdicts, written as the CSV the README and the figures read."""

import pandas as pd
import pytest

from reproduce.reporting import ROOT_ENV, VERDICTS, Claim, write_claims


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
    assert list(on_disk.columns) == ["claim", "paper", "measured", "verdict"]
    assert list(on_disk["verdict"]) == ["holds", "not testable"] == list(frame["verdict"])
    with pytest.raises(ValueError, match="at least one claim"):
        write_claims([], "smoke", "99_y")
