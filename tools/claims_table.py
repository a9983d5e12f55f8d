#!/usr/bin/env python3
"""The README's table of every claims row, generated from ``figures/<scale>/*-claims.csv``.

    python tools/claims_table.py [--scale cpu]           # print the markdown table
    python tools/claims_table.py [--scale cpu] --write   # replace it in README.md (between markers)
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- claims-table:start -->", "<!-- claims-table:end -->"


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
    parser.add_argument("--write", action="store_true", help=f"replace the table in README.md between {START} and {END}")
    args = parser.parse_args()
    text = table(args.scale)
    if not args.write:
        print(text)
        return 0
    readme = ROOT / "README.md"
    content = readme.read_text()
    if START not in content or END not in content:
        raise SystemExit(f"README.md has no {START} ... {END} markers")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print("README.md: claims table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
