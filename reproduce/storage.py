"""Files: atomic writes (temporary file, then rename) and the config hashes that name run folders.

Every result, checkpoint and figure table of the package is written through this module, so a
killed process never leaves a half-written file under its final name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["config_hash", "atomic_write_bytes", "atomic_write_text", "atomic_torch_save"]


def config_hash(*parts: Any, length: int = 8) -> str:
    """A short stable hash of JSON-able configs (dataclasses allowed), for run folder names."""

    def plain(x: Any) -> Any:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {k: plain(v) for k, v in asdict(x).items()}
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
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename."""
    _atomic_write(Path(path), lambda f: f.write(data), "wb")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    _atomic_write(Path(path), lambda f: f.write(text), "w")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` via a temporary file and a rename."""
    _atomic_write(Path(path), lambda f: torch.save(obj, f), "wb")
