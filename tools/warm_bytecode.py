#!/usr/bin/env python3
"""Byte-compile what the package, its notebooks and its tests import, by importing it once.

    python tools/warm_bytecode.py        # the last step of `make install`

The installer no longer byte-compiles every installed file (17,300 of them with the models extra;
about a minute of CPU on 2 cores, most of it for the hundreds of transformers model families and the
parts of torch, scipy and scikit-learn nothing here imports). Importing the modules below with
``sys.dont_write_bytecode`` off writes the ``.pyc`` of exactly the modules they load (about 4,600),
so every later process -- even one where ``PYTHONDONTWRITEBYTECODE`` is set, as on this project's
machines -- reads them instead of compiling again. A module not imported here is compiled on its
first import by a process that may write bytecode (the Makefile unexports the variable).

Libraries that are missing (or fail to import) are reported and skipped; the exit status is 0
unless the package itself fails to import.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

#: besides every module of ``reproduce``: what the notebooks, the tests and the runner import
OTHERS = (
    "matplotlib.pyplot", "pandas", "scipy.stats", "sklearn.datasets", "IPython", "ipykernel.kernelapp",
    "papermill", "nbformat", "nbclient", "nbval.plugin", "pytest", "xdist.plugin", "submitit", "tqdm.auto",
    "timm", "timm.models.vision_transformer", "timm.models.resnet", "timm.models.convnext", "tokenizers",
    "transformers", "transformers.models.gpt2.modeling_gpt2", "transformers.models.llama.modeling_llama",
    "transformers.models.mistral.modeling_mistral", "transformers.models.qwen2.modeling_qwen2",
    "transformers.models.qwen3.modeling_qwen3", "transformers.models.bert.modeling_bert",
    "transformers.models.roberta.modeling_roberta", "transformers.models.vit.modeling_vit",
)


def main() -> int:
    sys.dont_write_bytecode = False
    import reproduce

    names = [m.name for m in pkgutil.walk_packages(reproduce.__path__, "reproduce.")
             if not m.name.endswith("__main__")]  # importing __main__ would run the command line
    for name in names:  # the package's own modules must import
        importlib.import_module(name)
    skipped = []
    for name in OTHERS:
        try:
            importlib.import_module(name)
        except Exception as err:  # an optional library that fails to import must not fail the install
            skipped.append(f"{name} ({err.__class__.__name__}: {err})")
    print(f"bytecode written for {len(names)} modules of reproduce and {len(OTHERS) - len(skipped)} others"
          + (f"; skipped: {'; '.join(skipped)}" if skipped else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
