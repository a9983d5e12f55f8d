"""Checksums of data files, computed once per file version and cached beside the files.

Verifying MNIST means an MD5 of each ``.gz`` and of each idx file, and gunzipping each ``.gz``
again: about 55 MB read and 11 MB uncompressed, on every load, in every notebook kernel and sweep
job. The MD5s are therefore cached in ``.reproduce-md5.json`` in the files' folder, one entry per
file, valid while the file's size, modification time, change time and inode are those recorded
(the change time cannot be set back by a copy or ``touch``, so a file replaced in place, even by
one of the same size and date, is hashed again). Where the folder cannot be written (a read-only
shared dataset) the MD5s are still cached in memory for the process. A cache file that is
unreadable or not what this module writes is ignored and rewritten.

:func:`content_fingerprint` is the short identity of a set of files' contents: what
:func:`reproduce.data.load_dataset` puts into the data identity of files it did not verify
(``verify_checksums=False``), so that other files of the same format and name never share a run
folder with the published dataset's.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

from reproduce.files.storage import atomic_write_text

__all__ = ["file_md5", "gunzipped_md5", "cached_md5", "content_fingerprint", "CACHE_NAME"]

#: the cache file, in the folder of the files it describes
CACHE_NAME = ".reproduce-md5.json"
_CACHE_VERSION = 1
#: (path, kind) -> (file state, md5), for folders that cannot be written
_MEMORY: dict[tuple[str, str], tuple[list[int], str]] = {}


def _md5_of_stream(open_stream: Callable[[], object]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open_stream() as handle:  # type: ignore[attr-defined]
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_md5(path: Path) -> str | None:
    """Hex MD5 of a file, or None when it is not a file (computed, never cached)."""
    path = Path(path)
    if not path.is_file():
        return None
    return _md5_of_stream(lambda: open(path, "rb"))


def gunzipped_md5(path: Path) -> str | None:
    """Hex MD5 of what the gzip file ``path`` uncompresses to; None when it is not a file or not gzip
    (computed, never cached)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return _md5_of_stream(lambda: gzip.open(path, "rb"))
    except (OSError, EOFError):
        return None


_KINDS = {"md5": file_md5, "gunzipped-md5": gunzipped_md5}


def _state(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read_cache(folder: Path) -> dict:
    try:
        cache = json.loads((folder / CACHE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cache, dict) or cache.get("version") != _CACHE_VERSION or not isinstance(cache.get("files"), dict):
        return {}
    return cache["files"]


def cached_md5(path: Path, kind: str = "md5") -> str | None:
    """:func:`file_md5` (``kind="md5"``) or :func:`gunzipped_md5` (``kind="gunzipped-md5"``) of
    ``path``, from the cache when the file is unchanged since it was computed (module docstring).
    None when ``path`` is not a file (or, for ``gunzipped-md5``, not gzip; that is not cached)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown checksum kind {kind!r}; valid kinds are {', '.join(_KINDS)}")
    path = Path(path)
    if not path.is_file():
        return None
    state, key = _state(path), f"{path.name}|{kind}"
    memory_key = (str(path.resolve()), kind)
    remembered = _MEMORY.get(memory_key)
    if remembered is not None and remembered[0] == state:
        return remembered[1]
    files = _read_cache(path.parent)
    entry = files.get(key)
    if isinstance(entry, dict) and entry.get("state") == state and isinstance(entry.get("md5"), str):
        _MEMORY[memory_key] = (state, entry["md5"])
        return entry["md5"]
    md5 = _KINDS[kind](path)
    if md5 is None or _state(path) != state:  # not gzip, or changed while it was read: do not cache
        return md5
    _MEMORY[memory_key] = (state, md5)
    files[key] = {"state": state, "md5": md5}
    try:
        atomic_write_text(path.parent / CACHE_NAME,
                          json.dumps({"version": _CACHE_VERSION, "files": files}, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # a folder this process cannot write: the MD5 stays cached in memory only
    return md5


def content_fingerprint(paths: Sequence[Path]) -> str:
    """A 16-hex-digit identity of the contents of ``paths`` (their names and MD5s, in the given
    order): equal for equal files, different when any file differs. Missing files raise
    FileNotFoundError naming them."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"cannot fingerprint missing files: {', '.join(missing)}")
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{Path(p).name}:{cached_md5(Path(p))};".encode())
    return h.hexdigest()[:16]


def _clear_memory() -> None:
    """Forget the in-memory cache (tests)."""
    _MEMORY.clear()

