"""The notebooks' plotting helpers (reproduce.experiments.plots) on hand-made axes."""

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402

from reproduce.experiments.plots import label_points, short_number  # noqa: E402


def texts(ax):
    return sorted(a.get_text() for a in ax.texts)


def test_points_at_one_place_share_one_label():
    # a search that kept its start is the same net as a fixed baseline: one point, one label naming both
    fig, ax = plt.subplots()
    ax.set(xlim=(0, 10), ylim=(0, 10))
    label_points(ax, [(5.0, 5.0, "120", "tab:orange"), (2.0, 3.0, "10", "tab:blue"),
                      (5.0, 5.0, "found (120)", "tab:orange")])
    assert texts(ax) == ["10", "120 / found (120)"]
    plt.close(fig)


def test_distinct_points_keep_their_own_labels():
    fig, ax = plt.subplots()
    ax.set(xlim=(0, 10), ylim=(0, 10))
    label_points(ax, [(5.0, 5.0, "a", "k"), (5.0, 8.0, "b", "k"), (5.0, 5.0, "c", "tab:red")])
    assert texts(ax) == ["a", "b", "c"]  # same place, other colour (another kind of net): not merged
    plt.close(fig)


def test_short_numbers_by_hand():
    assert [short_number(v) for v in (1, 20, 500, 2_000, 50_000, 1_500_000)] == ["1", "20", "500", "2k", "50k", "1.5M"]
