"""JupyterLab, the first way in, in a real browser: headless Chromium (Debian's chromium +
chromium-driver, driven by Selenium, as in test_site_browser.py) against ``jupyter lab`` started by
``lab/lab.py`` (what ``make lab`` runs) on a free local port with a token, serving a temporary git
clone of this checkout, with outputs going to a temporary folder.

Notebook 01 must open as a notebook from its ``/lab/tree/...py`` URL, run with the smoke values of
an ``interactive.yaml`` overlay, draw every plotly figure as SVG and its LaTeX as math, show no
error and log nothing severe; saved unchanged, it leaves ``git status`` clean (the paired ``.ipynb``
is ignored, and under 1 MB)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from chromium_driver import chrome

ROOT = Path(__file__).resolve().parents[2]
SHOTS_ENV = os.environ.get("LINREPRO_SCREENSHOTS")
NOTEBOOK = "notebooks/01_kernel_derivation.py"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _git(cwd, *args, **kw):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, **kw).stdout


def _clone_of_the_working_tree(dest: Path) -> Path:
    """A clone whose HEAD is this checkout's working tree (uncommitted changes and new files included),
    so that the test sees the files as they are now and ``git status`` starts clean."""
    _git(ROOT.parent, "clone", "-q", str(ROOT), str(dest))
    files = _git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for rel in filter(None, files):
        src, dst = ROOT / rel, dest / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        elif not src.exists() and dst.exists():  # deleted in the working tree
            dst.unlink()
    ident = ["-c", "user.name=linrepro test", "-c", "user.email=test@linrepro.invalid"]
    _git(dest, "add", "-A")
    _git(dest, *ident, "commit", "-q", "--allow-empty", "-m", "the working tree under test")
    assert _git(dest, "status", "--porcelain") == ""
    return dest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what, cond, timeout, every=0.5, show=None):
    end = time.time() + timeout
    while time.time() < end:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f": {show()}" if show else ""))


@pytest.fixture
def browser():
    drv = chrome("1400,1000", 90, ())
    yield drv
    drv.quit()


@pytest.fixture
def lab(tmp_path):
    """``lab/lab.py`` of the clone on a free port; yields (base URL, token, clone, outputs); stops it by its pid."""
    clone = _clone_of_the_working_tree(tmp_path / "clone")
    # the smoke values, for this session only: the git-ignored overlay (README, 'JupyterLab')
    (clone / "interactive.yaml").write_text("profile: smoke\n")
    outputs = tmp_path / "outputs"
    port, token = _free_port(), "linrepro-test-" + os.urandom(8).hex()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LINREPRO_", "JPY_"))}
    env.update(
        LINREPRO_ROOT=str(clone),  # the kernel's linrepro reads the clone's notebooks, params, interactive.yaml
        LINREPRO_OUTPUTS=str(outputs),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "user-settings"),  # no one's own settings: the defaults lab.py installs
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    log = (tmp_path / "lab.log").open("w")
    cmd = [sys.executable, str(clone / "lab" / "lab.py"), "--no-browser", f"--port={port}"]
    cmd += ["--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up():
        assert proc.poll() is None, (
            f"jupyter lab exited {proc.returncode}:\n{(tmp_path / 'lab.log').read_text()[-3000:]}"
        )
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        _wait("jupyter lab to answer", up, 90)
        yield {"base": base, "token": token, "clone": clone, "outputs": outputs, "log": tmp_path / "lab.log"}
    finally:
        if proc.poll() is None:  # stop the server by its pid; it shuts its kernels down
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the server and its kernels
                proc.wait(10)
        log.close()


def _click_menu(drv, menu: str, command: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    bar = WebDriverWait(drv, 30).until(
        lambda d: next(
            (e for e in d.find_elements(By.CSS_SELECTOR, "#jp-menu-panel .lm-MenuBar-item") if e.text.strip() == menu),
            None,
        )
    )
    bar.click()
    try:
        item = WebDriverWait(drv, 10).until(
            EC.element_to_be_clickable((By.CSS_SELECTOR, f'.lm-Menu-item[data-command="{command}"]'))
        )
    except Exception:
        seen = [e.get_attribute("data-command") for e in drv.find_elements(By.CSS_SELECTOR, ".lm-Menu-item")]
        raise AssertionError(f"no {command!r} in the {menu} menu: {seen}") from None
    item.click()


JS_STATE = """
const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
if (!panel) return null;
const cells = Array.from(panel.querySelectorAll('.jp-CodeCell'));
const plots = Array.from(panel.querySelectorAll('.jp-OutputArea-output.jp-RenderedPlotly'));
const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
return {
  code_cells: cells.length,
  prompts: cells.map(c => ((c.querySelector('.jp-InputPrompt') || {}).textContent || '').trim()),
  plots: plots.length,
  plots_with_svg: plots.filter(p => p.querySelector('svg.main-svg')).length,
  math: panel.querySelectorAll('.jp-MarkdownCell mjx-container').length,
  math_errors: panel.querySelectorAll('mjx-merror, .MathJax_Error').length,
  errors: Array.from(panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
               .map(e => e.textContent).filter(t => /Traceback|Error/.test(t)),
  kernel: indicator ? indicator.getAttribute('data-status') : null,
};
"""


@pytest.mark.slow
def test_notebook_01_opens_runs_and_saves_clean_in_jupyterlab(browser, lab):
    shots = Path(SHOTS_ENV) if SHOTS_ENV else lab["log"].parent
    shots.mkdir(parents=True, exist_ok=True)
    try:
        _open_run_and_save(browser, lab, shots)
    except BaseException:
        browser.save_screenshot(str(shots / "lab-01-failed.png"))
        print(f"screenshot: {shots / 'lab-01-failed.png'}\njupyter lab's log:\n{lab['log'].read_text()[-4000:]}")
        raise


def _open_run_and_save(drv, lab, shots):
    from selenium.webdriver.common.by import By

    clone = lab["clone"]
    state = lambda: drv.execute_script(JS_STATE)  # noqa: E731
    drv.get(f"{lab['base']}/lab/tree/{NOTEBOOK}?token={lab['token']}")
    # the .py opens as a notebook (the default viewer lab.py installs), not in the text editor
    editor = ".jp-FileEditor:not(.lm-mod-hidden)"
    _wait(
        "a notebook panel",
        lambda: (s := state()) and s["code_cells"] or drv.find_elements(By.CSS_SELECTOR, editor),
        90,
        show=lambda: (
            "none" + (", the .py opened in the text editor" if drv.find_elements(By.CSS_SELECTOR, editor) else "")
        ),
    )
    assert not drv.find_elements(By.CSS_SELECTOR, editor), "the .py opened in the text editor, not as a notebook"
    title = drv.find_element(By.CSS_SELECTOR, ".lm-TabBar-tab.jp-mod-current .lm-TabBar-tabLabel").text
    assert title == Path(NOTEBOOK).name, title
    assert all(p == "[ ]:" for p in state()["prompts"]), state()
    _wait("the kernel", lambda: state()["kernel"] == "idle", 90, show=state)

    # a Run All clicked while the new kernel's session is still settling can be dropped (cells stay
    # "[ ]:" with the kernel idle): click it again then; once a cell runs, it has taken
    for attempt in range(3):
        _click_menu(drv, "Run", "runmenu:run-all")
        try:
            _wait("the run to start", lambda: any(p != "[ ]:" for p in state()["prompts"]), 20, show=state)
            clicks = attempt + 1
            break
        except AssertionError:
            if attempt == 2:
                raise

    def finished():
        s = state()
        return s if s["kernel"] == "idle" and all(p[1:-2].isdigit() for p in s["prompts"]) else None

    _wait("every cell to run", finished, 240, show=state)
    _wait("every figure to draw", lambda: (s := state())["plots_with_svg"] == s["plots"] > 0, 60, show=state)
    done = state()
    assert not done["errors"], done["errors"]
    assert done["math"] > 0 and done["math_errors"] == 0, done
    # the overlay said what it set (the smoke values), so no one takes them for the cell's defaults
    text = drv.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden)").text
    assert "interactive.yaml (profile smoke) sets" in text and "n_queries = 16" in text, text[:2000]

    # a screenshot with figures: the second figure in the middle of the page
    drv.execute_script(
        "const p = document.querySelectorAll('.jp-OutputArea-output.jp-RenderedPlotly');"
        "p[Math.min(1, p.length - 1)].scrollIntoView({block: 'center'});"
    )
    time.sleep(1)
    drv.save_screenshot(str(shots / "lab-01.png"))

    paired = clone / "notebooks" / "01_kernel_derivation.ipynb"
    before = paired.stat().st_mtime_ns if paired.exists() else 0
    _click_menu(drv, "File", "docmanager:save")

    def saved():
        if not paired.exists() or paired.stat().st_mtime_ns == before:
            return None
        try:
            nb = json.loads(paired.read_text())
        except ValueError:  # being written
            return None
        return nb if any(c.get("outputs") for c in nb["cells"]) else None

    nb = _wait("the paired .ipynb with outputs", saved, 60)
    severe = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe

    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert sum(PLOTLY_MIME in o.get("data", {}) for o in outputs) == done["plots"]
    size = paired.stat().st_size
    assert size < 1_000_000, f"the paired .ipynb is {size:,} bytes"
    assert "plotly.js v" not in paired.read_text()  # no inlined copy of plotly.js
    # saving changed nothing git tracks: the .py is as committed, the .ipynb and interactive.yaml are ignored
    ignored = _git(clone, "check-ignore", "notebooks/01_kernel_derivation.ipynb", "interactive.yaml").split()
    assert ignored == ["notebooks/01_kernel_derivation.ipynb", "interactive.yaml"]
    assert _git(clone, "status", "--porcelain") == "", _git(clone, "diff")
    # interactive results went to the outputs folder given, not into the clone
    assert (lab["outputs"] / "interactive" / "01_kernel_derivation" / "results.json").exists()
    (shots / "lab-01.json").write_text(json.dumps({**done, "ipynb_bytes": size, "run_all_clicks": clicks}, indent=1))
