"""Training: the paper's optimiser, a resumable epoch loop, checkpoints and metrics.

The protocol of the method notes (``docs/method.md#training``): RAdam (lr 1e-3, eps 1e-6, decoupled
weight decay 1e-2) inside Lookahead (sync period 6, slow step 0.5), cross-entropy on logits, a
checkpoint after every epoch.

A run lives in one folder (``results/<scale>/<experiment>/<run>``) holding

* ``checkpoint.pt`` -- model and optimiser state, configs, the whole metrics history, the status;
* ``metrics.jsonl`` -- one JSON record per finished epoch (rewritten from the checkpoint);
* ``run.json``      -- a small summary (status, epochs done, diverged epoch, configs).

All three are written atomically (:mod:`reproduce.files.storage`); the checkpoint is the source of truth
and carries a checksum (:mod:`reproduce.files.checkpoints`). Starting a run whose folder holds a
finished run returns it without training; an unfinished one resumes from its last complete epoch.
A provably truncated checkpoint is reported and the run recomputed; any other unreadable one
(newer format, I/O error, failed checksum) stops with :class:`CheckpointError` and is left alone.
While :func:`train` works on a folder it holds the folder's lock (:func:`run_lock`): a second
trainer gets :class:`RunLockedError` instead of training the same run again. With the lock held,
side files that disagree with the checkpoint (a kill between the writes) are rewritten from it and
temporaries of killed writers are removed.

One loop: :func:`fit` trains any ``nn.Module`` (no files); :func:`train` builds the model from
its config (the package's nets or torchvision's ResNets), or resumes it from the checkpoint
(:func:`_start`), and runs the same loop with the run folder's lock held. Per epoch
:func:`_train_epoch` (the optimiser steps, through one step object: :class:`_SyncStep` by default,
the device-summed :class:`_Step` or the CUDA-graph :class:`_GraphStep`), :func:`_epoch_record`
(evaluation and callbacks) and :meth:`_Run.save` (checkpoint and side files; nothing without a
folder).

Determinism: the model is initialised from ``torch.manual_seed(seed)``; every epoch reseeds the
global RNG and the shuffling generator from ``(seed, epoch)``, so an interrupted-and-resumed run
follows exactly the same path as an uninterrupted one on the CPU.

A non-finite training loss, non-finite weights or batch-norm statistics after an epoch, or
non-finite activations met by a measuring callback end the run with status ``diverged`` and the
epoch at which it happened (an untrainable network is one of the paper's results, not a crash).
Non-finite values in the *training data* are a data error (ValueError), not a divergence.

Numeric environment: a run records the environment it was computed under
(:func:`reproduce.config.numerics.environment` and the device type) in its checkpoint and ``run.json``; a
folder holding a run of another environment is not reused (:class:`NumericsMismatchError` says
what differs), since the same seed gives other numbers there.

Data identity: a run remembers the data it was trained on (``data.identity`` of a
:class:`reproduce.data.DataBundle`; for other data objects a fingerprint of their content,
:func:`data_identity`) and refuses to resume on other data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from reproduce.config import numerics
from reproduce.config.seeds import derive_seed
from reproduce.metric.bundles import NonFiniteActivationError
from reproduce.files.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from reproduce.data.device_data import DeviceSplit, device_bundle
from reproduce.models.nets import ModelConfig, build_model, eval_mode, model_device
from reproduce.models.torchvision import TorchvisionResNet
from reproduce.training.radam import RectifiedAdam
from reproduce.files.progress import progress_bar
from reproduce.files.storage import LEGACY_VALUE, LockHeld, atomic_write_text, exclusive_lock, legacy_field, remove_temporaries

__all__ = [
    "TrainConfig",
    "Lookahead",
    "RunResult",
    "Callback",
    "make_optimizer",
    "Seeding",
    "fit",
    "train",
    "load_run",
    "evaluate",
    "resolve_device",
    "final_test_accuracy",
    "trained_records",
    "data_identity",
    "run_lock",
    "CheckpointError",
    "RunLockedError",
    "NumericsMismatchError",
    "RUN_STATUSES",
]

RUN_STATUSES = ("running", "finished", "diverged", "stopped")

#: ``callback(model, epoch, record)`` after every epoch; may add JSON-serialisable keys to
#: ``record``; setting ``record["stop"] = "<reason>"`` ends the run with status ``stopped``.
Callback = Callable[[nn.Module, int, dict], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (the paper's defaults)."""

    epochs: int
    batch_size: int = 64
    lr: float = 1e-3
    eps: float = 1e-6
    weight_decay: float = 1e-2
    lookahead_k: int = 6
    lookahead_alpha: float = 0.5
    seed: int = 0
    #: also evaluate accuracy/loss on the (unaugmented) training set after every epoch
    eval_train: bool = True
    num_workers: int = 0
    #: hold the datasets on the training device and augment whole batches there
    #: (:mod:`reproduce.data.device_data`: the same distribution, another random stream)
    device_data: bool = False
    #: launch overhead of the training step: None (eager), "reduce-overhead" (``torch.compile`` in
    #: that mode: CUDA graphs of forward and backward on a GPU), "cuda-graph" (forward, backward
    #: and the optimiser step of a full batch captured in one CUDA graph; needs CUDA)
    compile: str | None = None
    #: "float32" (the default, for fidelity: TF32 off on CUDA), "tf32" (TF32 convolutions and
    #: matmuls on CUDA; the CPU computes float32), "bf16-mixed" (forward and loss autocast to bfloat16)
    precision: str = "float32"
    #: leave out the last, smaller batch of every epoch (as the released implementation does)
    drop_last: bool = True
    #: before the first epoch, record epoch 0: the untrained net evaluated and measured (the
    #: callbacks run with ``epoch=0``), so that averages over a run include its start (as released)
    measure_start: bool = True
    #: passes over the training set per epoch: an "epoch" (one record, checkpoint and callback
    #: call) is this many shuffled passes; the ``long`` preset uses it to give digits the
    #: paper's optimiser steps per epoch (CIFAR-10: 781)
    passes: int = 1
    #: the inner optimiser (added in round 4; a config written before it trained with
    #: ``"radam-torch"``): ``"radam-tfa"`` TF-Addons' RectifiedAdam as released
    #: (:class:`reproduce.training.radam.RectifiedAdam`: eps added to the bias-corrected sqrt(v_hat),
    #: rectified when rho_t >= 5), ``"radam-torch"`` ``torch.optim.RAdam`` (eps added to sqrt(v)
    #: before the bias correction, rectified when rho_t > 5)
    optimizer: str = legacy_field("radam-tfa", "radam-torch")

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid choices: {', '.join(OPTIMIZERS)}")
        if isinstance(self.passes, bool) or not isinstance(self.passes, int) or self.passes < 1:
            raise ValueError(f"passes must be an int >= 1, got {self.passes!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.lookahead_k < 1 or not 0 < self.lookahead_alpha <= 1:
            raise ValueError(
                f"lookahead needs k >= 1 and 0 < alpha <= 1, got k={self.lookahead_k}, alpha={self.lookahead_alpha}"
            )
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"unknown compile {self.compile!r}; valid choices: {', '.join(map(repr, COMPILE_MODES))}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; valid choices: {', '.join(PRECISIONS)}")

    def steps_per_epoch(self, train_size: int) -> int:
        """Optimiser steps of one epoch on ``train_size`` training samples: full batches (and the
        last, smaller one unless ``drop_last``), times ``passes``."""
        batches = train_size // self.batch_size if self.drop_last else -(-train_size // self.batch_size)
        return batches * self.passes

    @property
    def fast_step(self) -> bool:
        """True when the steps sum on the device (no host sync per step; :func:`_make_step`)."""
        return self.device_data or self.compile is not None or self.precision == "bf16-mixed"


def _legacy_values(cls: type) -> dict[str, Any]:
    """The legacy values of ``cls``'s fields declared with :func:`reproduce.files.storage.legacy_field`:
    what a config written before such a field existed was trained with."""
    return {f.name: f.metadata[LEGACY_VALUE] for f in dataclasses.fields(cls) if LEGACY_VALUE in f.metadata}


#: the defaults of TrainConfig's fields (a checkpoint written before a field existed had its default) ...
_TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
#: ... except the fields whose default changed to the released setting when they were added: a
#: checkpoint without them was trained with the earlier behaviour
_TRAIN_DEFAULTS.update(drop_last=False, measure_start=False)
_TRAIN_DEFAULTS.update(_legacy_values(TrainConfig))
#: the same for ModelConfig: checkpoints written before these fields used PyTorch's batch norm
#: defaults, He-uniform weights and no conv bias
_MODEL_BEFORE_FIELDS = {"bn_momentum": 0.1, "bn_eps": 1e-5, "init": "he-uniform", "conv_bias": False}

#: the choices of ``TrainConfig.compile``, ``TrainConfig.precision`` and ``TrainConfig.optimizer``
COMPILE_MODES = (None, "reduce-overhead", "cuda-graph")
OPTIMIZERS = ("radam-tfa", "radam-torch")
PRECISIONS = ("float32", "tf32", "bf16-mixed")


class Lookahead:
    """Lookahead (Zhang et al. 2019) around an inner optimiser.

    Every ``k`` inner steps the slow weights move ``alpha`` of the way to the fast weights and the
    fast weights are reset to them (TensorFlow-Addons semantics; slow weights start at the initial
    weights).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 6, alpha: float = 0.5):
        self.optimizer = optimizer
        self.k = k
        self.alpha = alpha
        self.step_count = 0
        self.slow = [p.detach().clone() for g in optimizer.param_groups for p in g["params"]]

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def _params(self) -> Iterator[torch.Tensor]:
        for g in self.optimizer.param_groups:
            yield from g["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        self.optimizer.step()
        self.step_count += 1
        if self.step_count % self.k == 0:
            self.sync()

    @torch.no_grad()
    def sync(self) -> None:
        """Slow weights move ``alpha`` of the way to the fast ones, fast weights are reset to them
        (three multi-tensor operations instead of three per parameter)."""
        params = list(self._params())
        torch._foreach_add_(self.slow, torch._foreach_sub(params, self.slow), alpha=self.alpha)
        torch._foreach_copy_(params, self.slow)

    def state_dict(self) -> dict:
        return {"inner": self.optimizer.state_dict(), "slow": self.slow, "step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["inner"])
        self.step_count = int(state["step_count"])
        with torch.no_grad():
            for slow, saved in zip(self.slow, state["slow"]):
                slow.copy_(saved)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> Lookahead:
    """RAdam with decoupled weight decay inside Lookahead (``docs/method.md#training``): TF-Addons'
    (``cfg.optimizer="radam-tfa"``) or torch's (``"radam-torch"``)."""
    if cfg.optimizer == "radam-tfa":
        inner: torch.optim.Optimizer = RectifiedAdam(model.parameters(), lr=cfg.lr, eps=cfg.eps,
                                                     weight_decay=cfg.weight_decay)
    else:
        inner = torch.optim.RAdam(model.parameters(), lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay,
                                  decoupled_weight_decay=True)
    return Lookahead(inner, k=cfg.lookahead_k, alpha=cfg.lookahead_alpha)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA when present, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class RunResult:
    """The outcome of :func:`train`; ``history`` holds one record per finished epoch."""

    run_dir: Path | None
    status: str
    epochs_done: int
    model: nn.Module
    history: list[dict]
    #: None for :func:`fit` of a module that no config describes
    model_config: AnyModelConfig | None
    train_config: TrainConfig
    diverged_epoch: int | None = None
    stop_reason: str | None = None
    resumed_from: int = 0

    @property
    def test_accuracy(self) -> float:
        """Test accuracy of the last epoch (nan when no epoch finished or the last one diverged)."""
        acc = self.history[-1].get("test_acc") if self.history else None
        return float("nan") if acc is None else float(acc)

    def summary(self) -> dict:
        return {
            "status": self.status,
            "epochs_done": self.epochs_done,
            "diverged_epoch": self.diverged_epoch,
            "stop_reason": self.stop_reason,
            "model_config": None if self.model_config is None else asdict(self.model_config),
            "train_config": asdict(self.train_config),
        }


def trained_records(history: Iterable[dict]) -> list[dict]:
    """The records of trained epochs (``epoch >= 1``), in epoch order: the epoch-0 record of the
    untrained net is left out. ValueError when a record has no ``epoch``."""
    history = list(history)
    missing = [i for i, r in enumerate(history) if "epoch" not in r]
    if missing:
        raise ValueError(f"history records {missing} have no 'epoch' key")
    return sorted((r for r in history if int(r["epoch"]) >= 1), key=lambda r: int(r["epoch"]))


def final_test_accuracy(history: Sequence[dict], last: int) -> float:
    """Mean test accuracy over the last ``last`` trained epochs (:func:`trained_records`: the epoch-0
    record of the untrained net never counts), nan when there is none."""
    accs = [r["test_acc"] for r in trained_records(history) if r.get("test_acc") is not None][-max(1, last):]
    return float(sum(accs) / len(accs)) if accs else float("nan")


# --------------------------------------------------------------------------------------------
# data iteration


@dataclass(frozen=True)
class Seeding:
    """How an epoch's randomness comes from ``(seed, epoch)``: the :mod:`reproduce.config.seeds`
    ``stream`` of its seed, and how the shuffled order is drawn from the generator seeded with it
    (``order``): ``"randperm"`` (one ``torch.randperm``; the package's runs) or ``"dataloader"``
    (through ``torch.utils.data.DataLoader``, which first draws a worker base seed from the same
    generator, so the order differs; the prune study's runs were trained so from the start)."""

    stream: str = "epoch"
    order: str = "randperm"

    def __post_init__(self) -> None:
        derive_seed(0, 0, self.stream)  # names the valid streams when it is not one
        if self.order not in ("randperm", "dataloader"):
            raise ValueError(f"order must be 'randperm' or 'dataloader', got {self.order!r}")


def _batches(ds: Dataset, batch_size: int, *, shuffle: bool, generator: torch.Generator | None,
             device: torch.device, num_workers: int = 0, drop_last: bool = False, order: str = "randperm"
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``ds`` on ``device``; a fast in-memory path for TensorDatasets (unless ``order``
    is ``"dataloader"``, :class:`Seeding`). ``drop_last`` leaves out the last batch when it is
    smaller than ``batch_size``."""
    if drop_last and len(ds) < batch_size:
        raise ValueError(f"the training set holds {len(ds)} samples, fewer than one batch of {batch_size}: with "
                         f"drop_last=True an epoch would take no step; use a smaller batch_size or drop_last=False")
    if isinstance(ds, DeviceSplit):  # held on a device, augmented there a batch at a time
        yield from ds.batches(batch_size, shuffle=shuffle, generator=generator, device=device, drop_last=drop_last)
        return
    if isinstance(ds, TensorDataset) and order == "randperm":
        x, y = ds.tensors[0], ds.tensors[1]
        n = len(x)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n - batch_size + 1 if drop_last else n, batch_size):
            idx = order[start:start + batch_size]
            yield x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
        return
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last,
                        num_workers=num_workers, pin_memory=device.type == "cuda")
    for xb, yb in loader:
        yield xb.to(device, non_blocking=True), torch.as_tensor(yb).to(device, non_blocking=True)


def evaluate(model: nn.Module, ds: Dataset, *, batch_size: int = 256, device: torch.device | None = None,
             num_workers: int = 0) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` on ``ds`` under :func:`eval_mode`, per target: a
    sample's label, or each position of a sequence target ``[B, T]`` (logits ``[B, C, T]``, the
    K-dimensional form of ``F.cross_entropy``; a language model's next tokens)."""
    device = device or model_device(model)
    total, loss_sum, correct = 0, 0.0, 0
    with eval_mode(model):
        for xb, yb in _batches(ds, batch_size, shuffle=False, generator=None, device=device,
                               num_workers=num_workers):
            logits = model(xb)
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
            total += yb.numel()
    if total == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return loss_sum / total, correct / total


# --------------------------------------------------------------------------------------------
# checkpoints


class RunLockedError(RuntimeError):
    """Another process is training the run in this folder."""


class NumericsMismatchError(ValueError):
    """The run folder holds a run computed under another numeric environment (threads, CPU kernels,
    torch version, device; :func:`reproduce.config.numerics.differences`)."""


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the lock of the run folder ``run_dir`` (``<run_dir>/.lock``) for the ``with`` block.

    :class:`RunLockedError` when another process holds it for more than 2 seconds (a status probe
    holds it for microseconds); a killed holder's lock is gone with its process.
    """
    try:
        with exclusive_lock(Path(run_dir) / ".lock", wait=2.0):
            yield
    except LockHeld as exc:
        raise RunLockedError(f"run folder {run_dir} is being trained by another process ({exc}); "
                             f"wait for it, or stop it first") from None


def data_identity(data: Any) -> dict:
    """What a run remembers of its data: ``data.identity`` when the data object has one, else its
    name and a fingerprint (sha256 of the tensors of ``TensorDataset`` splits; of the length and
    the first, middle and last samples of other splits)."""
    identity = getattr(data, "identity", None)
    name = getattr(data, "name", type(data).__name__)
    if identity:
        return dict(identity)
    h = hashlib.sha256()
    for split in ("train", "train_eval", "test"):
        ds = getattr(data, split, None)
        if ds is None:
            continue
        h.update(f"{split}:{len(ds)};".encode())
        if isinstance(ds, TensorDataset):
            items = ds.tensors
        else:
            items = [torch.as_tensor(v) for i in sorted({0, len(ds) // 2, len(ds) - 1}) if len(ds)
                     for v in ds[i]]
        for t in items:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return {"name": name, "fingerprint": h.hexdigest()[:16]}


#: what ``train`` builds a model from: the package's nets or torchvision's ResNets
AnyModelConfig = ModelConfig | TorchvisionResNet


def _build(config: AnyModelConfig) -> nn.Module:
    return config.build() if isinstance(config, TorchvisionResNet) else build_model(config)


def _model_config_from_dict(d: dict) -> AnyModelConfig:
    if d.get("kind") == "torchvision":
        return TorchvisionResNet(**d)
    d = {**(_MODEL_BEFORE_FIELDS if d.get("kind") != "fnn" else {}), **_legacy_values(ModelConfig), **d}
    d["blocks"] = tuple(d.get("blocks", ()))
    d["removed"] = tuple(d.get("removed", ()))
    return ModelConfig(**d)


def _train_config_from_dict(d: dict) -> TrainConfig:
    return TrainConfig(**{**_TRAIN_DEFAULTS, **d})


def load_run(run_dir: str | Path, device: str | torch.device | None = "cpu") -> RunResult | None:
    """Load the run stored in ``run_dir`` (any status); None when there is none (or only a
    truncated checkpoint); :class:`CheckpointError` when its checkpoint cannot be used."""
    run_dir = Path(run_dir)
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    if ckpt is None:
        return None
    mcfg = _model_config_from_dict(ckpt["model_config"])
    tcfg = _train_config_from_dict(ckpt["train_config"])
    model = _build(mcfg)
    model.load_state_dict(ckpt["model"])
    model.to(resolve_device(device))
    return RunResult(run_dir, ckpt["status"], int(ckpt["epoch"]), model, list(ckpt["history"]), mcfg, tcfg,
                     ckpt.get("diverged_epoch"), ckpt.get("stop_reason"), int(ckpt["epoch"]))


def _side_files(state: dict) -> dict[str, str]:
    """``metrics.jsonl`` and ``run.json`` as derived from a checkpoint's state."""
    summary = {"status": state["status"], "epochs_done": state["epoch"], "diverged_epoch": state["diverged_epoch"],
               "stop_reason": state["stop_reason"], "data": state["data"], "model_config": state["model_config"],
               "train_config": state["train_config"], "numerics": state.get("numerics")}
    return {"metrics.jsonl": "".join(json.dumps(r) + "\n" for r in state["history"]),
            "run.json": json.dumps(summary, indent=2) + "\n"}


def _write_side_files(run_dir: Path, state: dict, *, only_if_different: bool = False) -> None:
    for name, text in _side_files(state).items():
        path = run_dir / name
        if only_if_different:
            try:
                if path.read_text() == text:
                    continue
            except (OSError, UnicodeDecodeError):
                pass
        atomic_write_text(path, text)


def _json_plain(obj: Any) -> Any:
    """``json.dumps`` default: numpy scalars and arrays as plain Python values (tensors are refused:
    a record holds numbers, not device memory)."""
    import numpy as np

    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return obj


# --------------------------------------------------------------------------------------------
# the loop


@dataclass
class _Run:
    """What the loop carries from one epoch to the next (and what a checkpoint stores)."""

    run_dir: Path | None
    model: nn.Module
    opt: Lookahead
    mcfg: AnyModelConfig | None
    tcfg: TrainConfig
    data_name: str
    data_identity: dict
    history: list[dict]
    epoch: int = 0
    status: str = "running"
    diverged_epoch: int | None = None
    stop_reason: str | None = None
    resumed_from: int = 0
    #: the fast path's training step (:func:`_make_step`), built at the first epoch of this call
    step: Any = None
    #: the numeric environment the run is computed under (:func:`reproduce.config.numerics.environment`
    #: and the device), stored in the checkpoint and ``run.json``
    numerics: dict | None = None
    #: how the epochs' randomness is drawn (:class:`Seeding`)
    seeding: Seeding = Seeding()

    def result(self) -> RunResult:
        return RunResult(self.run_dir, self.status, self.epoch, self.model, self.history, self.mcfg, self.tcfg,
                         self.diverged_epoch, self.stop_reason, self.resumed_from)

    def state(self) -> dict:
        """What the checkpoint stores."""
        return {
            "model_config": asdict(self.mcfg),
            "train_config": asdict(self.tcfg),
            "data": self.data_name,
            "data_identity": self.data_identity,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": _to_cpu(self.opt.state_dict()),
            "history": self.history,
            "status": self.status,
            "epoch": self.epoch,
            "diverged_epoch": self.diverged_epoch,
            "stop_reason": self.stop_reason,
            "numerics": self.numerics,
        }

    def save(self) -> None:
        """The checkpoint first (the source of truth), then the side files derived from it."""
        if self.run_dir is not None:
            state = self.state()
            save_checkpoint(self.run_dir / "checkpoint.pt", state)
            _write_side_files(self.run_dir, state)


def _check_same_run(ckpt: dict, run: _Run) -> None:
    """ValueError when the checkpoint in the run folder holds another configuration or other data."""
    mcfg, tcfg = asdict(run.mcfg), asdict(run.tcfg)
    # a field added after the checkpoint was written has its default there (the behaviour it had)
    saved_m = asdict(_model_config_from_dict(ckpt["model_config"]))
    saved_t = {**_TRAIN_DEFAULTS, **ckpt["train_config"]}
    # checkpoints written before data identities were stored are compared by name only
    saved_id = ckpt.get("data_identity", {"name": ckpt.get("data")})
    same_data = saved_id == (run.data_identity if "data_identity" in ckpt else {"name": run.data_name})
    if saved_m == mcfg and saved_t == tcfg and same_data:
        diffs = numerics.differences(ckpt.get("numerics"), run.numerics or {})
        if diffs:
            raise NumericsMismatchError(
                f"run folder {run.run_dir} was computed under another numeric environment ({'; '.join(diffs)}); "
                f"its numbers are not what this machine computes, so it is not reused: delete the folder to "
                f"recompute it here, or restore that environment (see reproduce/config/numerics.py)")
        return
    diff = [k for k in mcfg if saved_m.get(k) != mcfg[k]] + [k for k in tcfg if saved_t.get(k) != tcfg[k]]
    if not same_data:
        diff.append(f"data {saved_id} != {run.data_identity}")
    raise ValueError(f"run folder {run.run_dir} holds a run with a different configuration (differs in: "
                     f"{', '.join(diff)}); use another folder or delete it")


def _start(mcfg: AnyModelConfig, data: Any, tcfg: TrainConfig, run_dir: Path | None, dev: torch.device,
           init_fn: Callable[[nn.Module], None] | None, seeding: Seeding) -> _Run:
    """A freshly initialised run, or the run stored in ``run_dir`` resumed from its checkpoint."""
    torch.manual_seed(tcfg.seed)
    model = _build(mcfg)
    if init_fn is not None:
        init_fn(model)
    model = model.to(dev)
    data_name = getattr(data, "name", type(data).__name__)
    run = _Run(run_dir, model, make_optimizer(model, tcfg), mcfg, tcfg, data_name, data_identity(data), [],
               numerics={**numerics.environment(), "device": dev.type}, seeding=seeding)
    ckpt = load_checkpoint(run_dir / "checkpoint.pt") if run_dir else None
    if ckpt is not None:
        _check_same_run(ckpt, run)
        _write_side_files(run_dir, ckpt, only_if_different=True)  # a kill between the writes
        model.load_state_dict(ckpt["model"])
        run.opt.load_state_dict(ckpt["optimizer"])
        run.history = list(ckpt["history"])
        run.epoch, run.status = int(ckpt["epoch"]), ckpt["status"]
        run.diverged_epoch, run.stop_reason = ckpt.get("diverged_epoch"), ckpt.get("stop_reason")
    run.resumed_from = run.epoch
    return run


def _begin_epoch(run: _Run) -> tuple[int, torch.Generator]:
    """The next epoch's number and shuffling generator; the global RNG reseeded from (seed, epoch)."""
    epoch = run.epoch + 1
    seed = derive_seed(run.tcfg.seed, epoch, run.seeding.stream)
    torch.manual_seed(seed)
    run.model.train()
    return epoch, torch.Generator().manual_seed(seed)


def _end_epoch(run: _Run, epoch: int, n_seen: int, loss_sum: float, correct: float) -> dict[str, Any] | None:
    """The running loss/accuracy of the epoch, or None when weights or batch-norm statistics are non-finite."""
    if not all(bool(torch.isfinite(t).all()) for t in (*run.model.parameters(), *run.model.buffers())
               if t.is_floating_point()):
        return None
    return {"epoch": epoch, "train_loss_running": loss_sum / max(n_seen, 1),
            "train_acc_running": correct / max(n_seen, 1)}


def _data_error(epoch: int) -> str:
    return (f"the training data hold non-finite values (NaN or inf) in epoch {epoch}: a data error, not a "
            f"divergence of the network; clean the data")


def _epoch_batches(tcfg: TrainConfig, train_set: Dataset, gen: torch.Generator, dev: torch.device, order: str
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The training batches of one epoch: ``tcfg.passes`` shuffled passes, all drawn from the
    epoch's generator (so an epoch is determined by ``(seed, epoch)``, whatever ``passes`` is)."""
    for _ in range(tcfg.passes):
        yield from _batches(train_set, tcfg.batch_size, shuffle=True, generator=gen, device=dev,
                            num_workers=tcfg.num_workers, drop_last=tcfg.drop_last, order=order)


def _train_epoch(run: _Run, train_set: Dataset, dev: torch.device) -> dict[str, Any] | None:
    """One epoch of optimiser steps through the run's step object (:func:`_make_step`); the
    running loss/accuracy, or None when the run diverged.

    The default step (:class:`_SyncStep`) reads the loss after every forward and ends the epoch at
    a non-finite one, before that step is taken; the others (``TrainConfig.fast_step``) sum on the
    device and are read once at the end of the epoch, so a non-finite loss is seen there (the run
    is then marked diverged at this epoch, with its weights after the whole epoch). Non-finite
    inputs behind a non-finite loss are a data error (ValueError).
    """
    epoch, gen = _begin_epoch(run)
    if run.step is None:
        run.step = _make_step(run, dev)
    step = run.step
    n_seen, finite = 0, True
    for xb, yb in _epoch_batches(run.tcfg, train_set, gen, dev, run.seeding.order):
        if step(xb, yb) is False:
            finite = False
            break
        n_seen += yb.numel()
    loss_sum, correct, bad_inputs = step.totals()
    if not finite or not math.isfinite(loss_sum):
        if bad_inputs:
            raise ValueError(_data_error(epoch))
        return None
    return _end_epoch(run, epoch, n_seen, loss_sum, correct)


def _autocast(dev: torch.device, dtype: torch.dtype | None, **kw: Any) -> contextlib.AbstractContextManager:
    return torch.autocast(dev.type, dtype=dtype, **kw) if dtype is not None else contextlib.nullcontext()


class _Step:
    """One optimiser step on a batch ``(x, y)``: forward (through ``forward``: the model or its
    compiled form) and loss under the run's precision, backward, RAdam, Lookahead; the loss sum,
    correct count and a non-finite-input flag are summed on the device (:meth:`totals`)."""

    def __init__(self, model: nn.Module, opt: Lookahead, forward: Callable, dev: torch.device,
                 dtype: torch.dtype | None):
        self.model, self.opt, self.forward, self.dev, self.dtype = model, opt, forward, dev, dtype
        self.sums = torch.zeros(3, dtype=torch.float64, device=dev)

    def _accumulate(self, loss: torch.Tensor, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        self.sums += torch.stack([loss.detach().double() * y.numel(), (logits.argmax(1) == y).sum().double(),
                                  (~torch.isfinite(x)).any().double()])

    def _after_inner_step(self) -> None:
        self.opt.step_count += 1
        if self.opt.step_count % self.opt.k == 0:
            self.opt.sync()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, set_to_none: bool = True) -> None:
        with _autocast(self.dev, self.dtype):
            logits = self.forward(x)
            loss = F.cross_entropy(logits, y)
        self.opt.zero_grad(set_to_none=set_to_none)
        loss.backward()
        self.opt.optimizer.step()
        self._after_inner_step()
        self._accumulate(loss, logits, x, y)

    def totals(self) -> tuple[float, float, float]:
        """``(loss sum, correct, non-finite inputs seen)`` since the last call (one host sync)."""
        out = self.sums.tolist()
        self.sums.zero_()
        return out[0], out[1], out[2]


class _SyncStep(_Step):
    """:class:`_Step` with the loss read on the host after every forward (the default step): a
    non-finite loss ends the epoch before its optimiser step (``__call__`` returns False), and the
    sums are Python numbers."""

    def __init__(self, model: nn.Module, opt: Lookahead, dev: torch.device):
        super().__init__(model, opt, model, dev, None)
        self.loss_sum, self.correct, self.bad_inputs = 0.0, 0, False

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, set_to_none: bool = True) -> bool:
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            self.bad_inputs = not bool(torch.isfinite(x).all())
            return False
        self.opt.zero_grad(set_to_none=set_to_none)
        loss.backward()
        self.opt.step()
        self.loss_sum += loss.item() * y.numel()
        self.correct += (logits.argmax(1) == y).sum().item()
        return True

    def totals(self) -> tuple[float, float, float]:
        out = self.loss_sum, self.correct, float(self.bad_inputs)
        self.loss_sum, self.correct, self.bad_inputs = 0.0, 0, False
        return out


class _GraphStep(_Step):
    """:class:`_Step` of a full batch replayed from one CUDA graph (``compile="cuda-graph"``).

    At the first batch, RAdam is made capturable (its step counters move to the GPU), three
    warm-up steps run on a side stream, forward + backward + RAdam + the sums are captured, and
    the weights, batch-norm statistics and optimiser state the warm-up changed are put back (a
    fresh RAdam state is all zeros). A batch of another size (the last one of an epoch) runs
    eagerly on the same tensors. Lookahead's sync runs outside the graph every ``k`` steps.
    """

    def __init__(self, model: nn.Module, opt: Lookahead, dev: torch.device, dtype: torch.dtype | None):
        if dev.type != "cuda":
            raise ValueError(f"compile='cuda-graph' captures CUDA graphs and needs a CUDA device, got {dev}; "
                             f"use compile=None or 'reduce-overhead' there")
        super().__init__(model, opt, model, dev, dtype)
        self.graph: torch.cuda.CUDAGraph | None = None

    def _body(self) -> None:
        with _autocast(self.dev, self.dtype, cache_enabled=False):
            logits = self.model(self.x)
            loss = F.cross_entropy(logits, self.y)
        loss.backward()
        self.opt.optimizer.step()
        self._accumulate(loss, logits, self.x, self.y)

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        inner = self.opt.optimizer
        for group in inner.param_groups:
            group["capturable"] = True
        for state in inner.state.values():
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(self.dev, torch.float32)
        self.x, self.y = x.clone(), y.clone()
        weights = list(self.model.state_dict().values())
        saved_weights = [t.clone() for t in weights]
        saved_state = {p: {k: v.clone() for k, v in st.items() if torch.is_tensor(v)} for p, st in inner.state.items()}
        side = torch.cuda.Stream(self.dev)
        side.wait_stream(torch.cuda.current_stream(self.dev))
        with torch.cuda.stream(side), warnings.catch_warnings():
            # RAdam warns once that a capturable instance steps uncaptured: the warm-up (and the
            # last, smaller batch of an epoch) does so on purpose
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            for _ in range(3):
                inner.zero_grad(set_to_none=True)
                self._body()
        torch.cuda.current_stream(self.dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        inner.zero_grad(set_to_none=True)
        # thread_local: a DataLoader's pin-memory thread may use CUDA meanwhile
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self._body()
        with torch.no_grad():
            for t, saved in zip(weights, saved_weights):
                t.copy_(saved)
            for p, st in inner.state.items():
                before = saved_state.get(p)
                if before is None and not set(st) <= {"step", "exp_avg", "exp_avg_sq"}:
                    raise RuntimeError(f"cannot reset the optimiser state {sorted(st)} after the CUDA-graph warm-up")
                for k, v in st.items():
                    if torch.is_tensor(v):
                        v.zero_() if before is None else v.copy_(before[k])
        self.sums.zero_()
        self.graph = graph

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, set_to_none: bool = True) -> None:
        if self.graph is None:
            self._capture(x, y)
        if x.shape != self.x.shape or y.shape != self.y.shape:
            super().__call__(x, y, set_to_none=False)  # keep the graph's gradient tensors
            return
        self.x.copy_(x, non_blocking=True)
        self.y.copy_(y, non_blocking=True)
        self.graph.replay()
        self._after_inner_step()


def _make_step(run: _Run, dev: torch.device) -> _Step:
    """The training step of ``run.tcfg``: :class:`_SyncStep` by default, else (``fast_step``) the
    device-summed :class:`_Step` or, for ``compile="cuda-graph"``, :class:`_GraphStep`."""
    tcfg = run.tcfg
    if not tcfg.fast_step:
        return _SyncStep(run.model, run.opt, dev)
    dtype = torch.bfloat16 if tcfg.precision == "bf16-mixed" else None
    if tcfg.compile == "cuda-graph":
        return _GraphStep(run.model, run.opt, dev, dtype)
    forward = run.model
    if tcfg.compile == "reduce-overhead":
        numerics.compile_deterministic()
        forward = torch.compile(run.model, mode="reduce-overhead")
    return _Step(run.model, run.opt, forward, dev, dtype)


@contextlib.contextmanager
def _precision(tcfg: TrainConfig, dev: torch.device) -> Iterator[None]:
    """TF32 on CUDA as ``tcfg.precision`` says (on only for "tf32"), set explicitly for the whole
    call and restored afterwards; nothing to set on other devices."""
    if dev.type != "cuda":
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = tcfg.precision == "tf32"
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def _epoch_record(run: _Run, record: dict[str, Any], data: Any, dev: torch.device,
                  callbacks: Sequence[Callback]) -> dict[str, Any]:
    """The epoch's record: evaluation on the (unaugmented) training and test sets, then callbacks."""
    tcfg = run.tcfg
    if tcfg.eval_train:
        record["train_loss"], record["train_acc"] = evaluate(run.model, data.train_eval, device=dev,
                                                             num_workers=tcfg.num_workers)
    record["test_loss"], record["test_acc"] = evaluate(run.model, data.test, device=dev,
                                                       num_workers=tcfg.num_workers)
    for cb in callbacks:
        cb(run.model, record["epoch"], record)
    # one JSON round trip: numpy scalars and arrays become plain numbers and lists
    # (torch.load(weights_only=True) would reject them on resume) and a value JSON cannot hold fails
    # here, at the epoch that made it
    return json.loads(json.dumps(record, default=_json_plain))


def _device_for(train_config: TrainConfig, device: str | torch.device | None) -> torch.device:
    dev = resolve_device(device)
    if train_config.compile == "cuda-graph" and dev.type != "cuda":
        raise ValueError(f"compile='cuda-graph' captures CUDA graphs and needs a CUDA device, got {dev}; use "
                         f"compile=None or 'reduce-overhead' there")
    return dev


def _fit(run: _Run, data: Any, dev: torch.device, callbacks: Sequence[Callback], stop_after: int | None, *,
         progress: bool, desc: str) -> None:
    """The epochs still to train of ``run`` (to ``epochs``, or ``stop_after`` in total)."""
    tcfg = run.tcfg
    if run.status == "running" and run.epoch >= tcfg.epochs:
        run.status = "finished"
    if run.status == "running":
        last = tcfg.epochs if stop_after is None else min(tcfg.epochs, stop_after)
        loop_data = device_bundle(data, dev) if tcfg.device_data else data
        _run_epochs(run, loop_data, dev, callbacks, last, progress=progress, desc=desc)


def fit(
    model: nn.Module,
    data: Any,
    train_config: TrainConfig,
    callbacks: Sequence[Callback] = (),
    *,
    device: str | torch.device | None = "auto",
    progress: bool = True,
    desc: str | None = None,
    stop_after: int | None = None,
    seeding: Seeding = Seeding(),
) -> RunResult:
    """Train any ``model`` in place on ``data`` (train/train_eval/test splits, e.g. a
    :class:`reproduce.data.DataBundle`) for ``train_config.epochs`` epochs: the loop of the package.

    Each epoch: shuffled batches seeded by ``(train_config.seed, epoch)`` as ``seeding`` says
    (:class:`Seeding`; the global RNG reseeded from the same seed), the optimiser of :func:`make_optimizer`, then the epoch's record (evaluation and
    ``callbacks``, see :data:`Callback`), a progress bar over the epochs. A non-finite loss,
    weights or statistics end it as ``diverged``; a callback's ``record["stop"]`` as ``stopped``.
    No files: :func:`train` adds the run folder, its lock, checkpoints and resume. Returns the
    :class:`RunResult` (``model_config`` None, ``run_dir`` None).
    """
    dev = _device_for(train_config, device)
    model = model.to(dev)
    run = _Run(None, model, make_optimizer(model, train_config), None, train_config,
               getattr(data, "name", type(data).__name__), {}, [],
               numerics={**numerics.environment(), "device": dev.type}, seeding=seeding)
    with _precision(train_config, dev):
        _fit(run, data, dev, callbacks, stop_after, progress=progress, desc=desc or type(model).__name__)
    return run.result()


def train(
    model_config: AnyModelConfig,
    data: Any,
    train_config: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device | None = "auto",
    progress: bool = True,
    desc: str | None = None,
    stop_after: int | None = None,
    init_fn: Callable[[nn.Module], None] | None = None,
    seeding: Seeding = Seeding(),
) -> RunResult:
    """:func:`fit` the model ``model_config`` builds (a :class:`reproduce.models.ModelConfig` or a
    :class:`reproduce.models.TorchvisionResNet`) on ``data``, resumably.

    ``run_dir`` (optional) is the run's folder; with it, every epoch is checkpointed and a later call
    with the same configs resumes or returns the finished run, under the folder's lock. A folder
    holding a *different* config raises ValueError. ``callbacks`` run after every epoch (see
    :data:`Callback`). ``stop_after`` ends the call after that many epochs in total without marking
    the run finished (used to simulate an interruption; the run resumes later). ``init_fn(model)``
    changes the freshly built model before the optimiser sees it (e.g. a collapsed layer); it is
    not part of the stored config, so give such runs a folder of their own; nor is
    ``seeding`` (:class:`Seeding`).
    ``train_config.device_data``, ``compile`` and ``precision`` choose how the steps run (see
    :class:`TrainConfig`); TF32 is set explicitly on CUDA for the call (off unless "tf32").
    """
    dev = _device_for(train_config, device)
    folder = Path(run_dir) if run_dir is not None else None
    with run_lock(folder) if folder is not None else contextlib.nullcontext(), _precision(train_config, dev):
        if folder is not None:
            remove_temporaries(folder)  # of writers killed mid-save: none is alive while we hold the lock
        run = _start(model_config, data, train_config, folder, dev, init_fn, seeding)
        _fit(run, data, dev, callbacks, stop_after, progress=progress, desc=desc or model_config.label)
        return run.result()


def _start_record(run: _Run, data: Any, dev: torch.device, callbacks: Sequence[Callback]) -> None:
    """Epoch 0: the untrained net evaluated and measured (callbacks see ``epoch=0``), saved."""
    t0 = time.perf_counter()
    try:
        record = _epoch_record(run, {"epoch": 0}, data, dev, callbacks)
    except NonFiniteActivationError as exc:
        run.status, run.diverged_epoch = "diverged", 0
        record = {"epoch": 0, "diverged": True, "reason": f"non-finite activations while measuring ({exc})",
                  "test_acc": None}
    if record.get("stop") and run.status == "running":
        run.status, run.stop_reason = "stopped", str(record["stop"])
    record["seconds"] = time.perf_counter() - t0
    run.history.append(record)
    run.save()


def _run_epochs(run: _Run, data: Any, dev: torch.device, callbacks: Sequence[Callback], last: int, *,
                progress: bool, desc: str) -> None:
    """Epochs ``run.epoch + 1 .. last``: train, record, save; stop early when the run ends.
    A fresh run with ``measure_start`` first records epoch 0 (:func:`_start_record`)."""
    if run.epoch == 0 and not run.history and run.tcfg.measure_start:
        _start_record(run, data, dev, callbacks)
    bar = progress_bar(enabled=progress, total=last - run.epoch, desc=desc, unit="epoch", leave=False)
    while run.epoch < last and run.status == "running":
        t0 = time.perf_counter()
        record = _train_epoch(run, data.train, dev)
        run.epoch += 1
        reason = "non-finite loss, weights or batch-norm statistics"
        if record is not None:
            try:
                record = _epoch_record(run, record, data, dev, callbacks)
            except NonFiniteActivationError as exc:
                record, reason = None, f"non-finite activations while measuring ({exc})"
        if record is None:
            run.status, run.diverged_epoch = "diverged", run.epoch
            record = {"epoch": run.epoch, "diverged": True, "reason": reason, "test_acc": None}
        elif record.get("stop"):
            run.status, run.stop_reason = "stopped", str(record["stop"])
        elif run.epoch >= run.tcfg.epochs:
            run.status = "finished"
        record["seconds"] = time.perf_counter() - t0
        run.history.append(record)
        run.save()
        bar.update(1)
        if record.get("test_acc") is not None:
            bar.set_postfix(loss=f"{record['train_loss_running']:.3f}", test=f"{record['test_acc']:.3f}")
    bar.total = bar.n  # a run that ends early still ends with a full (green) bar
    bar.refresh()
    bar.close()
