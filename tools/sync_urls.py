#!/usr/bin/env python3
"""Write the repository's address, kept in one place (``[project.urls] Repository`` of
pyproject.toml), into the places that must carry it as a literal: the install cell of every
notebook (Colab runs it outside the repository) and the Binder and Colab badges of the README.

    python tools/sync_urls.py          # rewrite them
    python tools/sync_urls.py --check  # exit 1 and list what differs (tests/test_install_cell.py)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL_MARK = "# Colab / a fresh environment"
URL_LINE = re.compile(r'^REPO_URL = ".*"$', re.M)
GITHUB = re.compile(r"^https://github\.com/([^/]+/[^/]+?)(?:\.git)?/?$")


def repository_url(root: Path = ROOT) -> str:
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    return meta["project"]["urls"]["Repository"]


def _badges(text: str, slug: str) -> str:
    text = re.sub(r"(https://mybinder\.org/v2/gh/)[^/]+/[^/]+(/HEAD)", rf"\g<1>{slug}\g<2>", text)
    return re.sub(r"(https://colab\.research\.google\.com/github/)[^/]+/[^/]+(/blob/)", rf"\g<1>{slug}\g<2>", text)


def sync(root: Path = ROOT, check: bool = False) -> list[str]:
    """Rewrite (or, with ``check``, only compare) every place; return the files that differ(ed)."""
    url = repository_url(root)
    m = GITHUB.match(url)
    if not m:
        raise SystemExit(f"[project.urls] Repository must be a https://github.com/OWNER/REPO address, got {url!r}")
    stale = []
    for nb in sorted((root / "notebooks").glob("*.ipynb")):
        data = json.loads(nb.read_text())
        cells = [c for c in data["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith(INSTALL_MARK)]
        if len(cells) != 1:
            raise SystemExit(f"{nb}: expected one install cell starting with {INSTALL_MARK!r}, found {len(cells)}")
        src = "".join(cells[0]["source"])
        new = URL_LINE.sub(f'REPO_URL = "{url}"', src)
        if new != src or not URL_LINE.search(src):
            stale.append(str(nb.relative_to(root)))
            if not check:
                lines = new.split("\n")
                cells[0]["source"] = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
                nb.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    readme = root / "README.md"
    text = readme.read_text()
    new = _badges(text, m.group(1))
    if new != text:
        stale.append("README.md")
        if not check:
            readme.write_text(new)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report what differs")
    args = parser.parse_args()
    stale = sync(check=args.check)
    for path in stale:
        print(("differs: " if args.check else "updated: ") + path)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
