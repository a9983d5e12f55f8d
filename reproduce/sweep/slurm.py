"""SLURM settings: :class:`SlurmConfig`, from flags or a TOML/JSON file (:func:`slurm_config`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping


__all__ = ["SlurmConfig", "slurm_config"]


@dataclass(frozen=True)
class SlurmConfig:
    """How a SLURM sweep asks for resources; the keys of a ``--config`` file are these field names.

    ``time`` is the wall-clock limit of one job in minutes (submitit signals the job
    ``signal_delay_s`` seconds before it; the job is then requeued and resumes, up to
    ``max_timeouts`` times; keep ``time`` > 10: submitit counts every signal of a shorter job as a
    time-out). ``sbatch`` holds extra ``sbatch`` options (``account=abc`` -> ``--account=abc``),
    ``setup`` shell lines run before the job (e.g. ``module load cuda``).
    """

    partition: str | None = None
    time: int = 24 * 60
    gpus_per_job: int = 0
    cpus_per_job: int = 1
    array_parallelism: int = 64
    mem: str | None = None
    sbatch: tuple[tuple[str, str], ...] = ()
    signal_delay_s: int = 120
    max_timeouts: int = 20
    setup: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, low in (("time", 1), ("gpus_per_job", 0), ("cpus_per_job", 1), ("array_parallelism", 1),
                          ("signal_delay_s", 0), ("max_timeouts", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"slurm setting {name} must be an int >= {low}, got {value!r}")
        for name in ("partition", "mem"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"slurm setting {name} must be a non-empty string, got {value!r}")
        object.__setattr__(self, "sbatch", tuple(sorted(_sbatch_options(self.sbatch).items())))
        if isinstance(self.setup, str) or not all(isinstance(s, str) for s in self.setup):
            raise ValueError(f"slurm setting setup must be a list of shell lines, got {self.setup!r}")
        object.__setattr__(self, "setup", tuple(self.setup))

    def executor_parameters(self, job_name: str) -> dict[str, Any]:
        """The parameters of ``submitit.SlurmExecutor.update_parameters``."""
        params: dict[str, Any] = {"time": self.time, "cpus_per_task": self.cpus_per_job,
                                  "array_parallelism": self.array_parallelism,
                                  "signal_delay_s": self.signal_delay_s, "job_name": job_name}
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        if self.mem:
            params["mem"] = self.mem
        if self.sbatch:
            params["additional_parameters"] = dict(self.sbatch)
        if self.setup:
            params["setup"] = list(self.setup)
        return params


_SLURM_KEYS = tuple(f.name for f in fields(SlurmConfig))


def _sbatch_options(options: Any) -> dict[str, str]:
    """``{"account": "abc"}``, ``[("account", "abc")]`` or ``["account=abc"]`` as a dict."""
    if isinstance(options, str):  # iterating it would read it letter by letter
        raise ValueError(f"sbatch options are a table (sbatch = {{ account = \"abc\" }}) or a list of "
                         f"KEY=VALUE strings (sbatch = [\"account=abc\"]), got the string {options!r}")
    if isinstance(options, Mapping):
        items = list(options.items())
    else:
        items = []
        for option in options or ():
            if isinstance(option, str):
                key, sep, value = option.partition("=")
                if not sep or not key.strip():
                    raise ValueError(f"an sbatch option is KEY=VALUE (e.g. account=abc), got {option!r}")
                items.append((key, value))
            elif isinstance(option, (tuple, list)) and len(option) == 2:
                items.append((option[0], option[1]))
            else:
                raise ValueError(f"an sbatch option is KEY=VALUE (e.g. account=abc), got {option!r}")
    out = {}
    for key, value in items:
        key = str(key).strip().lstrip("-")
        if not key:
            raise ValueError(f"an sbatch option needs a name, got {options!r}")
        out[key] = str(value)
    return out


def slurm_config(path: str | Path | None = None, **flags: Any) -> SlurmConfig:
    """The SLURM settings: :class:`SlurmConfig` defaults, then the file ``path`` (TOML or JSON,
    top-level keys or a ``[slurm]`` table, keys = the field names), then ``flags`` that are not
    None (flags win; ``sbatch`` options of flags and file are merged, the flag's value winning).

    ValueError naming the file, the bad key and the valid keys."""
    values: dict[str, Any] = {}
    if path is not None:
        values = _read_config(Path(path))
    try:
        sbatch = _sbatch_options(values.pop("sbatch", ()))
    except ValueError as exc:
        raise ValueError(f"config file {path}: {exc}") from None
    flag_sbatch = flags.pop("sbatch", None)
    unknown = sorted(set(flags) - set(_SLURM_KEYS))
    if unknown:
        raise ValueError(f"unknown slurm setting(s) {', '.join(unknown)}; valid settings: {', '.join(_SLURM_KEYS)}")
    values.update({k: v for k, v in flags.items() if v is not None})
    sbatch.update(_sbatch_options(flag_sbatch or ()))
    if "setup" in values and isinstance(values["setup"], list):
        values["setup"] = tuple(values["setup"])
    try:
        return SlurmConfig(**values, sbatch=tuple(sbatch.items()))
    except ValueError as exc:
        where = f" (config file {path})" if path is not None else ""
        raise ValueError(f"{exc}{where}") from None


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"config file {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it "
                         "as UTF-8") from None
    except OSError as exc:
        raise ValueError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            try:
                import tomllib
            except ImportError:  # Python 3.10
                try:
                    import tomli as tomllib  # type: ignore[no-redef]
                except ImportError:
                    raise ValueError(f"config file {path}: reading TOML needs Python >= 3.11 or the tomli "
                                     f"package; or write it as JSON (a .json file)") from None
            data = tomllib.loads(text)
    except ValueError as exc:
        if str(exc).startswith("config file"):
            raise
        raise ValueError(f"config file {path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: "
                         f"{exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a table of settings, got {type(data).__name__}")
    if isinstance(data.get("slurm"), dict):
        data = {**{k: v for k, v in data.items() if k != "slurm"}, **data["slurm"]}
    unknown = sorted(set(data) - set(_SLURM_KEYS))
    if unknown:
        raise ValueError(f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
                         f"valid settings: {', '.join(_SLURM_KEYS)}")
    return dict(data)
