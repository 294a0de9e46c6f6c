"""docs/tutorial.ipynb: kept in git without outputs (quick), and run top to bottom on real MNIST by
nbclient, in a kernel of this very interpreter (slow: `make test-slow`).

After running the notebook, strip its outputs with `python tests/test_notebook.py` (or name the
files to strip): outputs and execution counts, as `jupyter nbconvert --clear-output` strips them,
and the widgets' state and the kernel's details, which it leaves.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
KERNEL = "pyro-vae-tests"
# What a run leaves in the file besides outputs: timings (cell metadata), the widgets' state, and
# the kernel's details (its Python's version, say) beside the language's name.
RUN_CELL_METADATA = ("execution", "collapsed", "scrolled")
RUN_METADATA = ("widgets",)
# The notebook's line for each epoch of its history, and the figures it draws inline.
EPOCH_LINE = re.compile(r"^epoch (\d+): lower bound (-\d+\.\d) nats", re.M)
MIN_FIGURES = 7  # the data, prior, more of each digit, reconstructions, a morph, log p(x), least and likeliest
# Seconds a cell may take before the test fails: the training cell takes about a minute on 2 quiet
# cores, the others seconds. Generous for a busy machine, and a kernel that stops answering fails
# the test instead of holding CI.
TRAINING_TIMEOUT_S = 1200
CELL_TIMEOUT_S = 300


def stripped(notebook: dict[str, Any]) -> dict[str, Any]:
    """The notebook as it belongs in git: no outputs, no execution counts, none of a run's metadata."""
    cells = []
    for cell in notebook["cells"]:
        cell = {**cell, "metadata": {k: v for k, v in cell["metadata"].items() if k not in RUN_CELL_METADATA}}
        if cell["cell_type"] == "code":
            cell.update(outputs=[], execution_count=None)
        cells.append(cell)
    metadata = {k: v for k, v in notebook["metadata"].items() if k not in RUN_METADATA}
    if "language_info" in metadata:
        metadata["language_info"] = {"name": metadata["language_info"]["name"]}
    return {**notebook, "cells": cells, "metadata": metadata}


def write(notebook: dict[str, Any], path: Path) -> None:
    """Write as Jupyter saves a notebook (indent 1, sorted keys), so stripping a saved file changes only what it strips."""
    path.write_text(json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def read(path: Path = NOTEBOOK) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_notebook_in_git_has_no_outputs():
    notebook = read()
    assert notebook == stripped(notebook), "outputs left in docs/tutorial.ipynb: run python tests/test_notebook.py"
    assert notebook["nbformat"] == 4
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert len(code) >= 10
    assert [timeout(cell) for cell in code].count(TRAINING_TIMEOUT_S) == 1  # the training cell, and no other


def test_stripping_removes_what_a_run_leaves():
    ran = read()
    for count, cell in enumerate(c for c in ran["cells"] if c["cell_type"] == "code"):
        cell.update(execution_count=count + 1, outputs=[{"output_type": "stream", "name": "stdout", "text": "x"}])
        cell["metadata"]["execution"] = {"iopub.status.idle": "2025-01-01T00:00:00Z"}
    ran["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    ran["metadata"]["language_info"].update(version="3.11.7", mimetype="text/x-python")
    assert stripped(ran) == read()


# ---------------------------------------------------------------------------------------------
# Executed, on real MNIST

@pytest.fixture(scope="module")
def real_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete MNIST folder: the one $PYRO_VAE_DATA names (its missing files fetched), or one fetched here."""
    import pyro_vae

    named = os.environ.get("PYRO_VAE_DATA")
    folder = Path(named) if named else tmp_path_factory.mktemp("mnist")
    pyro_vae.download("mnist", data_dir=folder)
    return folder


def kernel_spec(folder: Path) -> Path:
    """A kernel spec for this interpreter under `folder` (a Jupyter data folder), so the notebook
    runs with the Python (and the packages) that runs the tests, whatever kernels the machine has."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "pyro-vae tests",
                                                  "language": "python"}))
    return folder


def execute(workdir: Path, *, keep: Path) -> dict[str, Any]:
    """Run the notebook in `workdir`, every cell in order, and keep the executed copy as `keep` (to
    look at its figures); a cell that raises fails the test with its traceback."""
    import nbclient
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, kernel_name=KERNEL, resources={"metadata": {"path": str(workdir)}},
                                     timeout_func=timeout)
    try:
        client.execute()
    finally:
        nbformat.write(notebook, keep)
    return notebook


def timeout(cell: dict[str, Any]) -> int:
    """How long `cell` may run (its source is one string when nbformat read it, a list of lines in the file)."""
    return TRAINING_TIMEOUT_S if "pyro_vae.train(" in "".join(cell["source"]) else CELL_TIMEOUT_S


def outputs(notebook: dict[str, Any]) -> list[dict[str, Any]]:
    return [out for cell in notebook["cells"] if cell["cell_type"] == "code" for out in cell["outputs"]]


def text_of(notebook: dict[str, Any]) -> str:
    """Everything the cells printed and displayed as text."""
    parts = []
    for out in outputs(notebook):
        parts.append(out.get("text", "") if out["output_type"] == "stream" else out.get("data", {}).get("text/plain", ""))
    return "\n".join("".join(p) if isinstance(p, list) else p for p in parts)


def figures(notebook: dict[str, Any]) -> int:
    return sum("image/png" in out.get("data", {}) for out in outputs(notebook))


def widget_figures(notebook: dict[str, Any]) -> int:
    """Figures drawn inside widgets (the slider's output area), from the widget state nbclient records."""
    state = notebook["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return sum("image/png" in out.get("data", {}) for model in state.get("state", {}).values()
               for out in model["state"].get("outputs", []))


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_on_real_mnist_and_again_without_ipywidgets(
        real_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # The kernel inherits this environment: the checkout under test first on the path, the MNIST
    # folder, and Jupyter's and IPython's own files kept inside the test's folder.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("PYRO_VAE_DATA", str(real_mnist))
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_spec(tmp_path / "jupyter")))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's future default; without it, a warning
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # figures go to the notebook's inline backend
    workdir = tmp_path / "work"
    workdir.mkdir()

    first = execute(workdir, keep=tmp_path / "executed.ipynb")
    epochs = EPOCH_LINE.findall(text_of(first))
    assert [int(e) for e, _ in epochs] == list(range(1, len(epochs) + 1)) and epochs, text_of(first)
    # About -112 nats after five epochs of the small model; far below that, training went wrong.
    assert float(epochs[-1][1]) > -140, epochs
    assert (workdir / "checkpoints" / "tutorial").is_dir()
    assert figures(first) >= MIN_FIGURES
    assert any("application/vnd.jupyter.widget-view+json" in out.get("data", {}) for out in outputs(first))
    assert widget_figures(first) == 1  # the slider's grid, drawn once at its starting values

    # Again in the same folder, with ipywidgets gone: the training cell finds its checkpoint and
    # returns the same history, and the slider's cell says why it is left out.
    hidden = tmp_path / "no-ipywidgets" / "ipywidgets"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("ipywidgets is hidden by tests/test_notebook.py")\n')
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hidden.parent), os.environ["PYTHONPATH"]]))
    second = execute(workdir, keep=tmp_path / "executed-without-ipywidgets.ipynb")
    assert EPOCH_LINE.findall(text_of(second)) == epochs
    assert "ipywidgets is not installed here" in text_of(second)
    assert figures(second) >= MIN_FIGURES


if __name__ == "__main__":
    for name in sys.argv[1:] or [str(NOTEBOOK)]:
        write(stripped(read(Path(name))), Path(name))
