"""JupyterLab in a real browser: it opens notebook 10, runs its first cells, shows output and no
error, and opening a notebook leaves the tracked file byte-identical.

Needs Debian's ``chromium`` (``apt-get install chromium``) and pip ``playwright``, which drives
that browser through ``executable_path`` (no browser download). Without them the test is
skipped, unless ``COOKBOOK_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where it fails instead.
The server runs as the current user (``--allow-root`` when that is root, as in containers) on
127.0.0.1 with a random port and token, over a copy of ``notebooks/`` in a temporary folder,
in the smoke profile; it is stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The folder under test (a normalised copy can be checked before the real one is rewritten).
NOTEBOOKS = Path(os.environ.get("COOKBOOK_NOTEBOOKS_DIR", ROOT / "notebooks"))
NOTEBOOK = "10_explore_query_document_pairs.ipynb"
CHROMIUM = os.environ.get("COOKBOOK_CHROMIUM", "/usr/bin/chromium")
RUN_CELLS = 8  # notebook cells (markdown included) run with shift-enter: parameters to the first print
REQUIRED = os.environ.get("COOKBOOK_REQUIRE_BROWSER") == "1"


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if REQUIRED:
            pytest.fail(f"COOKBOOK_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(root_dir: Path, state_dir: Path):
    """Start ``jupyter lab`` on 127.0.0.1 with a token; yield its base URL and token; stop it."""
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, COOKBOOK_PROFILE="smoke", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false",
               # the user's own Lab settings, workspaces and runtime files stay out of the test
               JUPYTER_CONFIG_DIR=str(state_dir / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(state_dir / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(state_dir / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(state_dir / "runtime"))
    command = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser",
               "--ServerApp.open_browser=False", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = open(state_dir / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({server.returncode}): "
                                   f"{(state_dir / 'server.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield base, token
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()


def _kernel_idle(page, timeout_ms: int) -> None:
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) "
                           ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout_ms)


def _dirty_marks(page, settle_ms: int) -> list[str]:
    """Elements Lab marks modified (the tab, the panel), after letting the kernel's first
    replies settle; an empty list when the notebook stays clean."""
    deadline = time.monotonic() + settle_ms / 1000
    while True:
        marks = page.evaluate("() => [...document.querySelectorAll('.jp-mod-dirty')]"
                              ".map(e => e.className.slice(0, 160))")
        if not marks or time.monotonic() > deadline:
            return marks
        page.wait_for_timeout(500)


@pytest.mark.slow
def test_lab_opens_runs_and_leaves_the_notebook_unchanged(tmp_path):
    _need(Path(CHROMIUM).exists(), f"no browser at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "pip playwright is not installed (pip install -e '.[dev]')")
    started = time.perf_counter()
    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    tracked = (NOTEBOOKS / NOTEBOOK).read_bytes()
    state = tmp_path / "lab-state"
    state.mkdir()
    # Lab's own settings for this server: no "official Jupyter news?" prompt over the notebook
    news = state / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')
    screenshot = Path(os.environ.get("COOKBOOK_BROWSER_SCREENSHOT", tmp_path / "lab.png"))

    with jupyter_lab(work, state) as (base, token), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/lab/tree/{NOTEBOOK}?reset&token={token}")
        panel = ".jp-NotebookPanel:not(.lm-mod-hidden)"
        page.wait_for_selector(f"{panel} .jp-Cell", timeout=120_000)
        _kernel_idle(page, 120_000)

        # 1. Opening must not modify the notebook: no dirty mark, and saving (what autosave
        #    would do) writes back exactly the tracked bytes.
        page.wait_for_timeout(3000)  # the kernel_info reply updates language_info
        dirty = _dirty_marks(page, settle_ms=10_000)
        assert not dirty, f"Lab marks the notebook modified on open ({dirty}): run tools/normalize_notebooks.py"
        page.keyboard.press("Control+s")
        page.wait_for_timeout(2000)
        assert (work / NOTEBOOK).read_bytes() == tracked, \
            "opening and saving in Lab rewrote the notebook: run tools/normalize_notebooks.py"

        # 2. Run the first cells with shift-enter, from the first cell in command mode.
        page.locator(f"{panel} .jp-Cell").first.locator(".jp-InputPrompt").click()
        for _ in range(RUN_CELLS):
            page.keyboard.press("Shift+Enter")
            page.wait_for_timeout(300)
        page.wait_for_function(
            """([sel, n]) => {
                 const prompts = [...document.querySelectorAll(sel + ' .jp-CodeCell .jp-InputPrompt')]
                   .map(p => p.textContent.trim());
                 return prompts.filter(t => /^\\[\\d+\\]:$/.test(t)).length >= n
                        && !prompts.some(t => t.includes('*'));
               }""", arg=[panel, 5], timeout=240_000)
        _kernel_idle(page, 60_000)
        page.screenshot(path=str(screenshot), full_page=False)

        outputs = page.locator(f"{panel} .jp-OutputArea-output")
        assert outputs.count() >= 3, "the first cells should show output"
        shown = " ".join(outputs.all_inner_texts())
        assert "count" in shown or "checksum" in shown, shown[:500]
        errors = page.locator(f"{panel} .jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")
        tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
        assert not tracebacks, tracebacks[0][:2000]
        browser.close()
    assert (NOTEBOOKS / NOTEBOOK).read_bytes() == tracked, "the tracked notebook changed"
    print(f"browser test: {time.perf_counter() - started:.1f} s, screenshot {screenshot}")


def test_make_lab_runs_as_root():
    """``make lab`` passes ``--allow-root`` when the user is root (every container)."""
    make = shutil.which("make")
    _need(make is not None, "make is not installed")
    shown = subprocess.run([make, "-n", "lab", "VENV=.venv-absent", "STAMP="], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    lab_line = next(line for line in shown.splitlines() if " lab" in line and "jupyter" in line)
    assert "--ServerApp.root_dir" in lab_line or "notebooks" in lab_line
    if os.geteuid() == 0:
        assert "--allow-root" in lab_line, lab_line
    else:
        assert "--allow-root" not in lab_line, lab_line
