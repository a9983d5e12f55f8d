"""Install packages with uv, from the package sources pip is configured with (pip where uv is missing).

    python tools/uv_sources.py                  # print the uv flags of pip's sources
    python tools/uv_sources.py install ARGS...  # uv pip install (or pip install) ARGS into this Python

``make install`` installs with uv (its parallel unpacking sets up the 6 GB environment in about a
tenth of pip's time) but uv does not read pip's configuration. Where pip is set up with a local
wheel folder, extra indexes or a constraints file (``pip config list``, environment variables
included), uv gets the same, so both resolve from the same files. Prints nothing where pip has no
such settings: uv then reads PyPI, as pip would.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

#: pip setting -> uv flag (each value of a setting may hold several, space-separated)
FLAGS = {"find-links": "--find-links", "extra-index-url": "--extra-index-url", "index-url": "--index-url",
         "constraint": "--constraint"}


def uv_flags(config_list: str) -> list[str]:
    """The uv flags of ``pip config list`` output (``scope.key='value'`` per line); a setting given in
    several scopes is passed once per distinct value."""
    seen: dict[str, list[str]] = {}
    for line in config_list.splitlines():
        key, _, value = line.partition("=")
        name = key.rpartition(".")[2]
        if name in FLAGS and value:
            for item in shlex.split(value)[0].split() if value.startswith(("'", '"')) else value.split():
                if item not in seen.setdefault(name, []):
                    seen[name].append(item)
    flags = [part for name, values in seen.items() for v in values for part in (FLAGS[name], v)]
    if "extra-index-url" in seen or "find-links" in seen:
        flags += ["--index-strategy", "unsafe-best-match"]  # pip's rule: the best match over every source
    return flags


def install_command(args: list[str], uv: Path | None, config_list: str) -> list[str]:
    """The command that installs ``args`` into this Python: uv with pip's sources when ``uv`` is an
    executable, else pip itself. Neither byte-compiles every installed file (tools/warm_bytecode.py
    compiles what is imported)."""
    if uv is not None and uv.is_file() and os.access(uv, os.X_OK):
        return [str(uv), "pip", "install", "--quiet", "--python", sys.executable, *uv_flags(config_list), *args]
    return [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", *args]


def main(argv: list[str]) -> int:
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    if argv[:1] == ["install"]:
        uv = Path(sys.executable).parent / "uv"
        return subprocess.call(install_command(argv[1:], uv, out))
    print(" ".join(shlex.quote(f) for f in uv_flags(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
