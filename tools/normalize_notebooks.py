"""Give notebooks the metadata JupyterLab itself writes, and strip their outputs.

JupyterLab, on opening a notebook, replaces its ``kernelspec`` with the kernel's own spec and
its ``language_info`` with what the running kernel reports. A notebook committed with anything
else is marked modified the moment it is opened, and autosave then rewrites the tracked file
(with outputs, once cells have run). This tool writes exactly those two entries, taken from the
same sources Lab uses (the installed ``python3`` kernelspec and ipykernel's ``language_info``),
clears outputs and execution counts the way nbstripout does, and saves the file in the
byte layout the Jupyter server uses (``nbformat.write``), so that opening and saving in Lab
changes nothing.

Usage::

    .venv/bin/python tools/normalize_notebooks.py            # rewrite notebooks/*.ipynb in place
    .venv/bin/python tools/normalize_notebooks.py --check    # list files that would change; exit 1
    .venv/bin/python tools/normalize_notebooks.py a.ipynb b.ipynb

``language_info.version`` is the Python version of the interpreter that runs this tool (the
kernel's, when run with the project's ``.venv``): Lab records the kernel's version, so a
notebook opened under another Python changes on that one line only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNEL_NAME = "python3"
# Cell metadata that records how a cell was last shown or run, not what it is (nbstripout's list).
VOLATILE_CELL_METADATA = ("collapsed", "scrolled", "ExecuteTime", "execution", "heading_collapsed", "hidden")
# Notebook metadata left over from conversion tools; the repository keeps only the .ipynb.
DROPPED_NOTEBOOK_METADATA = ("jupytext", "widgets", "signature")


class NotebookMetadataError(ValueError):
    """A file is not a notebook this tool can normalise."""


def lab_metadata() -> dict:
    """The ``kernelspec`` and ``language_info`` JupyterLab writes for the ``python3`` kernel."""
    from ipykernel.ipkernel import IPythonKernel
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    return {
        "kernelspec": {"display_name": spec.display_name, "language": spec.language, "name": KERNEL_NAME},
        "language_info": dict(IPythonKernel.language_info),
    }


def normalize(text: str, metadata: dict | None = None, name: str = "<notebook>") -> str:
    """Return the normalised JSON text of one notebook (given as text)."""
    import nbformat

    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as err:  # nbformat raises several kinds for bad JSON or schema
        raise NotebookMetadataError(f"{name}: not a readable notebook ({err})") from err
    metadata = metadata or lab_metadata()
    for key in DROPPED_NOTEBOOK_METADATA:
        nb.metadata.pop(key, None)
    nb.metadata["kernelspec"] = dict(metadata["kernelspec"])
    nb.metadata["language_info"] = dict(metadata["language_info"])
    nb.nbformat_minor = max(nb.nbformat_minor, 5)  # cell ids, as Lab 4 writes
    for cell in nb.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    _, nb = nbformat.validator.normalize(nb)
    nbformat.validate(nb)
    out = nbformat.writes(nb)
    return out if out.endswith("\n") else out + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    metadata = lab_metadata()
    changed = []
    for path in paths:
        before = path.read_text(encoding="utf-8")
        after = normalize(before, metadata, name=str(path))
        if after != before:
            changed.append(path)
            if not args.check:
                path.write_text(after, encoding="utf-8")
    verb = "would change" if args.check else "normalised"
    for path in changed:
        print(f"{verb}: {path}")
    if args.check and changed:
        print("run: .venv/bin/python tools/normalize_notebooks.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
