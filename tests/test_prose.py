"""Notebook prose states no measured number: results are rendered from the run's variables.

Typed results go stale the moment a run differs (another machine, another seed, a new
version). The check looks for the shapes measured numbers take in prose: metric values with
three or more decimals, p-values, throughputs and wall times in seconds. Settings (a
temperature of 0.8, a 95% interval, "under 10 minutes" targets) do not have those shapes, and a
paper's numbers are allowed on a line that cites it ("reports", "reported", "paper", "et al.").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MEASURED = re.compile(
    r"(?<![\w.])0\.\d{3,}"                                   # a metric value: 0.614, 0.0143
    r"|\bp\s*[=<≈]\s*\d"                                     # a p-value
    r"|\b\d+(?:\.\d+)?\s*(?:passages|pairs|queries|docs|documents|impressions)\s*(?:/\s*s|per second)\b"
    r"|\b\d+(?:\.\d+)?\s*s\b(?!\w)"                         # a wall time in seconds
    r"|\b\d+(?:\.\d+)?x\s+(?:faster|slower|speed)"           # a measured speed-up
)
CITES = re.compile(r"\b(reports?|reported|paper|et al\.)", re.I)


def strip_code(text: str) -> str:
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def typed_numbers(markdown: str) -> list[str]:
    """The lines of ``markdown`` that state a measured-looking number without a citation."""
    return [line.strip() for line in strip_code(markdown).splitlines()
            if MEASURED.search(line) and not CITES.search(line)]


def test_the_check_catches_typed_results_and_lets_settings_through():
    assert typed_numbers("Fine-tuning moved nDCG@10 from 0.614 to 0.629 (p = 0.001).")
    assert typed_numbers("Encoding ran at 36 passages/s on 2 cores.")
    assert typed_numbers("The laptop run took 584 s.")
    assert not typed_numbers("Sample at temperature 0.8; a bootstrap 95% interval; under 10 minutes.")
    assert not typed_numbers("They report nDCG@10 of 48.4 on CoIR (Cai et al.).")
    assert not typed_numbers("Set `tau = 0.0001` and compare `p = 0.05`.")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_notebook_prose_states_no_measured_number(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    found = [(i, line) for i, c in enumerate(cells) if c["cell_type"] == "markdown"
             for line in typed_numbers("".join(c["source"]))]
    assert not found, (f"{notebook.name}: markdown states numbers a run should compute "
                       f"(render them from variables, or state the rule): {found}")
