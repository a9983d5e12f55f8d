"""Store the `smoke` outputs of the notebooks' `# NBVAL_CHECK_OUTPUT` cells, so nbval has something to compare.

Notebooks are committed without outputs, except for the cells marked ``# NBVAL_CHECK_OUTPUT``:
``make test`` runs every notebook at ``smoke`` under ``pytest --nbval-lax`` and compares those
cells' fresh output with the stored one. A checked cell with no stored output would check nothing,
so after changing a notebook run

    .venv/bin/python tools/freeze_checked_outputs.py [NOTEBOOK ...]

It executes each notebook at ``smoke`` with papermill (``REPRODUCE_SCALE=smoke``, cwd =
notebooks/), copies the outputs of the checked cells into the source notebook, and clears every
other output and execution count. Only stream (stdout) and plain-text outputs are kept; a checked
cell that writes to stderr is an error, since warnings and progress bars are not deterministic.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
import papermill

ROOT = Path(__file__).resolve().parent.parent
MARK = "# NBVAL_CHECK_OUTPUT"


def _clean_outputs(outputs: list) -> list:
    kept = []
    for out in outputs:
        if out.get("output_type") == "stream":
            if out.get("name") != "stdout":
                raise ValueError(f"checked cell writes to {out.get('name')}: {''.join(out.get('text', ''))[:200]}")
            kept.append(out)
        elif out.get("output_type") in ("execute_result", "display_data"):
            data = {k: v for k, v in out.get("data", {}).items() if k == "text/plain"}
            if data:
                kept.append(nbformat.from_dict(dict(out, data=data, metadata={})))
        elif out.get("output_type") == "error":
            raise ValueError(f"checked cell raised {out.get('ename')}: {out.get('evalue')}")
    return kept


def freeze(path: Path) -> int:
    """Execute ``path`` at smoke and store its checked cells' outputs; return how many cells."""
    src = nbformat.read(path, as_version=4)
    os.environ["REPRODUCE_SCALE"] = "smoke"
    os.environ.setdefault("MPLBACKEND", "agg")
    os.environ.setdefault("TQDM_DISABLE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / path.name
        # no injected parameters: nbval runs the notebook as written, with only $REPRODUCE_SCALE set
        papermill.execute_notebook(str(path), str(out_path), parameters={},
                                   kernel_name="python3", cwd=str(path.parent), progress_bar=False)
        ran = nbformat.read(out_path, as_version=4)
    # papermill inserts an "injected-parameters" cell after the parameters cell
    ran_cells = [c for c in ran.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    if len(ran_cells) != len(src.cells):
        raise RuntimeError(f"{path.name}: executed notebook has {len(ran_cells)} cells, source {len(src.cells)}")
    checked = 0
    for cell, done in zip(src.cells, ran_cells):
        if cell.cell_type != "code":
            continue
        if cell.source.lstrip().startswith(MARK):
            # nbval skips ("unrun reference cell") a stored output without an execution count
            cell.execution_count = done.execution_count
            cell.outputs = _clean_outputs(done.outputs)
            checked += 1
        else:
            cell.execution_count = None
            cell.outputs = []
    nbformat.write(src, path)
    return checked


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for path in paths:
        n = freeze(path.resolve())
        print(f"{path.name}: stored the outputs of {n} checked cell(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
