"""Compare freshly written figure tables with the committed ones: ``python -m reproduce compare``.

After ``make reproduce`` the notebooks have rewritten ``figures/<scale>/*.csv`` in the working
tree. This module says what moved relative to the committed versions::

    python -m reproduce compare [--scale cpu] [--against REV|DIR] [--tolerance REL] [--root DIR]

* ``--scale`` (default ``cpu``) picks ``figures/<scale>/``; an unknown scale is an error that
  names the valid ones.
* ``--against`` is the reference: a folder holding the reference CSV files (an existing folder
  always wins), else a git revision (default ``HEAD``) whose ``figures/<scale>/*.csv`` are read
  with ``git show REV:figures/<scale>/<file>``.
* ``--tolerance REL`` (default 0: any change counts) lets a number move by at most ``REL``
  relative to the larger of the two values (``math.isclose(..., rel_tol=REL)``).
* ``--root`` is the repository root (default :func:`reproduce.files.paths.project_root`).

What is reported, file by file (only the top level ``*.csv`` of the folder):

1. A file that is byte-identical on both sides is ``identical`` (it is not parsed). A file on
   one side only is reported as such.
2. A claims table (``*-claims.csv``, columns ``claim,paper,measured,verdict[,seeds]``): rows are
   matched by their ``claim`` text. A changed ``verdict`` (old -> new); a changed ``measured``
   text, both texts and the numbers inside it that moved; any other changed cell; claims added or
   removed.
3. Any other table: rows are matched by key columns (:func:`key_columns`), then every cell that
   changed is reported as ``file: row key: column: committed -> fresh``; for a number with, when
   the table has a ``seed`` column, the committed spread of that column over the seeds of the
   same configuration (the committed rows whose key equals this row's apart from ``seed``).
   Rows and columns present on one side only are reported.
4. Timing columns (:func:`is_timing_column`, :data:`TIMING_SUBSTRINGS`, :data:`TIMING_NAMES`)
   are ignored everywhere: wall-clock numbers differ between any two runs.

The last line is the summary ``N verdicts changed, M numbers moved in K files; L files
identical`` (M counts the table cells that hold numbers and the numbers that moved inside
``measured`` texts; K every file with any reported difference, including files on one side only;
L the files with none, byte-identical or equal once timing columns are set aside). Exit status
(:attr:`CompareReport.exit_status`): 0 when nothing changed, 1 when anything moved, 2 on bad
input (unknown scale, no figures folder, a revision git does not know, a missing reference
folder, a negative tolerance).

Python API: :func:`compare_figures` returns a :class:`CompareReport`, whose lists hold the
changes and whose :meth:`CompareReport.format` is the text the command prints.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import os
import re
import subprocess
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reproduce.config.scales import get_scale

__all__ = [
    "TIMING_SUBSTRINGS",
    "TIMING_NAMES",
    "CompareError",
    "FileProblem",
    "VerdictChange",
    "MeasuredChange",
    "CellChange",
    "RowChange",
    "ColumnChange",
    "CompareReport",
    "is_timing_column",
    "key_columns",
    "numbers_in",
    "compare_figures",
]

#: a column whose (lower-cased) name contains one of these holds a wall-clock measurement
TIMING_SUBSTRINGS: tuple[str, ...] = ("seconds", "latency", "_ms", "time")
#: a column whose (lower-cased) name is one of these holds a wall-clock measurement
TIMING_NAMES: tuple[str, ...] = ("ms",)
#: the columns of a claims table this module reads specially
CLAIM_KEY, VERDICT, MEASURED = "claim", "verdict", "measured"
#: written between a committed value and a fresh one (ASCII, so any terminal can print it)
ARROW = "->"

_INT = re.compile(r"[-+]?\d+")
_BOOLS = frozenset({"true", "false"})
# a number inside free text: a sign only where it cannot be a hyphen ("fnn-16x4" holds 16 and 4),
# never the tail of a longer number
_NUMBER = re.compile(r"(?:(?<![\w.])[-+])?(?<![\d.])(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


class CompareError(ValueError):
    """Bad input to the comparison (unknown scale, missing folder, unknown revision...)."""


def is_timing_column(name: str) -> bool:
    """Whether a column holds wall-clock times (ignored by the comparison)."""
    lower = name.strip().lower()
    return lower in TIMING_NAMES or any(part in lower for part in TIMING_SUBSTRINGS)


# --------------------------------------------------------------------------- the change records


@dataclass(frozen=True)
class VerdictChange:
    """A claim whose verdict changed."""

    file: str
    claim: str
    committed: str
    fresh: str


@dataclass(frozen=True)
class MeasuredChange:
    """A claim whose ``measured`` text changed; ``numbers`` are the (committed, fresh) numbers that
    moved, as written in the texts (``None`` where a number has no counterpart)."""

    file: str
    claim: str
    committed: str
    fresh: str
    numbers: tuple[tuple[str | None, str | None], ...]


@dataclass(frozen=True)
class CellChange:
    """One cell that changed; ``numeric`` when both sides hold numbers (or one side is empty and
    the other a number). ``spread`` is the committed (min, max, count) of the column over the
    seeds of the row's configuration, when the table has a ``seed`` column."""

    file: str
    key: str
    column: str
    committed: str
    fresh: str
    numeric: bool
    spread: tuple[float, float, int] | None = None


@dataclass(frozen=True)
class RowChange:
    """A row (a claim, for a claims table) present on one side only."""

    file: str
    key: str
    side: str
    """``"committed"`` (removed from the fresh file) or ``"fresh"`` (added)."""


@dataclass(frozen=True)
class ColumnChange:
    """A column present on one side only; ``numbers``: its numeric cells (they count as moved:
    a renamed column's numbers left one side and came to the other)."""

    file: str
    column: str
    side: str
    numbers: int = 0


@dataclass
class FileProblem:
    """A file that cannot be read as the table it claims to be (not UTF-8, a row longer than the
    header): always a difference, never "identical"."""

    file: str
    side: str
    reason: str


@dataclass
class CompareReport:
    """Everything :func:`compare_figures` found; :meth:`format` renders it."""

    scale: str
    fresh: Path
    reference: str
    tolerance: float = 0.0
    files: list[str] = field(default_factory=list)
    """Every file name seen on either side, sorted."""
    identical: list[str] = field(default_factory=list)
    """Files with no reported difference (byte-identical, or equal once timings are ignored)."""
    only_committed: list[str] = field(default_factory=list)
    only_fresh: list[str] = field(default_factory=list)
    verdicts: list[VerdictChange] = field(default_factory=list)
    measured: list[MeasuredChange] = field(default_factory=list)
    cells: list[CellChange] = field(default_factory=list)
    rows: list[RowChange] = field(default_factory=list)
    columns: list[ColumnChange] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    """Per file, remarks that are not changes (e.g. how its rows were matched)."""

    @property
    def numbers_moved(self) -> int:
        """Numeric cells that moved plus numbers that moved inside ``measured`` texts."""
        return (sum(c.numeric for c in self.cells) + sum(len(m.numbers) for m in self.measured)
                + sum(c.numbers for c in self.columns))

    @property
    def changed_files(self) -> list[str]:
        """Files with any reported difference, sorted."""
        names = {c.file for group in (self.verdicts, self.measured, self.cells, self.rows, self.columns,
                                      self.problems) for c in group}
        return sorted(names | set(self.only_committed) | set(self.only_fresh))

    @property
    def changed(self) -> bool:
        return bool(self.changed_files)

    @property
    def exit_status(self) -> int:
        """0 when nothing changed, 1 otherwise."""
        return 1 if self.changed else 0

    def summary(self) -> str:
        return (f"{len(self.verdicts)} verdicts changed, {self.numbers_moved} numbers moved in "
                f"{len(self.changed_files)} files; {len(self.identical)} files identical")

    def format(self) -> str:
        """Plain text: a header, one block of lines per file, the summary line last."""
        tol = "exact" if self.tolerance == 0 else f"relative {self.tolerance:g}"
        out = [
            f"comparing {self.fresh} (fresh) with {self.reference} (committed)",
            f"tolerance: {tol}; timing columns ignored",
            "",
        ]
        for name in self.files:
            out.extend(self._file_lines(name))
        extra = []
        n_rows = len(self.rows)
        n_text = sum(not c.numeric for c in self.cells)
        n_meas = sum(not m.numbers for m in self.measured)
        n_one = len(self.only_committed) + len(self.only_fresh)
        if n_rows:
            extra.append(f"{n_rows} rows on one side only")
        if self.columns:
            extra.append(f"{len(self.columns)} columns on one side only")
        if n_text:
            extra.append(f"{n_text} text cells changed")
        if n_meas:
            extra.append(f"{n_meas} measured texts changed without a number moving")
        if n_one:
            extra.append(f"{n_one} files on one side only")
        unreadable = {p.file for p in self.problems if p.reason.startswith("not UTF-8")}
        if unreadable:
            extra.append(f"{len(unreadable)} files unreadable")
        malformed = {p.file for p in self.problems} - unreadable
        if malformed:
            extra.append(f"{len(malformed)} files with malformed rows")
        out.append("")
        if extra:
            out.append("also: " + ", ".join(extra))
        out.append(self.summary())
        return "\n".join(out)

    def _file_lines(self, name: str) -> list[str]:
        if name in self.only_committed:
            return [f"{name}: only in the committed figures (missing from the fresh ones)"]
        if name in self.only_fresh:
            return [f"{name}: only in the fresh figures (not committed)"]
        notes = self.notes.get(name, [])
        if name in self.identical:
            return [f"{name}: identical" + (f" ({'; '.join(notes)})" if notes else "")]
        lines = [f"{name}:" + (f" ({'; '.join(notes)})" if notes else "")]
        for prob in (p for p in self.problems if p.file == name):
            what = "unreadable" if prob.reason.startswith("not UTF-8") else "malformed"
            lines.append(f"{name}: {what} in the {prob.side} file: {prob.reason}")
        for col in (c for c in self.columns if c.file == name):
            lines.append(f"  column {col.column!r} only in the {col.side} file")
        for v in (v for v in self.verdicts if v.file == name):
            lines.append(f"  verdict: {v.claim}: {v.committed} {ARROW} {v.fresh}")
        for m in (m for m in self.measured if m.file == name):
            lines.append(f"  measured: {m.claim}:")
            lines.append(f"      committed: {m.committed}")
            lines.append(f"      fresh:     {m.fresh}")
            if m.numbers:
                moved = ", ".join(f"{a or '(none)'} {ARROW} {b or '(none)'}" for a, b in m.numbers)
                lines.append(f"      numbers moved: {moved}")
        cells = [c for c in self.cells if c.file == name]
        if cells:
            width = max(len(f"{c.key}: {c.column}:") for c in cells)
            for c in cells:
                where = f"{c.key}: {c.column}:".ljust(width)
                line = f"{name}: {where} {_show(c.committed)} {ARROW} {_show(c.fresh)}"
                if c.spread is not None:
                    low, high, n = c.spread
                    line += f"   (committed seeds {_fmt(low)}..{_fmt(high)}, {n} seed{'s' * (n != 1)})"
                lines.append("  " + line)
        for r in (r for r in self.rows if r.file == name):
            what = "removed: only in the committed file" if r.side == "committed" else "added: only in the fresh file"
            lines.append(f"  row {what}: {r.key}")
        return lines


def _show(text: str) -> str:
    return text if text != "" else "(empty)"


def _fmt(value: float) -> str:
    return f"{value:.6g}"


# --------------------------------------------------------------------------- reading the two sides


class _Side:
    """Where the CSV files of one side come from: ``names()`` and ``read(name) -> bytes``."""

    description: str

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError


class _FolderSide(_Side):
    def __init__(self, folder: Path, description: str | None = None):
        self.folder = folder
        self.description = description or str(folder)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.folder.glob("*.csv") if p.is_file())

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()


class _GitSide(_Side):
    def __init__(self, root: Path, rev: str, rel_folder: str):
        self.root = root
        self.rev = rev
        prefix = _git(root, "rev-parse", "--show-prefix").decode().strip()
        self.folder = f"{prefix}{rel_folder}".rstrip("/") + "/"
        self.description = f"git {rev}:{rel_folder}"
        listing = _git(root, "ls-tree", "-z", "--name-only", "--full-tree", rev, self.folder)
        entries = [e for e in listing.decode("utf-8", "replace").split("\0") if e]
        self._names = sorted(e[len(self.folder):] for e in entries
                             if e.startswith(self.folder) and e.endswith(".csv") and "/" not in e[len(self.folder):])
        if not entries:
            raise CompareError(f"git revision {rev!r} has no {rel_folder}/ folder in {root}; nothing to compare with")

    def names(self) -> list[str]:
        return list(self._names)

    def read(self, name: str) -> bytes:
        return _git(self.root, "show", f"{self.rev}:{self.folder}{name}")


def _git(root: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    except FileNotFoundError:
        raise CompareError("git is not installed; pass --against DIR with the reference CSV files") from None
    if done.returncode != 0:
        raise CompareError(f"git {' '.join(args)} failed in {root}: "
                           f"{done.stderr.decode('utf-8', 'replace').strip()}")
    return done.stdout


def _git_side(root: Path, rev: str, rel_folder: str, named: bool = False) -> _GitSide:
    """The committed side at git revision ``rev``; ``named``: the user named ``rev`` (``--against``),
    which may have been meant as a folder."""
    try:
        subprocess.run(["git", "--version"], capture_output=True, check=True)
    except (FileNotFoundError, subprocess.CalledProcessError):
        raise CompareError("git is not available; pass --against DIR with the reference CSV files") from None
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True)
    if inside.returncode != 0 or inside.stdout.strip() != b"true":
        if named:
            raise CompareError(f"{rev!r} is not an existing folder, and {root} is not inside a git repository, so "
                               f"it cannot be a git revision either; pass --against DIR with the reference CSV files")
        raise CompareError(f"{root} is not inside a git repository, so there is no committed {rel_folder}/ "
                           f"to compare with; pass --against DIR with the reference CSV files")
    known = None if rev.startswith("-") else subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root, capture_output=True)
    if known is None or known.returncode != 0:
        raise CompareError(f"{rev!r} is neither an existing folder nor a git revision known in {root} "
                           f"(try HEAD, a branch, a tag or a commit hash)")
    return _GitSide(root, rev, rel_folder)


# --------------------------------------------------------------------------- parsing the tables


@dataclass
class _Table:
    header: list[str]
    rows: list[dict[str, str]]
    #: what makes the file not the table it claims to be (rows longer than the header)
    problems: list[str] = field(default_factory=list)


class _Unreadable(ValueError):
    """The bytes are not UTF-8 text."""


def _parse(data: bytes) -> _Table:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _Unreadable(f"not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})") from None
    records = list(csv.reader(io.StringIO(text)))
    if not records:
        return _Table([], [])
    header = [h.strip() for h in records[0]]
    rows, problems = [], []
    for line, rec in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in rec):
            continue
        if len(rec) > len(header):
            problems.append(f"line {line} holds {len(rec)} cells, the header {len(header)}")
        rec = list(rec) + [""] * (len(header) - len(rec))
        rows.append({h: rec[i].strip() for i, h in enumerate(header)})
    return _Table(header, rows, problems)


def _kind(value: str) -> str:
    """``empty``, ``int``, ``bool``, ``float`` or ``text``."""
    if value == "":
        return "empty"
    if value.lower() in _BOOLS:
        return "bool"
    if _INT.fullmatch(value):
        return "int"
    try:
        float(value)
    except ValueError:
        return "text"
    return "float"


def _number(value: str) -> float | None:
    if value == "" or value.lower() in _BOOLS:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def key_columns(header: Sequence[str], committed: Sequence[Mapping[str, str]],
                fresh: Sequence[Mapping[str, str]]) -> list[str]:
    """The columns that identify a row of a table, the same for both files.

    Candidates are the columns present in both files that are not timing columns and never hold
    a float on either side (every value is text, an int, a bool or empty): labels, kinds, depths,
    seeds, epochs, k... Taken in file order, candidates are added until every row is unique in
    both files; ``seed`` is always kept when it is a candidate, so that rows differing only in
    seed stay apart. Int or text columns after that point (measured counts, a status) are then
    compared as values rather than used to match rows. The result may leave rows non-unique
    (true duplicates); those are matched in order of appearance.
    """
    candidates = [
        h for h in header
        if not is_timing_column(h)
        and all(_kind(r.get(h, "")) != "float" for r in (*committed, *fresh))
    ]
    chosen: list[str] = []
    for h in candidates:
        if _unique(chosen, committed) and _unique(chosen, fresh) and chosen:
            break
        chosen.append(h)
    if "seed" in candidates and "seed" not in chosen:
        chosen.append("seed")
    return [h for h in header if h in chosen]


def _unique(columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> bool:
    keys = [tuple(r.get(c, "") for c in columns) for r in rows]
    return len(set(keys)) == len(keys)


def _keyed(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> dict[tuple, Mapping[str, str]]:
    """Rows by (key values..., occurrence number): duplicates of a key are told apart by order."""
    seen: Counter = Counter()
    out = {}
    for r in rows:
        base = tuple(r.get(c, "") for c in columns)
        out[(*base, seen[base])] = r
        seen[base] += 1
    return out


def _key_text(columns: Sequence[str], key: tuple, duplicates: bool) -> str:
    if not columns:
        return f"row {key[-1] + 1}"
    text = ", ".join(f"{c}={v}" for c, v in zip(columns, key))
    if duplicates:
        text += f" (occurrence {key[-1] + 1})"
    return text


def _values_differ(a: str, b: str, tolerance: float) -> tuple[bool, bool]:
    """(differ, numeric) for two cells."""
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        if math.isnan(x) and math.isnan(y):
            return False, True
        return not math.isclose(x, y, rel_tol=tolerance, abs_tol=0.0), True
    numeric = (x is not None or a == "") and (y is not None or b == "") and (x is not None or y is not None)
    return a != b, numeric


# --------------------------------------------------------------------------- comparing one file


def numbers_in(text: str) -> list[str]:
    """The numbers written in a free text, in order (``"p = 2.4e-09, n = 14"`` -> ``2.4e-09``, ``14``)."""
    return _NUMBER.findall(text)


def _moved_numbers(old: str, new: str, tolerance: float) -> list[tuple[str | None, str | None]]:
    """The numbers of ``old`` and ``new`` that moved, paired by their place among the words."""

    def tokens(text: str) -> tuple[list[str], list[str | None]]:
        shape: list[str] = []
        nums: list[str | None] = []
        pos = 0
        for m in _NUMBER.finditer(text):
            for word in text[pos:m.start()].split():
                shape.append(word)
                nums.append(None)
            shape.append("#")
            nums.append(m.group())
            pos = m.end()
        for word in text[pos:].split():
            shape.append(word)
            nums.append(None)
        return shape, nums

    shape_a, nums_a = tokens(old)
    shape_b, nums_b = tokens(new)
    moved: list[tuple[str | None, str | None]] = []
    matcher = difflib.SequenceMatcher(a=shape_a, b=shape_b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        olds = [n for n in nums_a[i1:i2] if n is not None]
        news = [n for n in nums_b[j1:j2] if n is not None]
        if op == "equal":
            for a, b in zip(olds, news):
                if _values_differ(a, b, tolerance)[0]:
                    moved.append((a, b))
            continue
        for i in range(max(len(olds), len(news))):
            a = olds[i] if i < len(olds) else None
            b = news[i] if i < len(news) else None
            if a is None or b is None or _values_differ(a, b, tolerance)[0]:
                moved.append((a, b))
    return moved


def _text_changed(old: str, new: str, tolerance: float) -> bool:
    """Whether two measured texts differ beyond the tolerance on their numbers."""
    if old == new:
        return False
    if _NUMBER.sub("#", old).split() != _NUMBER.sub("#", new).split():
        return True
    return any(_values_differ(a, b, tolerance)[0] for a, b in zip(numbers_in(old), numbers_in(new)))


def _compare_columns(report: CompareReport, name: str, old: _Table, new: _Table) -> list[str]:
    """Report columns on one side only; return the shared, non-timing columns in committed order."""
    def numbers(table: _Table, column: str) -> int:
        return sum(_number(r.get(column, "")) is not None for r in table.rows)

    for h in old.header:
        if h not in new.header and not is_timing_column(h):
            report.columns.append(ColumnChange(name, h, "committed", numbers(old, h)))
    for h in new.header:
        if h not in old.header and not is_timing_column(h):
            report.columns.append(ColumnChange(name, h, "fresh", numbers(new, h)))
    return [h for h in old.header if h in new.header and not is_timing_column(h)]


def _compare_claims(report: CompareReport, name: str, old: _Table, new: _Table) -> None:
    shared = _compare_columns(report, name, old, new)
    old_rows, new_rows = _keyed(old.rows, [CLAIM_KEY]), _keyed(new.rows, [CLAIM_KEY])
    dup = any(k[-1] for k in (*old_rows, *new_rows))
    for key, o in old_rows.items():
        label = _key_text([CLAIM_KEY], key, dup).removeprefix(f"{CLAIM_KEY}=")
        n = new_rows.get(key)
        if n is None:
            report.rows.append(RowChange(name, label, "committed"))
            continue
        for col in shared:
            a, b = o.get(col, ""), n.get(col, "")
            if col == CLAIM_KEY or a == b:
                continue
            if col == VERDICT:
                report.verdicts.append(VerdictChange(name, label, a, b))
            elif col == MEASURED:
                if _text_changed(a, b, report.tolerance):
                    report.measured.append(MeasuredChange(name, label, a, b,
                                                          tuple(_moved_numbers(a, b, report.tolerance))))
            else:
                differ, numeric = _values_differ(a, b, report.tolerance)
                if differ:
                    report.cells.append(CellChange(name, label, col, a, b, numeric))
    for key in new_rows:
        if key not in old_rows:
            report.rows.append(RowChange(name, _key_text([CLAIM_KEY], key, dup).removeprefix(f"{CLAIM_KEY}="),
                                         "fresh"))


def _compare_table(report: CompareReport, name: str, old: _Table, new: _Table) -> None:
    shared = _compare_columns(report, name, old, new)
    keys = key_columns(shared, old.rows, new.rows)
    old_rows, new_rows = _keyed(old.rows, keys), _keyed(new.rows, keys)
    dup = any(k[-1] for k in (*old_rows, *new_rows))
    if keys:
        report.notes.setdefault(name, []).append("rows matched by " + ", ".join(keys))
    else:
        report.notes.setdefault(name, []).append("no key columns: rows matched by position")
    seed_groups: dict[tuple, list[Mapping[str, str]]] = defaultdict(list)
    has_seed = "seed" in keys
    if has_seed:
        for r in old.rows:
            seed_groups[tuple(r.get(c, "") for c in keys if c != "seed")].append(r)
    values = [h for h in shared if h not in keys]
    for key, o in old_rows.items():
        n = new_rows.get(key)
        text = _key_text(keys, key, dup)
        if n is None:
            report.rows.append(RowChange(name, text, "committed"))
            continue
        for col in values:
            a, b = o.get(col, ""), n.get(col, "")
            differ, numeric = _values_differ(a, b, report.tolerance)
            if not differ:
                continue
            spread = None
            if has_seed and numeric:
                group = seed_groups[tuple(o.get(c, "") for c in keys if c != "seed")]
                nums = [x for x in (_number(r.get(col, "")) for r in group) if x is not None and math.isfinite(x)]
                if nums:
                    spread = (min(nums), max(nums), len(nums))
            report.cells.append(CellChange(name, text, col, a, b, numeric, spread))
    for key in new_rows:
        if key not in old_rows:
            report.rows.append(RowChange(name, _key_text(keys, key, dup), "fresh"))


def _is_claims(name: str, table: _Table) -> bool:
    return name.endswith("-claims.csv") and CLAIM_KEY in table.header


# --------------------------------------------------------------------------- the entry point


def compare_figures(scale: str, against: str | Path | None = None, tolerance: float = 0.0, *,
                    root: str | Path | None = None) -> CompareReport:
    """Compare ``<root>/figures/<scale>/*.csv`` with a reference; see the module docstring.

    ``against``: ``None`` (the git revision ``HEAD``), a :class:`~pathlib.Path` (a folder holding
    the reference CSV files), or a string: an existing folder, else a git revision.
    ``tolerance``: relative tolerance of a number (0: any change counts).
    Raises :class:`CompareError` (a ValueError) on bad input.
    """
    try:
        scale = get_scale(scale).name
    except ValueError as err:
        raise CompareError(str(err)) from None
    if not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) or tolerance < 0:
        raise CompareError(f"tolerance must be a finite number >= 0 (0 = exact), got {tolerance!r}")
    if root is None:
        from reproduce.files.paths import project_root

        root = project_root()
    root = Path(root).resolve()
    rel_folder = f"figures/{scale}"
    fresh_dir = root / "figures" / scale
    if not fresh_dir.is_dir():
        raise CompareError(f"no figures folder {fresh_dir}: run the notebooks at scale {scale!r} first "
                           f"(make reproduce), or point --root / $REPRODUCE_ROOT at the repository")
    reference = _reference_side(root, against, rel_folder)
    fresh = _FolderSide(fresh_dir)

    report = CompareReport(scale=scale, fresh=fresh_dir, reference=reference.description,
                           tolerance=float(tolerance))
    old_names, new_names = set(reference.names()), set(fresh.names())
    report.files = sorted(old_names | new_names)
    for name in report.files:
        if name not in new_names:
            report.only_committed.append(name)
        elif name not in old_names:
            report.only_fresh.append(name)
        else:
            _compare_file(report, name, reference.read(name), fresh.read(name))
    return report


def _reference_side(root: Path, against: str | Path | None, rel_folder: str) -> "_Side":
    """The reference of :func:`compare_figures`: a folder (a Path, or a string naming an existing
    folder), else the git revision ``against`` (``HEAD`` when None)."""
    if isinstance(against, Path):
        if not against.is_dir():
            raise CompareError(f"reference folder {against} does not exist")
        return _FolderSide(against.resolve())
    if against is not None and os.path.isdir(against):
        return _FolderSide(Path(against).resolve())
    return _git_side(root, "HEAD" if against is None else str(against), rel_folder, named=against is not None)


def _compare_file(report: CompareReport, name: str, old_bytes: bytes, new_bytes: bytes) -> None:
    """Add what differs between the committed and the fresh bytes of file ``name`` to ``report``."""
    if old_bytes == new_bytes:
        report.identical.append(name)
        return
    parsed = []
    for side, data in (("committed", old_bytes), ("fresh", new_bytes)):
        try:
            parsed.append(_parse(data))
        except _Unreadable as err:
            report.problems.append(FileProblem(name, side, str(err)))
            return
    old, new = parsed
    before = _count(report)
    report.problems += [FileProblem(name, "committed", p) for p in old.problems]
    report.problems += [FileProblem(name, "fresh", p) for p in new.problems]
    if _is_claims(name, old) and _is_claims(name, new):
        _compare_claims(report, name, old, new)
    else:
        _compare_table(report, name, old, new)
    if _count(report) == before:
        report.identical.append(name)
        report.notes[name] = ["differs only in timing columns or within tolerance"]


def _count(report: CompareReport) -> int:
    return sum(len(g) for g in (report.verdicts, report.measured, report.cells, report.rows, report.columns,
                                report.problems))
