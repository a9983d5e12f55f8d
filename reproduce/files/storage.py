"""Files: atomic writes (temporary file, then rename) and the config hashes that name run folders.

Every result, checkpoint and figure table of the package is written through this module, so a
killed process never leaves a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

__all__ = ["config_hash", "LEGACY_VALUE", "legacy_field", "atomic_write_bytes", "atomic_write_text", "atomic_torch_save", "exclusive_lock", "lock_is_held",
           "LockHeld", "remove_temporaries"]


#: dataclass field metadata key: the value the field's behaviour had before the field existed
LEGACY_VALUE = "reproduce.legacy_value"


def legacy_field(default: Any, legacy: Any) -> Any:
    """A dataclass field added after run folders existed: ``default`` (the released setting) for
    new configs, ``legacy`` the behaviour of configs written before it. :func:`config_hash`
    leaves the field out while it holds ``legacy``, so those folders keep their names."""
    return dataclasses.field(default=default, metadata={LEGACY_VALUE: legacy})


def config_hash(*parts: Any, length: int = 8) -> str:
    """A short stable hash of JSON-able configs (dataclasses allowed), for run folder names.

    A field declared with :func:`legacy_field` is left out while it holds its legacy value."""

    def plain(x: Any) -> Any:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)
                    if not (LEGACY_VALUE in f.metadata and getattr(x, f.name) == f.metadata[LEGACY_VALUE])}
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    blob = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results are ordinary files
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            # a full disk says only "[Errno 28] No space left on device": name the file (same type, same errno)
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename."""
    _atomic_write(Path(path), lambda f: f.write(data), "wb")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    _atomic_write(Path(path), lambda f: f.write(text), "w")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` via a temporary file and a rename.

    Serialised in memory first, so a failing write (a full disk) raises the operating system's
    error (``OSError`` with its ``errno``) instead of torch's "unexpected pos".
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries of :func:`atomic_write_bytes` left in ``folder`` by killed writers.

    Call it only while holding the folder's :func:`exclusive_lock` (no live writer then). Returns
    the removed paths.
    """
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


class LockHeld(RuntimeError):
    """Another process holds the lock."""


def lock_is_held(path: str | Path) -> bool:
    """True when a live process holds the :func:`exclusive_lock` on ``path``; False when none does
    or there is no such file. It only reads: the file is opened read-only and never created, so a
    query on a read-only tree can ask (``flock`` takes an exclusive lock on a read-only descriptor)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def exclusive_lock(path: str | Path, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` (created if missing) for the ``with`` block.

    Tries for up to ``wait`` seconds (a short wait rides over another process that only probes the
    lock), then raises :class:`LockHeld` (with the holder's pid when it wrote one). The lock dies
    with its process, so a killed holder never leaves a stale lock behind.
    """
    import time

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    raise LockHeld(f"{path} is locked by another process (pid {holder})") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
