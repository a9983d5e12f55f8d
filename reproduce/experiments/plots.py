"""Small plotting helpers the notebooks share: labels placed clear of the points, short log axes."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["label_points", "short_number", "log_axis"]

#: where a label may go: (dx, dy) in points from its point, horizontal and vertical alignment
_SIDES = [(9, 0, "left", "center"), (-9, 0, "right", "center"), (0, 9, "center", "bottom"), (0, -9, "center", "top")]


def label_points(ax: Any, points: Sequence[tuple[float, float, str, Any]], fontsize: int = 9) -> None:
    """Write each ``(x, y, text, colour)`` beside its point, on the side (right, left, above, below)
    that keeps the label inside the axes and farthest from the other points and the labels
    already placed (text widths estimated from the character count). Points of one colour that
    fall on the same pixel (the same net under two names) get one label, their texts joined by " / "."""
    ax.figure.canvas.draw()  # final limits and layout, so that data map to display pixels
    merged: dict[tuple, list] = {}
    for (x, y, text, colour), (px, py) in zip(points, ax.transData.transform([(x, y) for x, y, _, _ in points])):
        key = (round(float(px)), round(float(py)), str(colour))
        merged.setdefault(key, [x, y, [], colour])[2].append(text)
    points = [(x, y, " / ".join(texts), colour) for x, y, texts, colour in merged.values()]
    xy = ax.transData.transform([(x, y) for x, y, _, _ in points])
    box, k, placed = ax.get_window_extent(), ax.figure.dpi / 72, []
    for i, (x, y, text, colour) in enumerate(points):
        half = 2.9 * len(text)  # half the text's width in points, roughly
        others = [q for j, q in enumerate(xy) if j != i]

        def score(side: tuple) -> tuple[tuple[bool, float], np.ndarray]:
            dx, dy, ha, va = side
            centre = xy[i] + k * np.array([dx + {"left": half, "right": -half}.get(ha, 0),
                                           dy + {"bottom": 5, "top": -5}.get(va, 0)])
            inside = box.x0 < centre[0] - k * half and centre[0] + k * half < box.x1 and box.y0 < centre[1] < box.y1
            return (inside, min([np.hypot(*(centre - q)) for q in others + placed], default=0)), centre

        side = max(_SIDES, key=lambda s: score(s)[0])
        placed.append(score(side)[1])
        ax.annotate(text, (x, y), xytext=side[:2], textcoords="offset points", ha=side[2], va=side[3],
                    fontsize=fontsize, color=colour)


def short_number(v: float, _pos: Any = None) -> str:
    """1, 20, 500, 2k, 50k, 1.5M: tick labels that stay short over many decades."""
    return f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k" if v >= 1e3 else f"{v:g}"


def log_axis(ax: Any) -> None:
    """A logarithmic x axis with major ticks at 1, 2, 5 x 10^n, labelled by :func:`short_number`."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log", subs=())
    ax.xaxis.set(major_locator=LogLocator(subs=(1, 2, 5)), major_formatter=FuncFormatter(short_number))
