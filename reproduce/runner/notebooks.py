"""Run the claim notebooks through papermill: ``python -m reproduce``.

::

    python -m reproduce list
    python -m reproduce run [--scale smoke|cpu|long|gpu|paper] [--seed N] [--jobs N] [--root DIR] [NOTEBOOK ...]
    python -m reproduce data fetch [--root DATA_DIR] [mnist fashion-mnist cifar10 svhn imagenette]
    python -m reproduce data status [--root DATA_DIR]
    python -m reproduce plan   [--scale S] [--assume-steps-per-second X] [NOTEBOOK ...]
    python -m reproduce sweep  [--scale S] [--executor local|slurm] [--jobs N] [--dry-run] [NOTEBOOK ...]
    python -m reproduce status [--scale S] [NOTEBOOK ...]
    python -m reproduce compare [--scale S] [--against REV|DIR] [--tolerance REL]

``list`` prints the notebooks of ``<root>/notebooks`` (files named ``NN_name.ipynb``), one per
line, with the first markdown heading of each as its title.

``run`` executes all of them, or the named ones, in order. A notebook can be named by its stem
(``03_depth_vgg_vs_resnet``), by a unique prefix of the stem (``03``), or by a path to an
``.ipynb`` file. Every name is checked before anything runs. Each notebook gets the parameters
``{"scale": ..., "seed": ...}`` (papermill injects them after the cell tagged ``parameters``),
runs in a ``python3`` kernel whose working directory is the notebook's folder, and is written
executed to ``<root>/results/<scale>/executed/<stem>.ipynb``. A notebook that fails is recorded
and the rest still run; a summary table ends the run, and the exit status is 1 if any failed.

``data fetch`` downloads, verifies and unpacks the named datasets (default: all five) into
``--root`` (default ``$REPRODUCE_DATA``, see :func:`reproduce.data.default_root`); ``data status``
says which of them are present there, missing, or there but not verifying (``data fetch``
repairs those). See :mod:`reproduce.data.fetch`; the exit status is 1 if a dataset failed, 2 for
a bad command line (an unknown dataset, or a data folder that is a file).

``plan``, ``sweep`` and ``status`` are the cluster path (:mod:`reproduce.sweep`): the training
runs the notebooks need, with the hours left on this device; every missing or unfinished run submitted as a
job through submitit (``local`` processes or a ``slurm`` job array; SLURM settings from flags or
``--config FILE``, flags winning); and per notebook, which runs are done, running, queued,
failed (with the log and its last lines), partial, missing or unreadable (with the reason). Exit
status: 0 ok, 1 when a job failed (``sweep``) or a run failed or is unreadable (``status``), 2 for a
bad command line.

``compare`` says what moved between the working tree's ``figures/<scale>/*.csv`` and the
committed ones (or a reference folder): changed verdicts, moved numbers beside their committed
spread over seeds (see :mod:`reproduce.runner.compare`); exit status 0 when nothing moved, 1 otherwise,
2 on bad input.

Choices made here:

* The kernel's environment gets ``MPLBACKEND`` = matplotlib's inline backend (figures go into the
  executed copy as PNG images, no display is needed), ``REPRODUCE_PROGRESS=text`` (text progress
  bars, see :mod:`reproduce.files.progress`) and ``REPRODUCE_SCALE=<scale>``: the notebooks let that variable override their ``scale``
  parameter, so setting it to the requested scale keeps a stray value in the caller's shell
  from silently running another scale than the one the output folder is named after.
* The repository root is :func:`reproduce.files.paths.project_root`, as for the library
  (``$REPRODUCE_ROOT``, else a checkout at or above the working directory, else the checkout
  that holds this package); ``--root`` overrides it. So the runner works from an editable
  install or a checkout without installing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from reproduce.files.progress import PROGRESS_ENV
from reproduce.files.paths import project_root
from reproduce.files.tables import text_table
from reproduce.config.scales import ROOT_ENV, SCALE_ENV, SCALE_NAMES
from reproduce.config.environ import environment
from reproduce.experiments.notebooks import match_stem

__all__ = [
    "RunRecord",
    "find_notebooks",
    "notebook_title",
    "resolve_notebooks",
    "run_notebooks",
    "format_summary",
    "build_parser",
    "main",
]

#: the kernel papermill starts for every notebook
KERNEL_NAME = "python3"
#: matplotlib's backend in the runner's kernels: figures are stored in the executed copy as PNG
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
#: longest failure reason shown in the summary table
_REASON_WIDTH = 70


@dataclass(frozen=True)
class RunRecord:
    """The outcome of one notebook run."""

    notebook: str
    """The notebook's stem, e.g. ``03_depth_vgg_vs_resnet``."""
    ok: bool
    seconds: float
    output: Path
    """Where the executed notebook was written (partially, when the run failed)."""
    reason: str = ""
    """Short reason of a failure; empty when ``ok``."""

    @property
    def status(self) -> str:
        """``ok`` or ``failed: <short reason>``."""
        return "ok" if self.ok else f"failed: {self.reason}"


def find_notebooks(root: Path) -> list[Path]:
    """The notebooks of ``root/notebooks``, sorted by name (``NN_name.ipynb``).

    Only the folder itself is searched (not ``.ipynb_checkpoints`` or other subfolders).
    A missing folder gives an empty list.
    """
    folder = Path(root) / "notebooks"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.ipynb") if p.is_file())


def notebook_title(path: Path) -> str:
    """The text of the first markdown heading of the notebook, or ``""`` if it has none."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.get("cell_type") != "markdown":
            continue
        for line in cell.get("source", "").splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                return stripped.lstrip("#").strip()
    return ""


def resolve_notebooks(names: Sequence[str], available: Sequence[Path]) -> list[Path]:
    """Map each name to a notebook; all of ``available`` when ``names`` is empty.

    A name matches, in this order: a path to an existing ``.ipynb`` file (any name ending in
    ``.ipynb`` or containing a path separator is taken as a path); the exact stem of an available
    notebook; the single available notebook whose stem starts with the name. Repeated
    notebooks are run once, in the order first named. Raises ValueError naming the unknown or
    ambiguous name and the available notebooks.
    """
    if not names:
        return list(available)
    by_stem = {p.stem: p for p in available}
    choices = ", ".join(by_stem) or "(none)"
    resolved: list[Path] = []
    for name in names:
        path = _resolve_one(name, by_stem, choices)
        if path not in resolved:
            resolved.append(path)
    return resolved


def _resolve_one(name: str, by_stem: Mapping[str, Path], choices: str) -> Path:
    if name.endswith(".ipynb") or os.sep in name or "/" in name:
        path = Path(name).expanduser()
        if path.is_file() and path.suffix == ".ipynb":
            resolved = path.resolve()
            # prefer the listed path object when it is one of the available notebooks
            for candidate in by_stem.values():
                if candidate.resolve() == resolved:
                    return candidate
            return resolved
        if path.name == name and path.stem in by_stem:
            # "03_x.ipynb" given without its folder
            return by_stem[path.stem]
        raise ValueError(f"notebook {name!r} not found; available notebooks: {choices}")
    return by_stem[match_stem(name, list(by_stem))]


def _short(text: str, width: int = _REASON_WIDTH) -> str:
    """First non-empty line of ``text``, cut to ``width`` characters."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def _drop_widget_state(executed: Path) -> None:
    """Remove ipywidgets' saved state and views from an executed copy: with the kernel gone they
    show "Error displaying widget: model not found"; their text fallback stays."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    changed = nb.metadata.pop("widgets", None) is not None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                del data["application/vnd.jupyter.widget-view+json"]
                changed = True
    if changed:
        nbformat.write(nb, str(executed))


def _unfinished_cells(executed: Path) -> str:
    """"" when every code cell of the executed notebook ran to completion, else why not.

    papermill does not raise for a cell that ends the kernel's execution quietly (``sys.exit(0)``):
    that cell is marked failed and every later one stays pending.
    """
    import nbformat

    cells = [c for c in nbformat.read(str(executed), as_version=4).cells if c.cell_type == "code"]
    states = [c.metadata.get("papermill", {}).get("status", "completed") for c in cells]
    bad = [i for i, st in enumerate(states) if st != "completed"]
    if not bad:
        return ""
    first = cells[bad[0]]
    errors = [o for o in first.get("outputs", []) if o.get("output_type") == "error"]
    what = f"{errors[0].get('ename')}: {errors[0].get('evalue')}" if errors else states[bad[0]]
    pending = sum(st == "pending" for st in states)
    return _short(f"{pending} cell(s) did not run: code cell {bad[0] + 1} stopped the notebook ({what})")


def run_notebooks(
    paths: Sequence[Path],
    scale: str,
    seed: int,
    out_dir: Path,
    *,
    progress_bar: bool = True,
    root: Path | None = None,
    jobs: int = 1,
    train: Callable[[], None] | None = None,
) -> list[RunRecord]:
    """Execute each notebook with papermill and record how it went.

    Each notebook runs with parameters ``{"scale": scale, "seed": seed}`` in a ``python3``
    kernel started in the notebook's folder, with ``MPLBACKEND`` the inline backend and
    ``REPRODUCE_SCALE=scale`` (and, given ``root``, ``REPRODUCE_ROOT=root``, so results and
    figures land in the same tree as the executed copies) in its environment; the executed copy goes to
    ``out_dir/<stem>.ipynb``. A failing notebook (papermill's execution error or any other
    exception) is recorded as failed and the others run.

    ``jobs > 1`` executes that many notebooks side by side (after ``run --jobs`` trained their
    runs, they only collect them; each kernel computes with the pinned single thread), the notebooks
    that train inline (``reproduce.experiments.notebooks.INLINE_ONLY``) first; the records keep the order of ``paths``.
    Given ``train`` (``run --jobs``: the sweep that trains the other notebooks' runs), the inline
    trainers start first, one after another in a thread of their own, ``train()`` runs beside them,
    and the other notebooks execute once it has returned (their runs are then there). Under the
    ``native`` numerics, kernels side by side get ``cpu_count // jobs`` threads each
    (``REPRODUCE_THREADS``, unless set), as the sweep's processes do.
    """
    if scale not in SCALE_NAMES:
        raise ValueError(f"unknown scale {scale!r}; valid scales are {', '.join(SCALE_NAMES)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # text progress bars: an executed copy keeps their final state, not a widget it cannot show
    env = {"MPLBACKEND": INLINE_BACKEND, SCALE_ENV: scale, PROGRESS_ENV: "text"}
    if root is not None:
        env[ROOT_ENV] = str(Path(root).resolve())
    from reproduce.config import numerics

    share = numerics.side_by_side_threads(jobs) if jobs > 1 else None
    if share is not None and not os.environ.get(numerics.THREADS_ENV):
        # kernels side by side (and beside a sweep) share the cores, as the sweep's processes do
        env[numerics.THREADS_ENV] = str(share)
    paths = [Path(p) for p in paths]

    def one(path: Path) -> RunRecord:
        return _execute(path, out_dir / f"{path.stem}.ipynb", scale, seed, progress_bar=progress_bar and jobs == 1)

    from reproduce.experiments.notebooks import INLINE_ONLY as _INLINE_ONLY

    with environment(env):  # set once for every kernel of the call (threads share os.environ)
        if train is not None:
            inline = [p for p in paths if p.stem in _INLINE_ONLY]
            rest = [p for p in paths if p.stem not in _INLINE_ONLY]
            with ThreadPoolExecutor(max_workers=1) as beside:
                started = [beside.submit(one, p) for p in inline]  # they train what they need themselves
                train()
                done = dict(zip(rest, _side_by_side(one, rest, jobs)))
                done.update(zip(inline, (f.result() for f in started)))
            return [done[path] for path in paths]
        if jobs == 1 or len(paths) < 2:
            return [one(path) for path in paths]
        order = sorted(paths, key=lambda p: p.stem not in _INLINE_ONLY)  # inline trainers first (stable)
        done = dict(zip(order, _side_by_side(one, order, jobs)))
        return [done[path] for path in paths]


def _side_by_side(one: Callable[[Path], RunRecord], paths: Sequence[Path], jobs: int) -> list[RunRecord]:
    """``one`` of each path, ``jobs`` at a time, in the order of ``paths``."""
    if jobs == 1 or len(paths) < 2:
        return [one(path) for path in paths]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, paths))


def _execute(path: Path, output: Path, scale: str, seed: int, *, progress_bar: bool) -> RunRecord:
    """One notebook executed with papermill (the environment is set by the caller)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    print(f"running {path.stem} at scale {scale} ...", flush=True)
    start = time.perf_counter()
    reason = ""
    try:
        # The kernel starts in the notebook's folder (relative paths in a notebook are relative to
        # it), told so through nbclient's resources. papermill's own ``cwd=`` would os.chdir the
        # whole process, which notebooks run side by side (threads) share.
        papermill.execute_notebook(
            str(path.resolve()),
            str(Path(output).resolve()),
            parameters={"scale": scale, "seed": seed},
            kernel_name=KERNEL_NAME,
            progress_bar=progress_bar,
            resources={"metadata": {"path": str(path.parent.resolve())}},
        )
        _drop_widget_state(output)
        reason = _unfinished_cells(output)
    except PapermillExecutionError as err:
        reason = _short(f"{err.ename}: {err.evalue}") + f" (cell {err.exec_count})"
    except Exception as err:  # noqa: BLE001 - one broken notebook must not stop the rest
        reason = _short(f"{type(err).__name__}: {err}")
    seconds = time.perf_counter() - start
    print(f"{path.stem}: {'ok' if not reason else 'failed: ' + reason} after {seconds:.0f} s", flush=True)
    return RunRecord(notebook=path.stem, ok=not reason, seconds=seconds, output=output, reason=reason)


def format_summary(records: Sequence[RunRecord]) -> str:
    """A plain-text table (notebook, status, seconds, output) and a closing count line."""
    rows = [(r.notebook, r.status, f"{r.seconds:.1f}", str(r.output)) for r in records]
    n_ok = sum(r.ok for r in records)
    total = f"{len(records)} notebook(s): {n_ok} ok, {len(records) - n_ok} failed"
    return text_table(("notebook", "status", "seconds", "output"), rows, right=(2,)) + "\n" + total


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m reproduce`` command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root",
        type=Path,
        default=None,
        help="repository root holding notebooks/ and results/ "
        "(default: the folder above the reproduce package)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m reproduce",
        description="Run the notebooks that reproduce the paper's claims.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,run,data,plan,sweep,status,compare,probe}")
    sub.add_parser("list", parents=[common], help="list the notebooks with their titles")
    run = sub.add_parser("run", parents=[common], help="execute notebooks with papermill")
    run.add_argument(
        "--scale",
        choices=SCALE_NAMES,
        default="cpu",
        help="experiment size (default: %(default)s)",
    )
    run.add_argument("--seed", type=_seed, default=0, help="base random seed (default: 0)")
    run.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                     help="first train the notebooks' runs as a local sweep of N processes side by side "
                          "(each one thread under the pinned numerics), then execute N notebooks at a time, "
                          "which only collect them (default: 1, no sweep: the notebooks train inline, one by one)")
    run.add_argument(
        "notebooks",
        nargs="*",
        metavar="NOTEBOOK",
        help="stem, number prefix or path of a notebook (default: all)",
    )
    data = sub.add_parser("data", help="download the paper's datasets, or show which are present")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="{fetch,status}")
    data_root = argparse.ArgumentParser(add_help=False)
    data_root.add_argument(
        "--root", type=Path, default=None, help="data folder (default: $REPRODUCE_DATA or ~/.cache/reproduce/data)"
    )
    fetch = data_sub.add_parser("fetch", parents=[data_root], help="download, verify and unpack datasets")
    fetch.add_argument(
        "names", nargs="*", metavar="NAME", help="mnist, fashion-mnist, cifar10, svhn or imagenette (default: all five)"
    )
    data_sub.add_parser("status", parents=[data_root], help="which datasets are present under the data folder")
    _add_sweep_parsers(sub, common)
    _add_compare_parser(sub, common)
    _add_probe_parser(sub, common)
    return parser


def _add_probe_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``probe`` (see :mod:`reproduce.experiments.probe`; imported when it runs, so that the other
    commands do not import torch to build their parser)."""
    probe = sub.add_parser("probe", parents=[common],
                           help="claim 4 on one residual-50 trained for the paper's steps (for a lent GPU); "
                                "writes figures/gpu-probe/")
    probe.add_argument("--steps", type=_positive_int, default=None,
                       help="optimiser steps (default: the paper's 93,720 = 120 x 781)")
    probe.add_argument("--width", type=_bounded(float, 0, strict=True, what="a width multiplier > 0"),
                       default=None, help="width multiplier of the residual-50 (default: probe.DEFAULT_WIDTH, 0.5)")
    probe.add_argument("--draws", type=_positive_int, default=5, help="random lesions per k (default: %(default)s)")
    probe.add_argument("--train-limit", type=_positive_int, default=None, metavar="N",
                       help="keep only N training images (default: all)")
    probe.add_argument("--data-root", type=Path, default=None,
                       help="data folder holding FashionMNIST/raw (default: $REPRODUCE_DATA or ~/.cache/reproduce/data)")
    probe.add_argument("--no-verify", action="store_true",
                       help="load files without their published MD5s (Debian's re-headered copies), identified by "
                            "their content fingerprint")
    probe.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    probe.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")


def _probe(args: argparse.Namespace) -> int:
    """``probe``: train, lesion, print the claims rows; 0 when it ran, 2 for bad input or missing data."""
    from reproduce.data.datasets import DatasetIntegrityError, DatasetNotFoundError
    from reproduce.experiments.probe import ProbeConfig, run_probe

    if args.root is not None:
        os.environ[ROOT_ENV] = str(args.root)
    given = {k: v for k, v in (("steps", args.steps), ("width", args.width)) if v is not None}
    cfg = ProbeConfig(draws=args.draws, train_limit=args.train_limit, seed=args.seed, verify=not args.no_verify,
                      **given)
    try:
        result, claims = run_probe(cfg, device=args.device, data_root=args.data_root)
    except (DatasetNotFoundError, DatasetIntegrityError, ValueError) as err:
        print(f"python -m reproduce probe: error: {err}", file=sys.stderr)
        return 2
    print(result.describe())
    print(text_table(("claim", "measured", "verdict"), [(c.claim, c.measured, c.verdict) for c in claims]))
    return 0


def _add_compare_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``compare`` (see :mod:`reproduce.runner.compare`)."""
    compare = sub.add_parser("compare", parents=[common],
                             help="what moved between the fresh figures/<scale>/*.csv and the committed ones")
    # validated by reproduce.runner.compare (scales.get_scale), which names the valid scales
    compare.add_argument("--scale", default="cpu", help="the figures/<scale>/ folder (default: %(default)s)")
    compare.add_argument("--against", default=None, metavar="REV|DIR",
                         help="a folder holding the reference CSV files, else a git revision (default: HEAD)")
    compare.add_argument("--tolerance", type=_nonnegative_float, default=0.0, metavar="REL",
                         help="relative tolerance of a number (default: 0, any change counts)")


def _compare(args: argparse.Namespace) -> int:
    """``compare``; returns the exit status (0 nothing moved, 1 something moved, 2 bad input)."""
    from reproduce.runner.compare import CompareError, compare_figures

    try:
        report = compare_figures(args.scale, args.against, args.tolerance, root=args.root)
    except CompareError as err:
        print(f"python -m reproduce compare: error: {err}", file=sys.stderr)
        return 2
    print(report.format())
    return report.exit_status


def _bounded(cast: type, low: float, *, strict: bool, what: str):
    """An argparse type: ``cast(text)`` that must be >= ``low`` (> ``low`` when ``strict``)."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value > low if strict else value >= low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def _seed(text: str) -> int:
    """An argparse type: a seed as :func:`reproduce.config.seeds.check_seeds` takes it."""
    from reproduce.config.seeds import MAX_SEED

    value = _count(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {MAX_SEED} (the data split takes seeds "
                                         f"below 2**32), got {text!r}")
    return value


_positive_int = _bounded(int, 1, strict=False, what="an int >= 1")
_count = _bounded(int, 0, strict=False, what="an int >= 0")
_positive_float = _bounded(float, 0.0, strict=True, what="a number > 0")
_nonnegative_float = _bounded(float, 0.0, strict=False, what="a number >= 0")


#: the flags of ``sweep`` that only the SLURM executor reads (``--config`` holds the same keys)
_SLURM_FLAGS = ("partition", "time", "gpus_per_job", "cpus_per_job", "array_parallelism", "mem", "sbatch")


def _add_sweep_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``plan``, ``sweep`` and ``status`` (see :mod:`reproduce.sweep`)."""
    which = argparse.ArgumentParser(add_help=False)
    which.add_argument("--scale", choices=SCALE_NAMES, default="cpu", help="experiment size (default: %(default)s)")
    which.add_argument("--seed", type=_seed, default=0, help="the notebooks' seed, as for `run` (default: 0)")
    which.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                       help="stem or number prefix of a notebook (default: all)")
    plan = sub.add_parser("plan", parents=[common, which],
                          help="list the training runs the notebooks need, which are done, and the hours left (timed on this device)")
    plan.add_argument("--assume-steps-per-second", type=_positive_float, default=None, metavar="X",
                      help="assume X optimiser steps per second instead of measuring them on this device")
    plan.add_argument("--measure-budget", type=_positive_float, default=60.0, metavar="SECONDS",
                      help="at most this long timing model configs (default: %(default)s)")
    plan.add_argument("--device", default="auto", help="device to time the steps on (default: %(default)s)")
    sweep = sub.add_parser("sweep", parents=[common, which],
                           help="train every missing or unfinished run as its own job (submitit)")
    sweep.add_argument("--executor", choices=("local", "slurm"), default="local",
                       help="local processes or a SLURM cluster (default: %(default)s)")
    sweep.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                       help="local: at most N jobs at a time (default: one per GPU, else 1)")
    sweep.add_argument("--device", default="auto", help="device of the jobs (default: %(default)s)")
    sweep.add_argument("--dry-run", action="store_true", help="only list what would be submitted")
    sweep.add_argument("--wait", action="store_true", help="slurm: wait until every job has ended")
    slurm = sweep.add_argument_group("slurm", "SLURM settings (flags win over --config)")
    slurm.add_argument("--config", type=Path, default=None, metavar="FILE",
                       help="TOML or JSON file with the keys partition, time, gpus_per_job, cpus_per_job, "
                            "array_parallelism, mem, sbatch, signal_delay_s, max_timeouts, setup")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--time", type=_positive_int, default=None, metavar="MINUTES",
                       help="wall-clock limit per job (default 1440; a job out of time is requeued and resumes)")
    slurm.add_argument("--gpus-per-job", type=_count, default=None, metavar="N", help="default 0")
    slurm.add_argument("--cpus-per-job", type=_positive_int, default=None, metavar="N",
                       help="default 1 (also the job's torch threads)")
    slurm.add_argument("--array-parallelism", type=_positive_int, default=None, metavar="N",
                       help="at most N jobs of the array at once (default 64)")
    slurm.add_argument("--mem", default=None, help="memory per job, e.g. 16G")
    slurm.add_argument("--sbatch", action="append", default=None, metavar="KEY=VALUE",
                       help="an extra sbatch option, e.g. account=abc (repeatable)")
    sub.add_parser("status", parents=[common, which],
                   help="per notebook: runs done, running, queued, failed (with logs), partial, missing, unreadable")


def _sweep_commands(args: argparse.Namespace) -> int:
    """``plan`` / ``sweep`` / ``status``; returns the exit status."""
    import reproduce.sweep as sweep

    root = (args.root or project_root()).resolve()

    def usage(message: str) -> int:
        print(f"python -m reproduce {args.command}: error: {message}", file=sys.stderr)
        return 2

    if args.root is not None and not root.is_dir():  # a query must not create it, nor a sweep guess it
        what = "does not exist" if not root.exists() else "is a file"
        return usage(f"--root {args.root} is not a folder (it {what}); name the repository root that holds "
                     f"results/ (or where they should go)")
    try:
        notebooks = sweep.resolve_notebooks(args.notebooks)
        if args.command == "plan":
            report = sweep.plan(args.scale, notebooks, seed=args.seed, root=root, device=args.device,
                                steps_per_second=args.assume_steps_per_second,
                                measure_budget_s=args.measure_budget)
            print(report.format())
            return 0
        if args.command == "status":
            status = sweep.status(args.scale, notebooks, seed=args.seed, root=root)
            print(status.format())
            return 1 if status.failed else 0
        flags = {name: getattr(args, name) for name in _SLURM_FLAGS}
        if args.executor == "local":
            given = [f"--{n.replace('_', '-')}" for n, v in flags.items() if v is not None]
            if args.config is not None:
                given.append("--config")
            if args.wait:
                given.append("--wait")
            if given:
                return usage(f"{', '.join(given)} belong(s) to --executor slurm, not local")
            config = None
        else:
            if args.jobs is not None:
                return usage("--jobs belongs to --executor local; for slurm use --array-parallelism")
            config = sweep.slurm_config(args.config, **flags)
    except ValueError as err:
        return usage(str(err))
    try:
        result = sweep.submit(args.scale, notebooks, executor=args.executor, seed=args.seed, root=root,
                              jobs=args.jobs, slurm=config, device=args.device, dry_run=args.dry_run,
                              echo=lambda line: print(line, flush=True))
    except ValueError as err:
        return usage(str(err))
    except sweep.SweepError as err:
        print(f"python -m reproduce sweep: error: {err}", file=sys.stderr)
        return 1
    if args.wait and result.submitted:
        result.wait()
    print(result.format())
    return 0 if result.ok else 1


def _data(args: argparse.Namespace) -> int:
    """``data fetch`` / ``data status`` (see :mod:`reproduce.data.fetch`); returns the exit status."""
    from reproduce.data import fetch
    from reproduce.data.datasets import default_root as default_data_root

    if args.data_command == "status":
        root = args.root or default_data_root()
        try:
            states = {name: fetch.state(name, args.root) for name in fetch.DATASET_NAMES}
        except NotADirectoryError as err:  # a --root / $REPRODUCE_DATA that is a file: not "all missing"
            print(f"python -m reproduce data status: error: {err}", file=sys.stderr)
            return 2
        print(f"datasets under {root}:")
        for name in fetch.DATASET_NAMES:
            width = max(len(n) for n in fetch.DATASET_NAMES)
            repair = f" (python -m reproduce data fetch {name} repairs it)" if states[name] == "does not verify" else ""
            print(f"  {name:<{width}}  {states[name]}{repair}")
        return 0
    try:
        report = fetch.fetch(args.names or None, args.root)
    except (ValueError, NotADirectoryError) as err:
        print(f"python -m reproduce data fetch: error: {err}", file=sys.stderr)
        return 2
    except fetch.FetchError as err:
        print(err.report)
        failed = ", ".join(result.name for result in err.report.failed)
        print(f"python -m reproduce data fetch: error: could not fetch {failed} (see above)", file=sys.stderr)
        return 1
    print(report)
    return 0


def _train_first(scale: str, stems: Sequence[str], seed: int, root: Path, jobs: int) -> None:
    """``run --jobs N``: the runs the notebooks need, trained as a local sweep of ``jobs`` processes
    before the notebooks execute (identical results: the same specs and run folders, and under the
    pinned numerics every process computes with one thread). A failed job is reported and left to
    the notebook, which trains (and reports) what is missing."""
    import reproduce.sweep as sweep

    stems = [s for s in stems if s in sweep.NOTEBOOKS]
    print(f"training the runs of {len(stems)} notebook(s) with {jobs} local job(s) side by side ...", flush=True)
    try:
        result = sweep.submit(scale, stems, executor="local", seed=seed, root=root, jobs=jobs,
                              echo=lambda line: print(line, flush=True))
    except (ValueError, sweep.SweepError) as err:
        print(f"note: the sweep before the notebooks did not run ({err}); the notebooks train inline", flush=True)
        return
    print(result.format(), flush=True)
    if not result.ok:
        print("note: some sweep jobs failed (above); the notebooks train and report what is missing", flush=True)


def _usage_error(message: str) -> int:
    """Report a bad command line the way argparse does; status 2."""
    print(f"python -m reproduce run: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m reproduce``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "data" and getattr(args, "root", None) is None:
        try:
            project_root()
        except NotADirectoryError as err:  # $REPRODUCE_ROOT names a file
            print(f"python -m reproduce {args.command}: error: {err}", file=sys.stderr)
            return 2
    if args.command == "data":
        return _data(args)
    if args.command in ("plan", "sweep", "status"):
        return _sweep_commands(args)
    if args.command == "compare":
        return _compare(args)
    if args.command == "probe":
        return _probe(args)
    root = (args.root or project_root()).resolve()
    available = find_notebooks(root)

    if args.command == "list":
        width = max((len(p.stem) for p in available), default=0)
        for path in available:
            try:
                title = notebook_title(path)
            except Exception as err:  # noqa: BLE001 - list the rest all the same
                title = f"(unreadable: {_short(str(err), 40)})"
            print(f"{path.stem:<{width}}  {title}".rstrip())
        return 0

    if not available and not args.notebooks:
        return _usage_error(f"no notebooks found in {root / 'notebooks'}")
    try:
        paths = resolve_notebooks(args.notebooks, available)
    except ValueError as err:
        return _usage_error(str(err))

    out_dir = root / "results" / args.scale / "executed"
    train = None
    if args.jobs > 1:
        def train() -> None:
            _train_first(args.scale, [p.stem for p in paths], args.seed, root, args.jobs)
    records = run_notebooks(paths, args.scale, args.seed, out_dir, root=root, jobs=args.jobs, train=train)
    print()
    print(format_summary(records))
    return 0 if all(r.ok for r in records) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
