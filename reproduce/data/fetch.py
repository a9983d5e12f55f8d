"""Download the paper's datasets into the layout :mod:`reproduce.data` reads: ``python -m reproduce data fetch``.

::

    python -m reproduce data fetch [--root DIR] [mnist fashion-mnist cifar10 svhn imagenette]
    python -m reproduce data status [--root DIR]

:func:`fetch` gets MNIST, Fashion-MNIST, CIFAR-10, SVHN (cropped digits) and Imagenette (160 px) into ``root``
(default :func:`reproduce.data.default_root`, i.e. ``$REPRODUCE_DATA``), so that
``reproduce.data.load_dataset(name, root=root)`` works afterwards without ``download=True``.

Where the files come from and what they must hash to is read, at call time, from torchvision's
own class attributes (``MNIST.mirrors``/``MNIST.resources``, the same of ``FashionMNIST``, ``CIFAR10.url``/``filename``/
``tgz_md5`` and the MD5s of its batches, ``SVHN.split_list``, ``Imagenette._ARCHIVES``), so the
published checksums are never copied here, and a test (or a local mirror) can point those
attributes elsewhere. ``base_urls`` overrides the source folder of a dataset instead.

Layout under ``root`` (exactly what the loaders of :mod:`reproduce.data` read):

* ``mnist``: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` are downloaded and
  gunzipped to the four idx files in ``MNIST/raw/``; the ``.gz`` files stay beside them, since
  their published MD5s are what verifies the idx files (here and in the loader);
* ``fashion-mnist``: the same four files, Fashion-MNIST's, in ``FashionMNIST/raw/``;
* ``cifar10``: ``cifar-10-python.tar.gz`` is downloaded and unpacked to ``cifar-10-batches-py/``;
* ``svhn``: ``SVHN/train_32x32.mat`` and ``SVHN/test_32x32.mat`` are downloaded and read as they are;
* ``imagenette``: ``imagenette2-160.tgz`` is downloaded and unpacked to ``imagenette2-160/{train,val}/``.

For every file of every dataset asked for, :func:`fetch`:

* skips it when it is already there (the unpacked files exist; where torchvision publishes their
  MD5, as for the CIFAR-10 batches and the SVHN files, they also verify; an idx file verifies
  through its kept ``.gz``), so a second call downloads nothing; a file that is there but does
  not verify is repaired: downloaded again and put in its place (an idx file whose ``.gz`` still
  verifies is only unpacked again from it);
* downloads it over HTTP(S) into ``<file>.part``, resuming a ``.part`` left by an interrupted
  call with a ``Range: bytes=N-`` request (and starting over when the server ignores the range);
  a download fails when no byte arrives for the read timeout (60 s), or when it is not complete
  by its overall deadline (2 h, ``deadline_s``), so a server that trickles cannot hang it; the
  ``.part`` is kept for the next call to resume;
  a bar per file shows the progress (:func:`reproduce.files.progress.progress_bar`);
* checks the MD5 torchvision declares for the download; a mismatch deletes the download and is
  reported with the file name, the expected and the actual MD5 (a resumed download that fails is
  first downloaded once more from scratch);
* renames the verified download into place, then unpacks it (gunzip, or untar into a temporary
  folder renamed into place), so a file or folder the loader reads is either complete or absent;
  tar archives are deleted once unpacked. Unpacking that fails removes its temporary file or folder
  (and one an earlier call left behind is removed first); a gzip stream that turns out corrupt
  deletes its archive, so that the next call downloads it again. Gzip archives are kept (see above).

A dataset that fails does not stop the others, and nothing fetched before is removed;
:func:`fetch` then raises :class:`FetchError`, whose ``report`` says what happened to each one.
"""

from __future__ import annotations

import gzip
import http.client
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Literal

from torchvision.datasets import CIFAR10, SVHN, Imagenette

from reproduce.data.checksums import cached_md5, file_md5 as _md5
from reproduce.data.datasets import IDX_DATASETS, IMAGENETTE_SIZES, default_root

__all__ = [
    "DATASET_NAMES",
    "ChecksumError",
    "DatasetResult",
    "DownloadError",
    "FetchError",
    "FetchReport",
    "RemoteFile",
    "fetch",
    "is_present",
    "remote_files",
    "state",
]

#: the datasets that can be fetched (``digits`` ships with scikit-learn and needs no download)
DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10", "svhn", "imagenette")
#: the Imagenette variant fetched (the smallest; :mod:`reproduce.data` prefers it too)
IMAGENETTE_SIZE = "160px"

_CHUNK = 1 << 20
#: read timeout (seconds): a download fails when no byte arrives for this long
_TIMEOUT_S = 60.0
#: overall deadline (seconds) of each download (one file from one source), however steadily bytes
#: arrive; ``fetch(deadline_s=...)`` overrides it for one call. What arrived is kept to resume.
_DEADLINE_S = 2 * 3600.0
_USER_AGENT = "reproduce-data-fetch (python urllib)"

Unpack = Literal["none", "gunzip", "untar"]


class DownloadError(RuntimeError):
    """A file could not be downloaded (network error, HTTP error, or an incomplete transfer)."""


class ChecksumError(DownloadError):
    """A downloaded (or unpacked) file does not have the MD5 torchvision publishes for it."""

    def __init__(self, path: Path, source: str, expected: str, actual: str, *, deleted: bool = True) -> None:
        self.path, self.source, self.expected, self.actual = Path(path), source, expected, actual
        fate = "it was deleted" if deleted else "nothing was put in place"
        super().__init__(
            f"{self.path.name} (from {source}) has MD5 {actual}, expected {expected}: the file is corrupted or "
            f"not the published one; {fate}"
        )


@dataclass(frozen=True)
class RemoteFile:
    """One file a dataset needs: its sources, its checksum, and what it becomes under ``root``."""

    dataset: str
    filename: str
    """Name of the published file, e.g. ``train-images-idx3-ubyte.gz``."""
    urls: tuple[str, ...]
    """Where it can be downloaded, tried in this order (MNIST has mirrors)."""
    md5: str
    """The MD5 torchvision declares for the download."""
    archive: Path
    """Where the verified download is put (its ``.part`` lies beside it while downloading)."""
    unpack: Unpack
    """``none`` (the download is read as is), ``gunzip`` (to :attr:`target`) or ``untar``."""
    target: Path
    """The file or folder the download becomes (for ``untar``: the archive's top folder)."""
    provides: tuple[Path, ...]
    """Paths the loader reads; all must exist for the file to count as present."""
    checks: tuple[tuple[Path, str], ...] = ()
    """``(path, md5)`` of unpacked files whose checksum torchvision publishes."""

    def present(self) -> bool:
        """Whether what the loader reads is there and, where checksums are known, verifies.

        A gunzipped file verifies when its kept archive has the published MD5 and it is what that
        archive uncompresses to (torchvision publishes the MD5 of the ``.gz`` only)."""
        if not (all(p.exists() for p in self.provides) and all(cached_md5(p) == md5 for p, md5 in self.checks)):
            return False
        return self.unpack != "gunzip" or cached_md5(self.archive, "gunzipped-md5") == cached_md5(self.target)


@dataclass(frozen=True)
class DatasetResult:
    """What :func:`fetch` did with one dataset."""

    name: str
    status: Literal["already there", "fetched", "failed"]
    location: Path
    """The folder the loader reads."""
    downloaded: tuple[str, ...] = ()
    """Files downloaded by this call."""
    error: str = ""
    """Why it failed (empty unless ``status == "failed"``)."""

    @property
    def ok(self) -> bool:
        """True unless the dataset failed."""
        return self.status != "failed"


@dataclass(frozen=True)
class FetchReport:
    """The outcome of one :func:`fetch` call, one :class:`DatasetResult` per dataset, in order."""

    root: Path
    results: tuple[DatasetResult, ...]

    @property
    def ok(self) -> bool:
        """True when no dataset failed."""
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> tuple[DatasetResult, ...]:
        """The results of the datasets that failed."""
        return tuple(r for r in self.results if not r.ok)

    def __getitem__(self, name: str) -> DatasetResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.results] + [1])
        lines = []
        for r in self.results:
            detail = f"failed: {r.error}" if not r.ok else f"{r.status}  {r.location}"
            lines.append(f"{r.name.ljust(width)}  {detail}")
        return "\n".join(lines)


class FetchError(RuntimeError):
    """One or more datasets could not be fetched; ``report`` holds every dataset's outcome."""

    def __init__(self, report: FetchReport) -> None:
        self.report = report
        reasons = "; ".join(f"{r.name}: {r.error}" for r in report.failed)
        super().__init__(f"could not fetch {len(report.failed)} dataset(s) into {report.root}: {reasons}")


# --------------------------------------------------------------------------------------------
# the table: what each dataset needs, read from torchvision's attributes at call time
# --------------------------------------------------------------------------------------------


def _source(urls: Sequence[str], filename: str, base_url: str | None) -> tuple[str, ...]:
    if base_url is not None:
        return (base_url.rstrip("/") + "/" + filename,)
    return tuple(urls)


def _idx_files(name: str, root: Path, base_url: str | None) -> list[RemoteFile]:
    """mnist / fashion-mnist: torchvision's class (``IDX_DATASETS``) gives the mirrors, MD5s and folder."""
    cls = IDX_DATASETS[name]
    raw = root / cls.__name__ / "raw"
    files = []
    for filename, md5 in cls.resources:
        target = raw / filename.removesuffix(".gz")
        files.append(RemoteFile(
            dataset=name, filename=filename, urls=_source([m + filename for m in cls.mirrors], filename, base_url),
            md5=md5, archive=raw / filename, unpack="gunzip", target=target, provides=(target, raw / filename),
            checks=((raw / filename, md5),),
        ))  # fmt: skip
    return files


def _cifar10_files(root: Path, base_url: str | None) -> list[RemoteFile]:
    folder = root / CIFAR10.base_folder
    checks = tuple((folder / f, md5) for f, md5 in [*CIFAR10.train_list, *CIFAR10.test_list]) + (
        (folder / CIFAR10.meta["filename"], CIFAR10.meta["md5"]),
    )
    return [RemoteFile(
        dataset="cifar10", filename=CIFAR10.filename, urls=_source([CIFAR10.url], CIFAR10.filename, base_url),
        md5=CIFAR10.tgz_md5, archive=root / CIFAR10.filename, unpack="untar", target=folder,
        provides=tuple(p for p, _ in checks), checks=checks,
    )]  # fmt: skip


def _svhn_files(root: Path, base_url: str | None) -> list[RemoteFile]:
    folder = root / "SVHN"
    files = []
    for split in ("train", "test"):
        url, filename, md5 = SVHN.split_list[split]
        path = folder / filename
        files.append(RemoteFile(
            dataset="svhn", filename=filename, urls=_source([url], filename, base_url), md5=md5, archive=path,
            unpack="none", target=path, provides=(path,), checks=((path, md5),),
        ))  # fmt: skip
    return files


def _imagenette_stem(size: str) -> str:
    return Path(Imagenette._ARCHIVES[size][0]).name.removesuffix(".tgz")


def _imagenette_files(root: Path, base_url: str | None) -> list[RemoteFile]:
    url, md5 = Imagenette._ARCHIVES[IMAGENETTE_SIZE]
    filename = Path(url).name
    folder = root / _imagenette_stem(IMAGENETTE_SIZE)
    return [RemoteFile(
        dataset="imagenette", filename=filename, urls=_source([url], filename, base_url), md5=md5,
        archive=root / filename, unpack="untar", target=folder, provides=(folder / "train", folder / "val"),
    )]  # fmt: skip


_TABLE: Mapping[str, Callable[[Path, str | None], list[RemoteFile]]] = MappingProxyType(
    {"mnist": partial(_idx_files, "mnist"), "fashion-mnist": partial(_idx_files, "fashion-mnist"),
     "cifar10": _cifar10_files, "svhn": _svhn_files, "imagenette": _imagenette_files}
)
_LOCATIONS: Mapping[str, Callable[[Path], Path]] = MappingProxyType({
    "mnist": lambda root: root / IDX_DATASETS["mnist"].__name__ / "raw",
    "fashion-mnist": lambda root: root / IDX_DATASETS["fashion-mnist"].__name__ / "raw",
    "cifar10": lambda root: root / CIFAR10.base_folder,
    "svhn": lambda root: root / "SVHN",
    "imagenette": lambda root: root / _imagenette_stem(IMAGENETTE_SIZE),
})  # fmt: skip


def _check_name(name: str) -> None:
    if name not in _TABLE:
        hint = " ('digits' ships with scikit-learn and needs no download)" if name == "digits" else ""
        raise ValueError(f"unknown dataset {name!r}{hint}; valid choices: {', '.join(DATASET_NAMES)}")


def _root(root: str | Path | None) -> Path:
    """``root`` (default :func:`default_root`); NotADirectoryError when it, or a folder above it, is a file."""
    path = Path(root).expanduser() if root is not None else default_root()
    origin = " (from $REPRODUCE_DATA)" if root is None and os.environ.get("REPRODUCE_DATA") else ""
    for above in (path, *path.parents):
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                where = "" if above == path else f", so the data folder {path} cannot be made under it"
                raise NotADirectoryError(
                    f"{above} is a file, not a folder{where}{origin}; name a folder for the datasets (one that "
                    f"does not exist yet is created) or move the file away"
                )
            break
    return path


def remote_files(name: str, root: str | Path | None = None, base_url: str | None = None) -> list[RemoteFile]:
    """The files dataset ``name`` needs under ``root``, as torchvision's attributes say right now.

    ``base_url`` replaces the dataset's sources: each file is then fetched from
    ``base_url/<filename>``. Raises ValueError for an unknown name.
    """
    _check_name(name)
    return _TABLE[name](_root(root), base_url)


def is_present(name: str, root: str | Path | None = None) -> bool:
    """Whether ``load_dataset(name, root=root)`` finds dataset ``name`` (files there, published MD5s verify).

    Imagenette counts as present in any of the sizes :mod:`reproduce.data` reads (160 px,
    320 px, full), as the loader does. A ``root`` that is a file raises NotADirectoryError.
    """
    _check_name(name)
    root_path = _root(root)
    if name == "imagenette":
        return any(
            all((root_path / _imagenette_stem(size) / split).is_dir() for split in ("train", "val"))
            for size in IMAGENETTE_SIZES
        )
    return all(f.present() for f in remote_files(name, root_path))


def state(name: str, root: str | Path | None = None) -> Literal["present", "missing", "does not verify"]:
    """``present`` (:func:`is_present`), ``does not verify`` (some of its files are there, but not all,
    or one has the wrong MD5: :func:`fetch` repairs it), or ``missing`` (none of its files are there)."""
    if is_present(name, root):
        return "present"
    root_path = _root(root)
    there = name != "imagenette" and any(p.exists() for f in remote_files(name, root_path) for p in f.provides)
    return "does not verify" if there else "missing"


# --------------------------------------------------------------------------------------------
# fetching
# --------------------------------------------------------------------------------------------


def fetch(
    names: Iterable[str] | None = None,
    root: str | Path | None = None,
    *,
    progress: bool = True,
    base_urls: Mapping[str, str] | None = None,
    deadline_s: float | None = None,
) -> FetchReport:
    """Download, verify and unpack the datasets ``names`` (default: all of :data:`DATASET_NAMES`).

    ``root`` defaults to :func:`reproduce.data.default_root`. ``progress`` draws a :func:`reproduce.files.progress.progress_bar`
    bar per downloaded file. ``base_urls`` maps a dataset name to a folder URL its files are
    fetched from instead of torchvision's (``base_url/<published file name>``). ``deadline_s`` is the
    overall deadline of each download (default ``_DEADLINE_S``, 2 h); besides, a download fails
    when no byte arrives for ``_TIMEOUT_S`` (60 s). Either way its ``.part`` is kept to resume.

    Every name is checked before anything is downloaded (ValueError naming the valid choices), and
    so is ``root``: NotADirectoryError naming it when it (or a folder above it) is a file.
    Returns a :class:`FetchReport`; when a dataset failed, the others are still fetched and
    :class:`FetchError` (carrying the report) is raised at the end.
    """
    wanted = list(DATASET_NAMES) if names is None else list(dict.fromkeys(names))
    if not wanted:
        wanted = list(DATASET_NAMES)
    for name in wanted:
        _check_name(name)
    base_urls = dict(base_urls or {})
    for name in base_urls:
        _check_name(name)
    root_path = _root(root)

    results = []
    for name in wanted:
        location = _LOCATIONS[name](root_path)
        if is_present(name, root_path):
            results.append(DatasetResult(name, "already there", location))
            continue
        downloaded: list[str] = []
        try:
            root_path.mkdir(parents=True, exist_ok=True)
            for remote in remote_files(name, root_path, base_urls.get(name)):
                if remote.present():
                    continue
                if _fetch_file(remote, progress=progress, deadline_s=deadline_s):
                    downloaded.append(remote.filename)
            if not is_present(name, root_path):
                raise DownloadError(f"{name} is still incomplete under {root_path} after fetching")
        except (DownloadError, OSError, EOFError, tarfile.TarError, zlib.error) as error:
            message = str(error) if isinstance(error, DownloadError) else f"{type(error).__name__}: {error}"
            results.append(DatasetResult(name, "failed", location, tuple(downloaded), message))
        else:
            results.append(DatasetResult(name, "fetched", location, tuple(downloaded)))
    report = FetchReport(root_path, tuple(results))
    if not report.ok:
        raise FetchError(report)
    return report


def _fetch_file(remote: RemoteFile, *, progress: bool, deadline_s: float | None = None) -> bool:
    """Make ``remote`` present; True when it had to be downloaded."""
    downloaded = False
    reuse = remote.unpack != "none" and remote.archive.is_file() and _md5(remote.archive) == remote.md5
    if not reuse:
        _download_verified(remote, progress=progress, deadline_s=deadline_s)
        downloaded = True
    if remote.unpack == "gunzip":
        _gunzip(remote.archive, remote.target)  # the archive stays: its published MD5 verifies the file
    elif remote.unpack == "untar":
        _untar_folder(remote)
        remote.archive.unlink()
    return downloaded


def _download_verified(remote: RemoteFile, *, progress: bool, deadline_s: float | None = None) -> None:
    """Download ``remote`` from its first working source into ``remote.archive``, MD5 verified."""
    errors: list[tuple[str, Exception]] = []
    for url in remote.urls:
        try:
            _download_from(url, remote, progress=progress, deadline_s=deadline_s)
            return
        except (DownloadError, OSError, http.client.HTTPException) as error:  # URLError, timeouts: OSErrors
            errors.append((url, error))
    if len(errors) == 1:
        error = errors[0][1]
        if isinstance(error, DownloadError):
            raise error
        raise DownloadError(f"could not download {remote.filename} from {errors[0][0]}: {error}") from error
    tried = "; ".join(f"{url}: {error}" for url, error in errors)
    raise DownloadError(f"could not download {remote.filename} from any source ({tried})") from errors[-1][1]


def _download_from(url: str, remote: RemoteFile, *, progress: bool, deadline_s: float | None = None) -> None:
    part = remote.archive.with_name(remote.archive.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    desc = f"{remote.dataset}: {remote.filename}"
    resumed = _http_get(url, part, desc=desc, progress=progress, deadline_s=deadline_s)
    actual = _md5(part)
    if actual != remote.md5 and resumed:
        part.unlink()  # the kept part may be what is wrong: once more from scratch
        _http_get(url, part, desc=desc, progress=progress, deadline_s=deadline_s)
        actual = _md5(part)
    if actual != remote.md5:
        part.unlink()
        raise ChecksumError(remote.archive, url, remote.md5, actual)
    os.replace(part, remote.archive)


def _open_url(url: str, offset: int, timeout: float, timed_out: Callable[[], Exception]) -> Any:
    """The response of a GET of ``url`` (from byte ``offset`` when > 0); None when the server
    answers 416 to that range (the part is whole). HTTP errors raise DownloadError naming them, a
    timeout ``timed_out()``."""
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return None
        raise DownloadError(f"could not download {url}: HTTP {error.code} {error.reason}") from error
    except (TimeoutError, urllib.error.URLError) as error:
        if isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError):
            raise timed_out() from error
        raise


def _http_get(url: str, part: Path, *, desc: str, progress: bool, deadline_s: float | None = None) -> bool:
    """Download ``url`` into ``part``, resuming what ``part`` holds; True when it resumed.

    A partial ``part`` is continued with ``Range: bytes=N-``; a server that answers 200 instead of
    206 (it ignored the range) sends the whole file, which replaces the part. An answer 416 to a
    range request means ``part`` already holds the whole file (the checksum decides). A transfer
    that ends early raises DownloadError and keeps ``part`` for the next call to resume.

    Two limits, read at call time: no byte for ``_TIMEOUT_S`` (each socket operation), and the
    whole transfer past ``deadline_s`` (default ``_DEADLINE_S``; checked between reads, so it is
    overrun by at most one read timeout). Hitting either raises DownloadError naming the limit
    and ``url``, and keeps ``part``.
    """
    from reproduce.files.progress import progress_bar

    timeout = _TIMEOUT_S
    limit = _DEADLINE_S if deadline_s is None else deadline_s
    deadline = time.monotonic() + limit
    offset = part.stat().st_size if part.is_file() else 0
    got = offset

    def stopped(what: str) -> DownloadError:
        kept = f"{got} bytes are kept in {part}; run the fetch again to resume" if got else "nothing was received"
        return DownloadError(f"download of {url} {what}; {kept}")

    def timed_out() -> DownloadError:
        if time.monotonic() >= deadline:
            return stopped(f"did not finish within the overall deadline of {limit:g} s (raise it with deadline_s=...)")
        return stopped(f"stalled: no data within the read timeout of {timeout:g} s")

    response = _open_url(url, offset, max(min(timeout, limit), 0.001), timed_out)
    if response is None:
        return True  # 416 to a range request: the part already holds the whole file
    with response:
        length = response.headers.get("Content-Length")
        size = int(length) if length is not None and length.isdigit() else None
        resuming = offset > 0 and response.status == 206 and _range_start(response.headers) == offset
        if not resuming:
            offset = 0
        total = None if size is None else offset + size
        got = offset
        with open(part, "ab" if resuming else "wb") as handle, progress_bar(
            enabled=progress, total=total, initial=offset, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
            leave=True,
        ) as bar:  # fmt: skip
            while total is None or got < total:
                if time.monotonic() >= deadline:
                    raise timed_out()
                try:
                    chunk = response.read1(_CHUNK)  # what has arrived (read() would wait for a whole chunk)
                except TimeoutError as error:
                    raise timed_out() from error
                if not chunk:
                    break
                handle.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    got = part.stat().st_size
    if total is not None and got != total:
        raise DownloadError(
            f"download of {url} ended after {got} of {total} bytes; run the fetch again to resume from {part}"
        )
    return resuming


def _range_start(headers: Mapping[str, str]) -> int | None:
    """The first byte of a ``Content-Range: bytes N-M/T`` header, or None."""
    value = headers.get("Content-Range", "")
    unit, _, spec = value.partition(" ")
    start = spec.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _remove(path: Path) -> None:
    """Delete ``path`` whatever it is (file, link, folder); nothing when it is not there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _gunzip(source: Path, target: Path) -> None:
    """Uncompress ``source`` to ``target`` through a temporary file renamed into place.

    A temporary file left by an earlier attempt is removed first, and the temporary file is
    removed whenever this fails. A corrupt stream (the download verified, yet it does not
    uncompress) deletes ``source`` too, so that the next call downloads it again rather than
    failing on it again; any other error (a full disk, say) keeps the verified ``source`` for the
    next call to unpack. Both raise DownloadError naming the file and what went wrong.
    """
    tmp = target.with_name(target.name + ".unpacking")
    _remove(tmp)
    try:
        with gzip.open(source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        os.replace(tmp, target)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:  # BadGzipFile is an OSError: caught first
        source.unlink(missing_ok=True)
        raise DownloadError(
            f"could not gunzip {source.name} to {target.name}: the gzip stream is corrupt ({error}) although the "
            f"file has the MD5 it was checked against; {source.name} was deleted, the next fetch downloads it again"
        ) from error
    except OSError as error:
        raise DownloadError(
            f"could not gunzip {source.name} to {target} ({type(error).__name__}: {error}); the verified "
            f"{source.name} is kept, the next fetch unpacks it again"
        ) from error
    finally:
        _remove(tmp)


def _untar_folder(remote: RemoteFile) -> None:
    """Extract the archive's top folder ``remote.target.name`` into place, atomically.

    The archive is extracted into a hidden temporary folder beside the target; its folder is
    checked against the published MD5s (if any) and only then renamed into place (an older,
    failing copy is removed after the new one is in place).
    """
    target = remote.target
    tmp = target.with_name(f".{target.name}.unpacking")
    _remove(tmp)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(remote.archive, "r:*") as archive:
            _safe_extract(archive, tmp)
        unpacked = tmp / target.name
        if not unpacked.is_dir():
            raise DownloadError(f"{remote.archive.name} does not hold the folder {target.name}/")
        for path, md5 in remote.checks:
            actual = _md5(unpacked / path.relative_to(target))
            if actual != md5:
                raise ChecksumError(path, str(remote.archive), md5, str(actual), deleted=False)
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(unpacked, target)
        if old.exists():
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _safe_extract(archive: tarfile.TarFile, folder: Path) -> None:
    """``extractall`` that refuses members escaping ``folder`` (links, absolute paths, ``..``)."""
    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12
        archive.extractall(folder, filter="data")
        return
    for member in archive.getmembers():
        name = Path(member.name)
        if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
            raise DownloadError(f"refusing to extract {member.name!r} from {archive.name}")
    archive.extractall(folder)
