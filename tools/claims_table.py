#!/usr/bin/env python3
"""The README's table of every claims row, generated from ``figures/<scale>/*-claims.csv``.

    python tools/claims_table.py [--scale cpu]           # print the markdown table
    python tools/claims_table.py [--scale cpu] --write   # replace it in README.md (between markers)

The markers are ``<!-- claims-table:start -->`` ... ``<!-- claims-table:end -->`` for ``cpu`` and
``<!-- claims-table-<scale>:start -->`` ... ``<!-- claims-table-<scale>:end -->`` for another scale.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- claims-table:start -->", "<!-- claims-table:end -->"


def markers(scale: str) -> tuple[str, str]:
    """The README markers around the table of ``scale``."""
    if scale == "cpu":
        return START, END
    return f"<!-- claims-table-{scale}:start -->", f"<!-- claims-table-{scale}:end -->"


def table(scale: str) -> str:
    files = sorted((ROOT / "figures" / scale).glob("*-claims.csv"))
    if not files:
        raise SystemExit(f"no claims tables in figures/{scale}/: run `make reproduce SCALE={scale}` first")
    lines = ["| notebook | claim | measured | verdict | seeds |", "|---|---|---|---|---|"]
    for path in files:
        stem = path.name.removesuffix("-claims.csv")
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                cells = [f"[`{stem}`](notebooks/{stem}.ipynb)", row["claim"], row["measured"], f"**{row['verdict']}**",
                         row.get("seeds") or "1"]
                lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--write", action="store_true", help="replace the table in README.md between the scale's markers")
    args = parser.parse_args()
    text = table(args.scale)
    if not args.write:
        print(text)
        return 0
    start, end = markers(args.scale)
    readme = ROOT / "README.md"
    content = readme.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"README.md has no {start} ... {end} markers")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text}\n{end}{tail}")
    print("README.md: claims table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
