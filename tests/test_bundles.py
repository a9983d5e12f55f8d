"""Tests of the bundle metric against hand-computed values and planted structure."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import reproduce.metric.bundles as B
from reproduce.metric.bundles import (
    BundleCallback,
    bundle_stats,
    bundles_frame,
    default_hook_taps,
    measure_last_layer,
    measure_model,
    weight_amplitude,
)
from reproduce.models.nets import ModelConfig, build_model

KW = dict(lr=1e-3, batch_size=64, weight_amplitude=1.0)


def stats(a, y, num_classes=3, **over):
    kw = {**KW, **over}
    return bundle_stats(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(y), num_classes=num_classes, **kw)


def distinct_rows(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """Rows far apart (integers times 10): distinct after scaling, by a wide margin."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randperm(n * d, generator=g).reshape(n, d) * 10).float()


def label_entropy(labels) -> float:
    counts = np.bincount(np.asarray(labels))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def same_partition(ids_a: torch.Tensor, ids_b: torch.Tensor) -> bool:
    a, b = ids_a.numpy(), ids_b.numpy()
    return bool(((a[:, None] == a[None, :]) == (b[:, None] == b[None, :])).all())


def is_first_appearance_numbered(ids: torch.Tensor) -> bool:
    seen: list[int] = []
    for v in ids.tolist():
        if v not in seen:
            if v != len(seen):
                return False
            seen.append(v)
    return True


# --------------------------------------------------------------------------- bundle_stats


def test_two_identical_rows_with_different_labels():
    n = 10
    a = distinct_rows(n, 5)
    a[7] = a[3]
    y = torch.arange(n) % 3
    y[3], y[7] = 0, 1
    st = stats(a, y)
    assert st.num_bundles == n - 1
    assert st.entropy == pytest.approx(2 * math.log(2) / n, rel=1e-12)
    assert st.max_accuracy == pytest.approx((n - 1) / n)
    assert st.conflicting and st.num_conflicting_bundles == 1
    assert st.bundle_ids[3] == st.bundle_ids[7]
    assert st.bundle_ids.tolist() == [0, 1, 2, 3, 4, 5, 6, 3, 7, 8]
    assert sorted(st.bundle_sizes.tolist()) == [1] * (n - 2) + [2]


def test_identical_rows_with_the_same_label_are_not_conflicting():
    a = distinct_rows(6, 4)
    a[5] = a[0]
    st = stats(a, [2, 0, 1, 0, 1, 2])
    assert st.num_bundles == 5
    assert st.entropy == 0.0 and not st.conflicting and st.num_conflicting_bundles == 0
    assert st.max_accuracy == 1.0


def test_all_rows_distinct():
    n = 12
    st = stats(distinct_rows(n, 7), torch.arange(n) % 3)
    assert st.num_bundles == n
    assert st.entropy == 0.0 and not st.conflicting
    assert st.max_accuracy == 1.0
    assert st.bundle_ids.tolist() == list(range(n))
    assert st.bundle_sizes.tolist() == [1] * n


def test_one_bundle_holding_everything():
    y = [0, 0, 0, 1, 1, 2]
    a = torch.full((6, 3, 2), 0.25)
    st = stats(a, y)
    assert st.num_bundles == 1
    assert st.bundle_ids.tolist() == [0] * 6
    assert st.max_accuracy == pytest.approx(3 / 6)
    hand = -(0.5 * math.log(0.5) + (1 / 3) * math.log(1 / 3) + (1 / 6) * math.log(1 / 6))
    assert st.entropy == pytest.approx(hand, rel=1e-12)
    assert st.num_conflicting_bundles == 1


def test_one_dim_activations_are_one_value_per_sample():
    st = stats(torch.tensor([1.0, 2.0, 1.0]), [0, 1, 1])
    assert st.num_bundles == 2 and st.bundle_ids.tolist() == [0, 1, 0]


def test_resolution_half_ulp_of_w_max():
    # w_max = 1, lr = 1e-3, bs = 64: t = 1 - a * lr / bs. Above 1.0 the float32 spacing is 2^-23,
    # so a = -d with d * lr / bs = 0.3 ulp rounds back to 1.0 (merges with a = 0) and 3 ulp does not.
    ulp = 2.0**-23
    scale = 1e-3 / 64
    d_small, d_big = 0.3 * ulp / scale, 3 * ulp / scale
    a = np.zeros((4, 5), dtype=np.float32)
    a[1, 2] = -d_small
    a[2, 2] = -d_big
    a[3, 4] = -d_small
    # the construction, checked by hand in numpy float32 in the released order
    t = np.float32(1.0) - (a * np.float32(1e-3)) * np.float32(1 / 64)
    assert t.dtype == np.float32
    assert (t[1] == t[0]).all() and (t[3] == t[0]).all()
    assert t[2, 2] != t[0, 2] and t[2, 2] == np.float32(1.0 + 3 * ulp)
    st = stats(torch.from_numpy(a), [0, 1, 2, 1])
    assert st.bundle_ids.tolist() == [0, 0, 1, 0]
    assert st.num_bundles == 2
    # a larger w_max (coarser float32 grid) swallows the 3-ulp difference too
    st8 = stats(torch.from_numpy(a), [0, 1, 2, 1], weight_amplitude=8.0)
    assert st8.num_bundles == 1


def _numpy_reference_ids(a: np.ndarray, lr: float, bs: int, w: float) -> list[int]:
    """Bundles straight from the definition, in numpy float32, by a dictionary of row bytes."""
    t = np.float32(w) - (a.astype(np.float32) * np.float32(lr)) * np.float32(1.0 / bs)
    t = t.reshape(len(a), -1) + np.float32(0.0)
    seen: dict[bytes, int] = {}
    return [seen.setdefault(row.tobytes(), len(seen)) for row in t]


@pytest.mark.parametrize("seed,lr,bs,w", [(0, 1e-3, 64, 1.0), (1, 3e-4, 100, 0.37), (2, 0.1, 3, 2.5), (3, 1e-3, 7, 0.0)])
def test_matches_float32_definition_on_near_ties(seed, lr, bs, w):
    # activations on a grid around the resolution, so that many rows round together and many do not
    rng = np.random.default_rng(seed)
    step = (2.0**-23 * max(w, 1e-30)) * bs / lr if w > 0 else 1e-3
    a = (rng.integers(0, 4, size=(200, 3)) * step * rng.choice([0.3, 0.7, 1.3], size=(200, 3)) + 0.5)
    a = a.astype(np.float32)
    if w == 0:
        a = rng.integers(0, 3, size=(200, 3)).astype(np.float32)
    y = rng.integers(0, 4, size=200)
    st = bundle_stats(torch.from_numpy(a), torch.from_numpy(y), num_classes=4, lr=lr, batch_size=bs,
                      weight_amplitude=w)
    ref = _numpy_reference_ids(a, lr, bs, w)
    assert st.bundle_ids.tolist() == ref
    assert 1 < st.num_bundles < 200


def test_order_of_operations_is_the_released_one():
    # Pairs of neighbouring activations (3 float32 steps apart) where (a*lr)*(1/bs) and the fused
    # a*(lr*(1/bs)) disagree about whether the two samples tie; the released order must win.
    lr, bs, w = 1e-3, 3, 0.5
    rng = np.random.default_rng(5)
    a1 = rng.uniform(300, 1400, size=20000).astype(np.float32)
    a2 = a1
    for _ in range(3):
        a2 = np.nextafter(a2, np.float32(np.inf))

    def released(a):
        return np.float32(w) - (a * np.float32(lr)) * np.float32(1 / bs)

    def fused(a):
        return np.float32(w) - a * (np.float32(lr) * np.float32(1 / bs))

    tie_r, tie_f = released(a1) == released(a2), fused(a1) == fused(a2)
    only_released = np.nonzero(tie_r & ~tie_f)[0][:15]
    only_fused = np.nonzero(~tie_r & tie_f)[0][:15]
    assert len(only_released) >= 10 and len(only_fused) >= 10
    for idx, expected in [(only_released, 1), (only_fused, 2)]:
        for i in idx:
            rows = torch.tensor([[a1[i]], [a2[i]]], dtype=torch.float32)
            st = bundle_stats(rows, torch.tensor([0, 1]), num_classes=2, lr=lr, batch_size=bs,
                              weight_amplitude=w)
            assert st.num_bundles == expected, (a1[i], a2[i])


def test_permutation_invariance_and_consistent_ids():
    g = torch.Generator().manual_seed(3)
    protos = distinct_rows(7, 6, seed=4)
    which = torch.randint(0, 7, (60,), generator=g)
    a = protos[which]
    y = torch.randint(0, 3, (60,), generator=g)
    st = stats(a, y)
    perm = torch.randperm(60, generator=g)
    sp = stats(a[perm], y[perm])
    assert sp.num_bundles == st.num_bundles == len(set(which.tolist()))
    assert sp.entropy == pytest.approx(st.entropy, rel=1e-12, abs=1e-15)
    assert sp.max_accuracy == st.max_accuracy
    assert same_partition(sp.bundle_ids, st.bundle_ids[perm])
    assert same_partition(st.bundle_ids, which)
    assert is_first_appearance_numbered(sp.bundle_ids) and is_first_appearance_numbered(st.bundle_ids)


def test_first_appearance_numbering_by_hand():
    A, Bv, C = [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]
    st = stats([Bv, A, Bv, C, A], [0, 0, 0, 0, 0])
    assert st.bundle_ids.tolist() == [0, 1, 0, 2, 1]
    assert st.bundle_sizes.tolist() == [2, 2, 1]


@pytest.mark.parametrize("w", [0.0, 1.0, -0.0])
def test_negative_zero_and_positive_zero_share_a_bundle(w):
    a = torch.tensor([[0.0, 1.0, -0.0], [-0.0, 1.0, 0.0], [-0.0, 1.0, -0.0]])
    st = stats(a, [0, 1, 1], weight_amplitude=w)
    assert st.num_bundles == 1


def test_forced_hash_collision_still_exact(monkeypatch):
    calls = []
    real_exact = B._exact_inverse

    def spy(*args):
        calls.append(1)
        return real_exact(*args)

    monkeypatch.setattr(B, "_row_hash", lambda lanes, mult: torch.zeros(lanes.shape[0], dtype=torch.int64))
    monkeypatch.setattr(B, "_exact_inverse", spy)
    a = distinct_rows(9, 5)
    a[6] = a[2]
    a[8] = a[0]
    st = stats(a, [0, 1, 2, 0, 1, 2, 0, 1, 2])
    assert calls, "the collision went unnoticed"
    assert st.bundle_ids.tolist() == [0, 1, 2, 3, 4, 5, 2, 6, 0]
    assert st.num_bundles == 7
    assert st.entropy == pytest.approx((2 * math.log(2) + 2 * math.log(2)) / 9)


def test_odd_width_and_large_width_rows():
    # odd D exercises the pad lane; D spanning several chunks exercises chunking
    for d in (1, 3, 70001):
        a = torch.zeros(5, d)
        a[1, d - 1] = 1.0
        a[3, 0] = 2.0
        st = stats(a, [0, 1, 2, 0, 1])
        assert st.bundle_ids.tolist() == [0, 1, 0, 2, 0], d


def test_many_rows_over_several_chunks(monkeypatch):
    monkeypatch.setattr(B, "_CPU_CHUNK_ELEMENTS", 64)
    a = distinct_rows(50, 16, seed=9)
    a[40:] = a[:10]
    st = stats(a, torch.zeros(50, dtype=torch.long))
    assert st.num_bundles == 40
    assert st.bundle_ids[40:].tolist() == list(range(10))


def test_agrees_with_released_entropy_formula():
    g = torch.Generator().manual_seed(11)
    for trial in range(5):
        n = 300
        ids = torch.randint(0, 1 + 40 * trial, (n,), generator=g)
        ids = torch.unique(ids, return_inverse=True)[1]
        # renumber by first appearance for bundle_stats-like ids; the formula does not care
        y = torch.randint(0, 10, (n,), generator=g)
        a = ids.float()[:, None] * 100.0
        st = bundle_stats(a, y, num_classes=10, **KW)
        released = B._bundle_entropy_released(st.bundle_ids, y, 10)
        assert abs(st.entropy - released) < 2e-4
        assert released <= st.entropy + 1e-12


def test_released_formula_by_hand():
    # pure bundles give 0 after the clamp; a 50/50 bundle gives ln 2 minus a tiny 1e-5 correction
    ids = torch.tensor([0, 0, 1, 1])
    y = torch.tensor([0, 0, 0, 1])
    expected = 2 / 4 * -(2 * 0.5 * math.log(0.5 + 1e-5))
    assert B._bundle_entropy_released(ids, y, 2) == pytest.approx(expected, rel=1e-12)


def test_activation_dtypes_are_cast_to_float32_first():
    a64 = torch.tensor([[1.0], [1.0 + 1e-12], [2.0]], dtype=torch.float64)  # equal after the cast
    st = bundle_stats(a64, torch.tensor([0, 1, 0]), num_classes=2, **KW)
    assert st.bundle_ids.tolist() == [0, 0, 1]
    a16 = torch.tensor([[1.0], [2.0], [1.0]], dtype=torch.float16)
    assert bundle_stats(a16, torch.tensor([0, 1, 0]), num_classes=2, **KW).bundle_ids.tolist() == [0, 1, 0]


def test_input_is_not_modified():
    a = distinct_rows(4, 3)
    before = a.clone()
    stats(a, [0, 1, 2, 0])
    assert torch.equal(a, before)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "a,y,over,match",
    [
        (torch.zeros(3, 2), torch.tensor([0, 1]), {}, "N = 3.*labels hold 2"),
        (torch.zeros(3, 2), torch.tensor([0, 1, 5]), {}, "label 5 outside"),
        (torch.zeros(3, 2), torch.tensor([0, -1, 1]), {}, "label -1 outside"),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), {}, "empty"),
        (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), torch.tensor([0, 1]), {}, "non-finite"),
        (torch.tensor([[0.0, float("inf")], [1.0, 2.0]]), torch.tensor([0, 1]), {}, "non-finite"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), {"batch_size": 0}, "batch_size"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), {"batch_size": -3}, "batch_size"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), {"lr": 0.0}, "lr"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), {"lr": -1e-3}, "lr"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), {"lr": float("nan")}, "lr"),
        (torch.zeros(2, 2), torch.tensor([0, 0]), {"num_classes": 0}, "num_classes"),
        (torch.tensor(1.0), torch.tensor([0]), {}, "at least 1 dim"),
        (torch.zeros(2, 2), torch.tensor([0.0, 1.0]), {}, "integer"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), {"weight_amplitude": -1.0}, "weight_amplitude"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), {"weight_amplitude": float("inf")}, "weight_amplitude"),
        (torch.zeros(2, 2), torch.tensor([[0], [1]]), {}, "1-dim"),
    ],
)
def test_bad_input_raises_naming_the_problem(a, y, over, match):
    kw = {"num_classes": 3, **KW, **over}
    with pytest.raises(ValueError, match=match):
        bundle_stats(a, y, **kw)


def test_finite_activations_overflowing_after_scaling_are_kept():
    a = torch.tensor([[3e38], [3e38], [1.0]])
    st = bundle_stats(a, torch.tensor([0, 1, 0]), num_classes=2, lr=10.0, batch_size=1, weight_amplitude=1.0)
    assert st.bundle_ids.tolist() == [0, 0, 1]


# --------------------------------------------------------------------------- models


def test_weight_amplitude_by_hand():
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.1, -0.7], [0.3, 0.2]]))
        lin.bias.copy_(torch.tensor([0.05, -0.2]))
    frozen = nn.Linear(1, 1)
    with torch.no_grad():
        frozen.weight.fill_(-5.0)
    frozen.requires_grad_(False)
    net = nn.Sequential(lin, frozen)
    w = weight_amplitude(net)
    assert w == float(np.float32(0.7))
    assert isinstance(w, float)
    assert weight_amplitude(nn.ReLU()) == 0.0


def _collapsed_fnn(num_classes=3, depth=3):
    model = build_model(ModelConfig("fnn", num_classes, in_channels=1, input_size=3, fnn_width=5, fnn_depth=depth))
    with torch.no_grad():
        model.hidden[0].weight.zero_()
        model.hidden[0].bias.fill_(1.0)
    return model


def test_measure_model_fnn_with_collapsing_first_layer():
    model = _collapsed_fnn()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 1, 3, 3, generator=g)
    y = torch.tensor([0] * 10 + [1] * 6 + [2] * 4)
    df = measure_model(model, x, y, num_classes=3, lr=1e-3, batch_size=64)
    assert df["tap"].tolist() == ["dense1", "dense2", "dense3"]
    assert df["layer"].tolist() == [0, 1, 2]
    assert (df["role"] == "hidden").all()
    assert (df["num_bundles"] == 1).all()
    assert np.allclose(df["entropy"], label_entropy(y), rtol=1e-12)
    assert np.allclose(df["max_accuracy"], 10 / 20)
    assert df["conflicting"].tolist() == [True, True, True]
    last = measure_last_layer(model, x, y, num_classes=3, lr=1e-3, batch_size=64)
    assert last.num_bundles == 1 and last.entropy == pytest.approx(label_entropy(y))


def test_measure_model_fnn_distinct_inputs_stay_distinct():
    torch.manual_seed(0)
    model = build_model(ModelConfig("fnn", 3, in_channels=1, input_size=4, fnn_width=64, fnn_depth=2))
    x = torch.randn(16, 1, 4, 4)
    y = torch.arange(16) % 3
    df = measure_model(model, x, y, num_classes=3, lr=1e-3, batch_size=64)
    assert (df["num_bundles"] == 16).all() and (df["entropy"] == 0).all()
    assert not df["conflicting"].any()


def test_measure_model_restores_modes_even_on_error():
    model = _collapsed_fnn()
    model.train()
    model.hidden[1].eval()
    before = [m.training for m in model.modules()]
    x = torch.randn(6, 1, 3, 3)
    measure_model(model, x, torch.tensor([0, 1, 2, 0, 1, 2]), num_classes=3, lr=1e-3, batch_size=64)
    assert [m.training for m in model.modules()] == before
    with pytest.raises(ValueError, match="label 7"):
        measure_model(model, x, torch.tensor([0, 1, 2, 0, 1, 7]), num_classes=3, lr=1e-3, batch_size=64)
    assert [m.training for m in model.modules()] == before
    assert torch.is_grad_enabled()


def test_measure_model_residual_convnet_taps_in_order():
    torch.manual_seed(0)
    model = build_model(ModelConfig("residual", 4, in_channels=1, input_size=8, blocks=(1, 1, 1, 0), width=1 / 16))
    x = torch.randn(10, 1, 8, 8)
    y = torch.arange(10) % 4
    df = measure_model(model, x, y, num_classes=4, lr=1e-3, batch_size=64)
    assert len(df) == 2 * 3
    assert df["tap"].tolist() == [
        "stage1.block1.branch", "stage1.block1.out",
        "stage2.block1.branch", "stage2.block1.out",
        "stage3.block1.branch", "stage3.block1.out",
    ]
    assert df["role"].tolist() == ["branch", "output"] * 3
    assert df["layer"].tolist() == list(range(6))
    assert df["block"].tolist() == [0, 0, 1, 1, 2, 2]
    assert df["stage"].tolist() == [0, 0, 1, 1, 2, 2]
    assert list(df.columns) == list(B.TAP_COLUMNS)
    last = measure_last_layer(model, x, y, num_classes=4, lr=1e-3, batch_size=64)
    assert last.num_bundles == df["num_bundles"].iloc[-1]
    assert last.entropy == df["entropy"].iloc[-1]
    sel = measure_model(model, x, y, num_classes=4, lr=1e-3, batch_size=64, taps=["stage2.block1.out"])
    assert sel["tap"].tolist() == ["stage2.block1.out"]
    with pytest.raises(ValueError, match="unknown taps"):
        measure_model(model, x, y, num_classes=4, lr=1e-3, batch_size=64, taps=["nope"])


def test_measure_model_plain_sequential_through_hooks():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2), nn.Softmax(1))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.fill_(1.0)
    assert default_hook_taps(net) == ["1", "3"]
    x = torch.randn(8, 4)
    y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    net.train()
    df = measure_model(net, x, y, num_classes=2, lr=1e-3, batch_size=64)
    assert df["tap"].tolist() == ["1", "3"]
    assert df["role"].tolist() == ["ReLU", "ReLU"]
    assert (df["num_bundles"] == 1).all()
    assert np.allclose(df["entropy"], label_entropy(y))
    assert net.training and all(m.training for m in net)
    assert df["block"].isna().all()
    explicit = measure_model(net, x, y, num_classes=2, lr=1e-3, batch_size=64, taps=["0", "4"])
    assert explicit["tap"].tolist() == ["0", "4"]
    with pytest.raises(ValueError, match="unknown taps"):
        measure_model(net, x, y, num_classes=2, lr=1e-3, batch_size=64, taps=["9"])
    last = measure_last_layer(net, x, y, num_classes=2, lr=1e-3, batch_size=64)
    assert last.num_bundles == 1
    assert not any(m._forward_hooks for m in net.modules())


def test_hooks_default_without_activation_modules_and_reused_modules():
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    assert default_hook_taps(net) == ["0"]

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.lin(self.act(x)))

    df = measure_model(Twice(), torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 0]), num_classes=2, lr=1e-3,
                       batch_size=64)
    assert df["tap"].tolist() == ["act", "act#2"]


def test_bundle_callback_adds_keys_and_frame():
    model = _collapsed_fnn(depth=2)
    x = torch.randn(12, 1, 3, 3)
    y = torch.arange(12) % 3
    cb = BundleCallback(x, y, num_classes=3, lr=1e-3, batch_size=64)
    history = []
    for epoch in (1, 2):
        record = {"epoch": epoch, "test_acc": 0.5}
        cb(model, epoch, record)
        json.dumps(record)
        history.append(record)
    rec = history[0]
    assert [b["tap"] for b in rec["bundles"]] == ["dense1", "dense2"]
    assert set(rec["bundles"][0]) >= {"tap", "layer", "role", "block", "stage", "num_bundles", "entropy", "conflicting"}
    assert rec["a_L_num_bundles"] == 1
    assert rec["a_L_entropy"] == pytest.approx(math.log(3))
    frame = bundles_frame(history)
    assert len(frame) == 4 and frame["epoch"].tolist() == [1, 1, 2, 2]
    assert frame["tap"].tolist() == ["dense1", "dense2"] * 2
    quick = BundleCallback(x, y, num_classes=3, lr=1e-3, batch_size=64, every_tap=False)
    record: dict = {}
    quick(model, 3, record)
    json.dumps(record)
    assert len(record["bundles"]) == 1 and record["epoch"] == 3
    assert record["a_L_num_bundles"] == 1
    assert bundles_frame([{"epoch": 1, "diverged": True}]).empty


def test_bundle_callback_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        BundleCallback(torch.zeros(2, 3), torch.tensor([0, 1]), num_classes=2, lr=1e-3, batch_size=0)
    with pytest.raises(ValueError, match="same number of samples"):
        BundleCallback(torch.zeros(2, 3), torch.tensor([0, 1, 1]), num_classes=2, lr=1e-3, batch_size=4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_result_on_cuda():
    g = torch.Generator().manual_seed(2)
    protos = distinct_rows(9, 33, seed=3)
    which = torch.randint(0, 9, (200,), generator=g)
    a = protos[which] + torch.randint(0, 2, (200, 33), generator=g) * 1e-4
    y = torch.randint(0, 5, (200,), generator=g)
    cpu = bundle_stats(a, y, num_classes=5, **KW)
    gpu = bundle_stats(a.cuda(), y.cuda(), num_classes=5, **KW)
    assert gpu.bundle_ids.device.type == "cuda"
    assert gpu.bundle_ids.cpu().tolist() == cpu.bundle_ids.tolist()
    assert gpu.entropy == pytest.approx(cpu.entropy, rel=1e-12) and gpu.max_accuracy == cpu.max_accuracy
    model = _collapsed_fnn().cuda()
    df = measure_model(model, torch.randn(6, 1, 3, 3), torch.tensor([0, 1, 2, 0, 1, 2]), num_classes=3,
                       lr=1e-3, batch_size=64)
    assert (df["num_bundles"] == 1).all()


# --- measurement samples: a fresh seeded batch per measurement (released) or one fixed set --------


def test_fresh_measurement_batches_differ_per_epoch_and_repeat_per_seed():
    from types import SimpleNamespace

    from reproduce.metric.bundles import bundle_callback
    from reproduce.data.datasets import load_dataset, measurement_samples

    data = load_dataset("digits", train_limit=300)
    spec = SimpleNamespace(train=SimpleNamespace(lr=1e-3, batch_size=64))
    fresh = bundle_callback(data, spec, sample_size=64, seed=3)  # the default: fresh
    x1, y1 = fresh.samples(1)
    x2, _ = fresh.samples(2)
    assert x1.shape == (64, 1, 8, 8) and not torch.equal(x1, x2)
    again, _ = bundle_callback(data, spec, sample_size=64, seed=3).samples(1)
    assert torch.equal(x1, again)
    # every fresh sample is a training image with its label (digits has no augmentation)
    xs, ys = data.train.tensors
    for xi, yi in zip(x1[:8], y1[:8]):
        hit = [(j, int(ys[j])) for j in range(len(xs)) if torch.equal(xs[j], xi)]
        assert hit and any(label == int(yi) for _, label in hit)
    fixed = bundle_callback(data, spec, sample_size=64, seed=3, samples="fixed")
    assert torch.equal(fixed.samples(1)[0], fixed.samples(2)[0])
    assert torch.equal(fixed.samples(5)[0], measurement_samples(data, 64, 3)[0])
    # drawing a fresh batch does not move the global RNG (training stays on its path)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    fresh.samples(7)
    assert torch.equal(torch.rand(1), before)
    with pytest.raises(ValueError, match="unknown samples 'random'.*fresh, fixed"):
        bundle_callback(data, spec, sample_size=64, seed=3, samples="random")
    with pytest.raises(ValueError, match="draw must be None"):
        measurement_samples(data, 8, 0, draw=-1)


def test_hook_distances_are_the_distances_of_the_hooked_outputs():
    """A net whose second ReLU sees a constant (its linear layer zeroed): distance 0 there; the
    first ReLU's distance is that of its output computed by hand."""
    from reproduce.metric.bundles import distance_to_bundling, hook_distances, weight_amplitude

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 5), torch.nn.ReLU(),
                              torch.nn.Linear(5, 2))
    with torch.no_grad():
        net[2].weight.zero_()
        net[2].bias.fill_(0.5)
    x, y = torch.randn(16, 4), torch.arange(16) % 2
    got = hook_distances(net, x, y, lr=1e-3, batch_size=64)
    assert len(got) == 2 and got[1] == 0.0
    with torch.no_grad():
        first = torch.relu(net[0](x))
    assert got[0] == distance_to_bundling(first, labels=y, lr=1e-3, batch_size=64, weight_amplitude=weight_amplitude(net))
    assert got[0] > 0


def test_distance_to_bundling_takes_float32_differences_exactly():
    """2^24 and 1 are float32 numbers whose difference 2^24 - 1 is not (float32 rounds it to 2^24);
    the distance uses the exact difference, and the smallest different-label pair (hand-picked)."""
    from reproduce.metric.bundles import distance_to_bundling, resolution_step

    a = torch.tensor([[2.0**24, 0.0], [1.0, 0.0], [2.0**24, 5.0]], dtype=torch.float32)
    labels = torch.tensor([0, 1, 0])
    # different-label pairs: (0, 1) max(2^24 - 1, 0); (1, 2) max(2^24 - 1, 5): both 2^24 - 1
    got = distance_to_bundling(a, lr=1e-3, batch_size=64, weight_amplitude=1.0, labels=labels)
    assert got == (2.0**24 - 1) * 1e-3 / 64 / resolution_step(1.0)
    # without labels the pair (0, 2) at distance 5 is the closest
    assert distance_to_bundling(a, lr=1e-3, batch_size=64, weight_amplitude=1.0) == 5 * 1e-3 / 64 / resolution_step(1.0)
