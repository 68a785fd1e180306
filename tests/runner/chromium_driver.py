"""Headless Debian Chromium through selenium, for the browser tests (site and JupyterLab)."""

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or (
    "/usr/lib/chromium/chromedriver" if Path("/usr/lib/chromium/chromedriver").exists() else None
)


def chrome(window: str, page_load_timeout: float, extra_args=()):
    """A headless Chrome driver with console logs on, or a pytest skip that says what is missing."""
    if not CHROMIUM or not DRIVER:
        pytest.skip(
            "Chromium is not installed (needs Debian's chromium and chromium-driver: "
            "`apt-get install chromium chromium-driver`, which .ci/run does where apt-get works)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--window-size={window}",
        *extra_args,
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_page_load_timeout(page_load_timeout)
    return drv
