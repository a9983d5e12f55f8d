"""Training runs declared as data, so the same run can be trained inline or as a job of a sweep.

A :class:`RunSpec` says everything one run needs -- model config, training config, which data
(:class:`DataSpec`), what to measure after every epoch and how to initialise -- and where it lives
(:attr:`RunSpec.run_dir`, ``results/<scale>/<experiment>/<label>-<hash of all of it>``). It holds
plain values only (picklable, hashable), so a sweep can send it to another process or machine.

Callbacks and initialisers are declared by name as :class:`Hook` s (a name plus keyword
arguments) and resolved only when the run trains: a callback hook is called as
``fn(data, spec, **kwargs)`` and returns a training callback; an init hook as
``fn(model, **kwargs)`` and changes the freshly built model.

A hook's name is part of the hash that names its run folder, so the package's hooks are
registered under names that never change (:data:`HOOKS`: name -> where the function lives now).
Moving a hook's module changes only the right-hand side of that table, and every run folder keeps
its name. A name that is not in the table is an import path ``"module:function"`` (a user's own
hook): moving that function renames its runs.

Every experiment module declares its runs with a function returning specs (e.g.
:func:`reproduce.experiments.depth_study.run_specs`); its notebook function trains each with
:func:`train_spec`, which returns a finished run at once and resumes an unfinished one.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from reproduce.data.datasets import DataBundle, DatasetIntegrityError, dataset_shape, load_dataset
from reproduce.models.nets import ModelConfig
from reproduce.files.checkpoints import file_is_truncated
from reproduce.files.storage import legacy_field
from reproduce.files.paths import run_dir as _run_dir
from reproduce.training.loop import Callback, RunResult, TrainConfig, load_run, train

__all__ = ["HOOKS", "Hook", "DataSpec", "RunSpec", "train_spec", "run_state", "RUN_STATES", "UnreadableRun"]

#: what :func:`run_state` reports: ``missing`` (no checkpoint), ``running`` (someone holds the
#: folder's lock), ``partial`` (unfinished, nobody training it), ``finished``, ``stopped`` (a
#: callback ended it, e.g. auto-tune found a conflict), ``diverged``
RUN_STATES = ("missing", "running", "partial", "finished", "stopped", "diverged")


#: the package's hooks: stable name -> ``"module:function"`` where the function lives now. The names
#: are frozen (run folders are named by them); the five of round 2 spell the import paths the
#: functions had then, and are names now, not paths.
HOOKS: Mapping[str, str] = MappingProxyType({
    "reproduce.bundles:bundle_callback": "reproduce.metric.bundles:bundle_callback",
    "reproduce.theory:bound_callback": "reproduce.experiments.theory:bound_callback",
    "reproduce.theory:dead_layer_callback": "reproduce.experiments.theory:dead_layer_callback",
    "reproduce.theory:collapse_layer": "reproduce.experiments.theory:collapse_layer",
    "reproduce.lesion:distance_callback": "reproduce.experiments.lesion:distance_callback",
    "reproduce.depth_study:second_batch_callback": "reproduce.experiments.depth_study:second_batch_callback",
    "reproduce.lesion:diagnostics_callback": "reproduce.experiments.lesion:diagnostics_callback",
})


@dataclass(frozen=True)
class Hook:
    """A function named by a name of :data:`HOOKS` or by ``"module:function"``, with keyword
    arguments (``((name, value), ...)``)."""

    target: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if ":" not in self.target:
            raise ValueError(f"a hook target is 'module:function', got {self.target!r}")
        object.__setattr__(self, "kwargs", tuple(sorted((str(k), v) for k, v in dict(self.kwargs).items())))

    @classmethod
    def to(cls, target: str, **kwargs: Any) -> "Hook":
        return cls(target, tuple(kwargs.items()))

    def resolve(self) -> Any:
        """The function: where :data:`HOOKS` says the name lives, else the import path itself."""
        module, name = HOOKS.get(self.target, self.target).split(":", 1)
        return getattr(importlib.import_module(module), name)

    def __call__(self, *args: Any) -> Any:
        return self.resolve()(*args, **dict(self.kwargs))


@dataclass(frozen=True)
class DataSpec:
    """Which data a run trains on: the arguments of :func:`reproduce.data.load_dataset`.

    The shape properties (``num_classes``, ...) need a dataset of :data:`reproduce.data.DATASETS`
    and raise ValueError naming the valid ones otherwise."""

    name: str
    seed: int = 0
    train_limit: int | None = None
    flat: bool = False
    #: None: the published files, verified by their checksums; else the content fingerprint of
    #: unverified files (``load_dataset(..., verify_checksums=False)``), which then name other run
    #: folders than the published data's (left out of the folder hash while None)
    content: str | None = legacy_field(None, None)

    @classmethod
    def of(cls, data: Any, seed: int = 0) -> "DataSpec":
        """The spec of already loaded ``data`` (its ``identity`` when it has one; else its name and
        ``seed``: custom data, which only an inline run can train on)."""
        identity = getattr(data, "identity", None) or {}
        return cls(identity.get("name", data.name), int(identity.get("seed", seed)), identity.get("train_limit"),
                   bool(identity.get("flat", False)), identity.get("content"))

    @property
    def num_classes(self) -> int:
        return dataset_shape(self.name)[0]

    @property
    def in_channels(self) -> int:
        return dataset_shape(self.name)[1]

    @property
    def image_size(self) -> int:
        return dataset_shape(self.name)[2]

    def load(self, root: str | Path | None = None) -> DataBundle:
        """The data, verified: by the published checksums, or (``content`` set) by that fingerprint."""
        data = load_dataset(self.name, root=root, seed=self.seed, flat=self.flat, train_limit=self.train_limit,
                            verify_checksums=self.content is None)
        found = data.identity.get("content")
        if found != self.content:
            raise DatasetIntegrityError(
                f"{self.name} files under {root or 'the default data root'} have content fingerprint {found}, but "
                f"this run was declared on files with fingerprint {self.content}: they changed since")
        return data

    def matches(self, data: Any) -> bool:
        """True when ``data`` (a loaded :class:`DataBundle`) is this data (custom data without an
        identity: when the names agree)."""
        identity = getattr(data, "identity", None) or {}
        if not identity:
            return getattr(data, "name", None) == self.name
        return DataSpec.of(data) == self


@dataclass(frozen=True)
class RunSpec:
    """One training run as plain data (see the module docstring)."""

    scale: str
    experiment: str
    label: str
    model: ModelConfig
    train: TrainConfig
    data: DataSpec
    callbacks: tuple[Hook, ...] = ()
    init: Hook | None = None
    #: extra values that identify the run (e.g. a measurement version); part of the folder hash
    extra: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def run_dir(self) -> Path:
        """``results/<scale>/<experiment>/<label>-<hash>`` (the hash covers every field)."""
        return _run_dir(self.scale, self.experiment, self.label, self.model, self.train, self.data,
                        list(self.callbacks), self.init, dict(self.extra))

    @property
    def key(self) -> str:
        """A unique, readable name of the run: ``<experiment>/<folder name>``."""
        return f"{self.experiment}/{self.run_dir.name}"

    # the job interface a sweep uses (shared with reproduce.experiments.autotune.SearchSpec)

    def state(self) -> str:
        """:func:`run_state` of this run."""
        return run_state(self)

    def run(self, *, device: Any = "auto", progress: bool = True) -> RunResult:
        """:func:`train_spec` of this run (loads its data)."""
        return train_spec(self, device=device, progress=progress)


def train_spec(spec: RunSpec, *, data: DataBundle | None = None, device: Any = "auto", progress: bool = True,
               callbacks: Sequence[Callback] = (), data_root: str | Path | None = None) -> RunResult:
    """Train (or resume, or just load when finished) the run ``spec`` declares.

    ``data`` may pass the already loaded dataset (it must be ``spec.data``); ``callbacks`` are added
    after the declared ones (they are not part of the spec: use them only for what does not change
    the run's result, e.g. logging).
    """
    if data is None:
        data = spec.data.load(data_root)
    elif not spec.data.matches(data):
        raise ValueError(f"data {getattr(data, 'identity', None)} is not the data of run {spec.label} ({spec.data})")
    declared = [hook(data, spec) for hook in spec.callbacks]
    init_fn = (lambda model: spec.init(model)) if spec.init is not None else None
    return train(spec.model, data, spec.train, spec.run_dir, callbacks=[*declared, *callbacks], device=device,
                 progress=progress, desc=spec.label, init_fn=init_fn)


class UnreadableRun(ValueError):
    """A run folder whose files cannot be read as a run (the message names the file and why)."""


def run_state(spec: RunSpec) -> str:
    """One of :data:`RUN_STATES`, read from the run folder without loading the checkpoint and without
    writing anything; :class:`UnreadableRun` when the folder's files are not those of a run."""
    from reproduce.files.storage import lock_is_held

    folder = spec.run_dir
    if lock_is_held(folder / ".lock"):
        return "running"
    checkpoint = folder / "checkpoint.pt"
    if checkpoint.exists() and not checkpoint.is_file():
        raise UnreadableRun(f"{checkpoint} is not a file")
    if not checkpoint.exists() or file_is_truncated(checkpoint):
        return "missing"  # a truncated checkpoint is recomputed: nothing of the run is there
    try:
        summary = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        run = load_run(folder)
        return "missing" if run is None else ("partial" if run.status == "running" else run.status)
    if not isinstance(summary, dict):
        raise UnreadableRun(f"{folder / 'run.json'} holds a JSON {type(summary).__name__}, not an object "
                            "with the run's status")
    state = summary.get("status", "partial")
    return "partial" if state == "running" else state
