"""The numeric environment a run is computed under: pinned by default, recorded with every run.

Training here is bit-for-bit deterministic on one machine but not across machines: torch picks
its vector kernels (``ATEN_CPU_CAPABILITY``), oneDNN its convolution kernels
(``ONEDNN_MAX_CPU_ISA``) and MKL its matrix-product kernels (``MKL_CBWR``) from the CPU it runs
on, and the thread count changes the order of reductions. Each choice changes the last bits of
a float, deep nets amplify them, and the project's figures compare results for exact equality.
So, by default, ``import reproduce`` pins an environment that every x86-64 CPU of the last
decade provides:

===========================  ==========================================================
policy ``pinned`` (default)  what is set
===========================  ==========================================================
``ATEN_CPU_CAPABILITY``      ``avx2`` (torch's own kernels; AVX-512 machines step down)
``ONEDNN_MAX_CPU_ISA``       ``AVX2`` (convolutions)
``MKL_CBWR``                 ``AVX2`` (MKL's conditional numerical reproducibility)
``CUBLAS_WORKSPACE_CONFIG``  ``:4096:8`` (needed by deterministic cuBLAS; GPU only)
intra-op threads             1 (``torch.set_num_threads(1)``; a sweep runs several
                             one-thread processes side by side instead)
deterministic algorithms     ``torch.use_deterministic_algorithms(True, warn_only=True)``
===========================  ==========================================================

Environment variables that steer it:

* ``REPRODUCE_NUMERICS`` -- ``pinned`` (the default, also when unset or empty) or ``native``:
  leave every variable above, the thread count and the deterministic flag as torch has them
  (faster on a big machine; results then depend on the machine). Any other value raises a
  ``ValueError`` naming the valid choices, at ``import reproduce``.
* ``REPRODUCE_THREADS`` -- a positive integer: the intra-op thread count under either policy.
  Under ``pinned`` a value other than 1 is used with a warning (results then depend on it).
* A variable of the table that is already set to another value (by the user, a job script)
  wins, with a warning; ``DNNL_MAX_CPU_ISA`` (oneDNN's older name) counts as a setting of
  ``ONEDNN_MAX_CPU_ISA``. The recorded environment (:func:`environment`) shows what was used.

What was found by experiment (torch 2.14, x86-64 with AVX-512, each case in a fresh process):

* The variables may be set after ``import torch``: each library reads its variable on its first
  use, not at import. torch fixes its capability on the first dispatched kernel *or* the first
  ``torch.backends.cpu.get_cpu_capability()`` call; oneDNN fixes its ISA on its first primitive
  (a ``conv2d``), MKL its mode on its first call. Once fixed, a later setting is silently
  ignored. ``torch.set_num_threads`` fixes nothing.
* torch accepts only the lower-case names (``avx2``, ``avx512``, ``default``); ``AVX2`` is
  ignored (the native capability is used).

:func:`pin` therefore sets the variables first, then imports torch and checks the capability
torch reports; when it is not the one asked for (torch computed before ``reproduce`` was
imported, an unrecognised value, or a CPU without AVX2) it warns once. The record shows the
capability actually used either way. On a machine that is not x86-64 the CPU variables are not
set (they name x86 instruction sets); threads and the deterministic flag still are.

**A known gap (found 2026-12-02).** The run folders of ``tests/fixtures/round2_runs`` were made
on another x86-64 machine under this same pinned environment (same torch build, same recorded
values). On a Xeon with AVX-512 (the FP16/VNNI generation) the FNN reproduces them bit for bit,
but the smoke residual net's first epoch does not: its evaluation, running loss and distances
differ in the 8th significant digit while its training loss agrees. Setting ``MKL_CBWR=COMPATIBLE``
instead made its test loss agree (and not the rest); ``AVX2,STRICT`` changed nothing. So MKL's
``AVX2`` mode (and something else besides) is not the same on every CPU, and a figure of the
conv nets may not be regenerated bit for bit on every machine. That test reports it as an
expected failure where it happens; ``python -m reproduce compare`` shows how far numbers move.

A run records :func:`environment` (plus the device, added by the caller) and refuses to continue
a run folder recorded under another one (:func:`differences`). :func:`describe` is the line a
notebook prints.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from typing import Any, Mapping

__all__ = [
    "POLICY_ENV",
    "compile_deterministic",
    "THREADS_ENV",
    "POLICIES",
    "PINNED_VARIABLES",
    "PINNED_THREADS",
    "NUMERIC_KEYS",
    "NumericsWarning",
    "policy",
    "side_by_side_threads",
    "pin",
    "environment",
    "differences",
    "describe",
]

POLICY_ENV = "REPRODUCE_NUMERICS"
THREADS_ENV = "REPRODUCE_THREADS"
POLICIES = ("pinned", "native")
#: variable -> pinned value (set on x86-64 only, apart from the CUDA one)
PINNED_VARIABLES: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
}
_X86_ONLY = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")
#: other names under which a library reads the same setting
_ALIASES: dict[str, tuple[str, ...]] = {"ONEDNN_MAX_CPU_ISA": ("DNNL_MAX_CPU_ISA",)}
PINNED_THREADS = 1
#: the keys of an environment record that change numbers (the machine's name does not)
NUMERIC_KEYS = ("torch", "cpu_capability", "onednn_isa", "mkl_cbwr", "threads", "deterministic", "device")
_NO_RECORD = "no numeric environment recorded (run made before numerics were recorded)"

_warned: set[str] = set()
_missing = object()


class NumericsWarning(UserWarning):
    """The numeric environment is not the one the policy asks for."""


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, NumericsWarning, stacklevel=3)


def policy() -> str:
    """The policy ``$REPRODUCE_NUMERICS`` asks for: ``"pinned"`` (also when unset or empty) or
    ``"native"``; anything else raises ``ValueError``."""
    raw = os.environ.get(POLICY_ENV, "")
    value = raw.strip().lower() or "pinned"
    if value not in POLICIES:
        raise ValueError(f"{POLICY_ENV}={raw!r} is not a numerics policy; valid choices: "
                         f"{', '.join(POLICIES)} (unset means pinned)")
    return value


def side_by_side_threads(workers: int) -> int | None:
    """Threads for each of ``workers`` processes or kernels computing side by side: under ``native``
    an equal share of the cores (``cpu_count // workers``, at least 1); under ``pinned`` None (the
    pinned thread count stays)."""
    if policy() != "native":
        return None
    return max(1, (os.cpu_count() or 1) // max(1, int(workers)))


def _threads_setting() -> int | None:
    from reproduce.config.environ import positive_int_variable

    return positive_int_variable(THREADS_ENV, "a thread count")


def _is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "x64")


def _user_value(name: str) -> tuple[str, str] | None:
    """(variable, value) already set for ``name`` or one of its aliases, else None."""
    for candidate in (name, *_ALIASES.get(name, ())):
        value = os.environ.get(candidate)
        if value:
            return candidate, value
    return None


def _pin_variables() -> None:
    """Set the pinned variables not already set; warn where a different value wins."""
    for name, value in PINNED_VARIABLES.items():
        if name in _X86_ONLY and not _is_x86_64():
            continue
        existing = _user_value(name)
        if existing is None:
            os.environ[name] = value
        elif existing[1] != value:
            _warn_once(f"user:{name}", f"{existing[0]}={existing[1]} is already set; it wins over the pinned "
                       f"value {value!r} ({POLICY_ENV}=pinned) and the recorded numeric environment "
                       "will show it")


def pin() -> str:
    """Apply the policy of ``$REPRODUCE_NUMERICS`` to this process and return it.

    ``import reproduce`` calls this first thing. Under ``pinned``: set the variables (module
    docstring) unless already set, import torch, set the thread count and the deterministic
    flag, and warn once when torch reports a CPU capability other than the one asked for.
    Under ``native``: only ``$REPRODUCE_THREADS``, when set, is applied. Calling it again is
    harmless.
    """
    chosen = policy()
    threads = _threads_setting()
    torch_was_imported = "torch" in sys.modules
    if chosen == "pinned":
        _pin_variables()
    import torch

    if chosen == "pinned":
        if threads is None:
            threads = PINNED_THREADS
        elif threads != PINNED_THREADS:
            _warn_once("threads", f"{THREADS_ENV}={threads} wins over the pinned {PINNED_THREADS} thread; "
                       "results then depend on the thread count, which the recorded environment shows")
        _deterministic(torch)
        _check_capability(torch, torch_was_imported)
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return chosen


def _deterministic(torch: Any) -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its import of
    ``torch._inductor.config`` (which brings in ``torch._dynamo``: about 1.5 s of every process's
    start). Inductor's own flag matters only to ``torch.compile``: :func:`compile_deterministic`
    sets it where the package compiles."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # a torch without the private setter: the public call, at its price
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        setter(True, warn_only=True)


def compile_deterministic() -> None:
    """Before ``torch.compile``: inductor's ``deterministic`` flag follows torch's setting (as
    ``torch.use_deterministic_algorithms`` would have set it)."""
    import torch
    import torch._inductor.config as inductor_config

    inductor_config.deterministic = torch.are_deterministic_algorithms_enabled()


def _check_capability(torch: Any, torch_was_imported: bool) -> None:
    asked = os.environ.get("ATEN_CPU_CAPABILITY")
    if not asked:
        return
    reported = torch.backends.cpu.get_cpu_capability()
    if reported.lower() == asked:
        return
    if torch_was_imported:
        cause = ("torch was imported, and most likely computed something, before reproduce: its "
                 "CPU kernels (and probably oneDNN's) are then fixed. Import reproduce before "
                 "anything that uses torch, or start a fresh process")
    else:
        cause = ("torch did not accept the value (valid: lower-case default, avx2, avx512) or this "
                 "CPU lacks it")
    _warn_once("capability", f"numerics: ATEN_CPU_CAPABILITY={asked} asked for, but torch runs its CPU "
               f"kernels at {reported}: {cause}. Results may differ from those of other machines; "
               f"the recorded environment shows cpu_capability={reported}")


def environment() -> dict[str, Any]:
    """What a run records about the numbers it computes (JSON-serialisable; no device: the
    caller adds ``"device"``).

    Keys: ``torch`` (version), ``cpu_capability`` (the kernels torch runs, e.g. ``"AVX2"``),
    ``onednn_isa`` and ``mkl_cbwr`` (the variable's value, ``"native"`` when unset),
    ``threads``, ``deterministic``, ``policy`` and ``machine`` (``platform.machine()``,
    informational: not compared by :func:`differences`).
    """
    import torch

    onednn = _user_value("ONEDNN_MAX_CPU_ISA")
    return {
        "torch": str(torch.__version__),
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "onednn_isa": onednn[1] if onednn else "native",
        "mkl_cbwr": os.environ.get("MKL_CBWR") or "native",
        "threads": int(torch.get_num_threads()),
        "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
        "policy": policy(),
        "machine": platform.machine(),
    }


def _show(record: Mapping[str, Any], key: str) -> str:
    return str(record[key]) if key in record else "not recorded"


def differences(saved: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """What differs, over :data:`NUMERIC_KEYS`, between a stored environment and the current one;
    ``[]`` when the numbers would be computed the same way.

    A key missing on one side counts as a difference (``"not recorded"``); ``saved=None`` (a run
    made before environments were recorded) gives one entry saying so. ``machine`` and
    ``policy`` are not compared: two machines with the same values compute the same numbers.

    Use in a trainer, when a run folder is reused::

        env = {**numerics.environment(), "device": str(device)}
        diffs = numerics.differences(stored.get("numerics"), env)
        if diffs:
            raise RuntimeError(f"{run_dir} was computed under another numeric environment: "
                               + "; ".join(diffs) + " -- delete it or restore that environment")
        # ... and write ``env`` into the new checkpoint / run.json under "numerics"

    For example ``differences({"cpu_capability": "AVX512", ...}, {"cpu_capability": "AVX2", ...})``
    holds ``"cpu_capability: AVX512 (stored) vs AVX2 (now)"``.
    """
    if not isinstance(current, Mapping):
        raise TypeError(f"current must be a dict from environment(), got {type(current).__name__}")
    if saved is None:
        return [_NO_RECORD]
    if not isinstance(saved, Mapping):
        raise TypeError(f"saved must be a dict from environment() or None, got {type(saved).__name__}")
    return [f"{key}: {_show(saved, key)} (stored) vs {_show(current, key)} (now)"
            for key in NUMERIC_KEYS
            if (key in saved or key in current) and saved.get(key, _missing) != current.get(key, _missing)]



def describe() -> str:
    """One line for a notebook, e.g. ``numerics: pinned (AVX2, oneDNN AVX2, MKL AVX2, 1 thread,
    deterministic); set REPRODUCE_NUMERICS=native to opt out``."""
    env = environment()
    threads = f"{env['threads']} thread" + ("" if env["threads"] == 1 else "s")
    state = (f"{env['cpu_capability']}, oneDNN {env['onednn_isa']}, MKL {env['mkl_cbwr']}, {threads}, "
             + ("deterministic" if env["deterministic"] else "not deterministic"))
    if env["policy"] == "pinned":
        hint = f"set {POLICY_ENV}=native to opt out"
    else:
        hint = f"unset {POLICY_ENV} (or set it to pinned) to pin"
    return f"numerics: {env['policy']} ({state}); {hint}"
