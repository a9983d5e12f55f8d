"""Benchmark children in fresh interpreters: the numeric environment is fixed at ``import
reproduce``, so each setting compared side by side gets a process of its own.

``start`` runs ``python -c CODE ARGS...`` from the repository root with the library importable and
the numerics variables of the caller cleared (then ``env`` set); ``finish`` waits for it and
returns the JSON object on the last line of its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
#: variables of the caller that would change the numerics of a child
CLEARED = ("REPRODUCE_NUMERICS", "REPRODUCE_THREADS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
           "DNNL_MAX_CPU_ISA", "MKL_CBWR")


def start(code: str, args: Sequence[str], env: Mapping[str, str] | None = None,
          clear: Sequence[str] = CLEARED) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if k not in clear}
    base["PYTHONPATH"] = str(ROOT) + os.pathsep + base.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env={**base, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{err}")
    return json.loads(out.strip().splitlines()[-1])
