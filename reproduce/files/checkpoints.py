"""The checkpoint file: what a training run saves after every epoch, verified when it is read.

A checkpoint (format 2) is a 16-byte magic, the 32-byte sha256 digest of the payload, then the
payload: the ``torch.save`` archive of the run's state (a dict: configs, model and optimiser
tensors, history, status, ...). The state is serialised once, in memory, and written with its
digest in one atomic write. Reading a checkpoint
(:func:`load_checkpoint`) sorts every failure into one of two kinds:

* **provably truncated** -- an empty file, a file shorter than its header, or one whose archive
  (after the header, or the whole file for format 1) has no end-of-archive record (the state a
  writer killed mid-write leaves behind when the file is not written atomically):
  :func:`load_checkpoint` warns and returns None, and the run is recomputed;
* **anything else** -- an I/O or permission error, a file of a newer format, a digest that does
  not match (a flipped bit), a payload that does not unpickle: :class:`CheckpointError`, naming
  the file and the cause. The file is left untouched: at the paper's scale it holds GPU-hours.

Checkpoints of format 1 (written before the conv net's stages became ``layer1..layer4`` and taps
got a ``role``) carry no digest; they are read and upgraded in memory (state-dict keys
``blocks.<i>.`` become ``layer<s>.<j>.``, tap rows' ``kind`` becomes ``role``).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from reproduce.files.storage import atomic_write_bytes

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint", "is_truncated",
           "file_is_truncated"]

CHECKPOINT_FORMAT = 2
#: the keys every run state holds
STATE_KEYS = ("model_config", "train_config", "model", "optimizer", "history", "status", "epoch")

MAGIC = b"REPRODUCE-CKPT\x00\x02"  # 16 bytes: name, format 2
_HEADER = len(MAGIC) + 32
_ZIP_START = b"PK\x03\x04"
_ZIP_END = b"PK\x05\x06"
#: the end-of-archive record is 22 bytes plus a comment of at most 65535 bytes
_ZIP_TAIL = 22 + 65535


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used (and was left as it was)."""


def _dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` with its digest, atomically.

    Serialised in memory first, so a failing write (a full disk) raises the operating system's
    error itself (``OSError`` with its ``errno``), and the previous checkpoint stays in place.
    """
    payload = _dumps(state)
    atomic_write_bytes(path, MAGIC + hashlib.sha256(payload).digest() + payload)


def is_truncated(blob: bytes) -> bool:
    """True for an empty file, a header cut short, or an archive cut short (its end-of-archive
    record is missing)."""
    if not blob or (MAGIC.startswith(blob[: len(MAGIC)]) and len(blob) <= _HEADER):
        return True
    archive = blob[_HEADER:] if blob.startswith(MAGIC) else blob
    return archive.startswith(_ZIP_START) and _ZIP_END not in archive[-_ZIP_TAIL:]


def file_is_truncated(path: str | Path) -> bool:
    """:func:`is_truncated` of the checkpoint file ``path``, reading only its header and its last
    64 KiB (a query that must stay cheap for large checkpoints). OSError when it cannot be read."""
    path = Path(path)
    with path.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        head = f.read(_HEADER + len(_ZIP_START))
        if size <= len(head):
            return is_truncated(head)
        f.seek(max(len(head), size - _ZIP_TAIL))
        tail = f.read()
    return is_truncated(head + tail)


def _load(blob: bytes) -> Any:
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def _upgrade_format_1(state: dict) -> dict:
    """A format-1 state (flat ``blocks.<i>`` module list, tap ``kind``) in today's layout."""
    cfg = state.get("model_config", {})
    if cfg.get("kind") in ("plain", "residual"):
        where = [(s, j) for s, n in enumerate(cfg.get("blocks", ())) for j in range(int(n))]
        model = {}
        for key, value in state["model"].items():
            if key.startswith("blocks."):
                _, i, rest = key.split(".", 2)
                s, j = where[int(i)]
                key = f"layer{s + 1}.{j}.{rest}"
            model[key] = value
        state["model"] = model
    for record in state.get("history", []):
        for row in record.get("bundles") or ():
            if "kind" in row and "role" not in row:
                row["role"] = row.pop("kind")
    return state


def load_checkpoint(path: str | Path) -> dict | None:
    """The run state stored at ``path``; None when there is none or it is provably truncated
    (with a ``RuntimeWarning``); :class:`CheckpointError` for every other failure."""
    import warnings

    path = Path(path)
    if not path.exists():
        return None
    keep = "the file was left untouched; move or delete it to retrain the run"
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}; {keep}") from exc
    if is_truncated(blob):
        warnings.warn(f"checkpoint {path} is truncated ({len(blob)} bytes, no end-of-archive record: a "
                      f"write was cut short); recomputing the run from scratch", RuntimeWarning, stacklevel=3)
        return None
    if blob.startswith(MAGIC[:14]) and not blob.startswith(MAGIC):
        raise CheckpointError(f"checkpoint {path} was written by a newer version of reproduce (format "
                              f"{blob[14:16].hex()}; this version reads formats 1..{CHECKPOINT_FORMAT}): upgrade the "
                              f"package; {keep}")
    if blob.startswith(MAGIC):
        stored, payload = blob[len(MAGIC):_HEADER], blob[_HEADER:]
        digest = hashlib.sha256(payload).digest()
        if digest != stored:
            raise CheckpointError(f"checkpoint {path} fails its checksum (stored sha256 {stored.hex()}, content "
                                  f"{digest.hex()}): the file was corrupted after it was written; {keep}")
        try:
            state = _load(payload)
        except Exception as exc:  # noqa: BLE001 - every cause is reported, none is swallowed
            raise CheckpointError(f"checkpoint {path} passes its checksum but does not load "
                                  f"({type(exc).__name__}: {exc}); {keep}") from exc
    else:
        try:
            state = _load(blob)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); {keep}") from exc
        fmt = state.get("format") if isinstance(state, dict) else None
        if not isinstance(fmt, int):
            raise CheckpointError(f"{path} is not a checkpoint of this package (no format number); {keep}")
        if fmt != 1:
            raise CheckpointError(f"checkpoint {path} was written by a newer version of reproduce (format {fmt}; "
                                  f"this version reads formats 1..{CHECKPOINT_FORMAT}): upgrade the package; {keep}")
        state = _upgrade_format_1(state)
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; {keep}")
    return state
