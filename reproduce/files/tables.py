"""Plain-text tables for the terminal (the commands' summaries, the sweep's status and plan)."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["text_table"]


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Any = ()) -> str:
    """An aligned plain-text table with a rule under the header; the columns whose indices are in
    ``right`` right-aligned, short rows padded with empty cells."""
    right = set(right)
    width = len(header)
    cells = [list(header), *[list(r) + [""] * (width - len(r)) for r in rows]]
    widths = [max(len(str(row[i])) for row in cells) for i in range(width)]

    def line(row: Sequence[Any]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths).rstrip(), *(line(r) for r in cells[1:])])
