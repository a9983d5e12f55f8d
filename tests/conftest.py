"""Fixtures shared by the test modules: a results root of their own, toy data, weight equality; the
``integration`` marker (heavy tests that run only under ``-m integration``: ``make test-integration``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

from reproduce.config.scales import ROOT_ENV


def pytest_collection_modifyitems(config, items):
    """Tests marked ``integration`` (whole notebooks executed, a cold compiler, fresh virtual
    environments) run only when the marker expression asks for them; elsewhere they show as skipped."""
    if "integration" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="integration test: runs under `make test-integration` (pytest -m integration)")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def results_root(tmp_path, monkeypatch):
    """A fresh repository root (``$REPRODUCE_ROOT``): results and figures go under ``tmp_path``."""
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    return tmp_path


def _toy_data(n: int = 96, seed: int = 0, *, size: int = 8, name: str = "toy") -> SimpleNamespace:
    """Three classes of ``n`` noisy 1 x size x size images whose mean is the class (learnable in a
    few epochs), the first 30 as the test set; a ``DataBundle``-like namespace."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 1, size, size, generator=g) + y[:, None, None, None].float()
    ds = TensorDataset(x, y)
    return SimpleNamespace(name=name, train=ds, train_eval=ds, test=TensorDataset(x[:30], y[:30]), num_classes=3)


@pytest.fixture
def toy_data():
    """The toy data maker: ``toy_data(n=96, seed=0, *, size=8, name="toy")``."""
    return _toy_data


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def same_weights():
    """``same_weights(a, b)``: the two modules hold the same tensors under the same names, bit for bit."""
    return _same_weights
