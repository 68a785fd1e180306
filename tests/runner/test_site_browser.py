"""The published site in a real browser: headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium) with the network switched off, over the site that `reproduce --profile smoke`
built. Every report's plotly figures must render to SVG and the console must stay clean. The
index's scope box and one report's takeaway are on the first screen; both are screenshot
(``LINREPRO_SCREENSHOTS=/tmp/shots`` keeps the pictures) for a person to look at."""

import json
import os
from pathlib import Path

import pytest
from chromium_driver import chrome

ROOT = Path(__file__).resolve().parents[2]
# screenshots go beside the smoke outputs (a temporary folder) unless LINREPRO_SCREENSHOTS names a folder
SHOTS_ENV = os.environ.get("LINREPRO_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser():
    drv = chrome("1280,1000", 60, ("--allow-file-access-from-files",))
    # the network off: every request other than file:// fails
    drv.execute_cdp_cmd("Network.enable", {})
    drv.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
    )
    yield drv
    drv.quit()


def _severe(drv):
    return [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]


def _wait_plots(drv, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, timeout).until(
        lambda d: d.execute_script(
            "const p = document.querySelectorAll('.js-plotly-plot');"
            "return p.length > 0 && Array.from(p).every(e => e.querySelector('svg.main-svg'));"
        )
    )


@pytest.mark.notebook
def test_site_and_every_report_render_offline(browser, smoke_outputs):
    from selenium.webdriver.common.by import By

    out = smoke_outputs["dir"]
    index = out / "site" / "index.html"
    assert index.exists(), smoke_outputs["log"]
    shots = Path(SHOTS_ENV) if SHOTS_ENV else Path(smoke_outputs["dir"]) / "browser-test"
    shots.mkdir(parents=True, exist_ok=True)

    browser.get(index.as_uri())
    assert not _severe(browser), _severe(browser)
    body = browser.find_element(By.TAG_NAME, "body").text
    # the ledger comes first, with all 17 claims and a verdict each
    assert body.index("Claims ledger") < body.index("Reports")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.ledger tr")[1:]
    assert len(rows) == 17
    verdicts = [r.find_element(By.CSS_SELECTOR, "td.verdict").text.split("\n")[0] for r in rows]
    assert set(verdicts) <= {"supported", "contradicted", "inconclusive", "not testable here"}
    assert "the check failed" not in body  # a broken check shows as such; none may be broken
    browser.save_screenshot(str(shots / "index.png"))
    # the scope box: on the first screen, with the hardware, the seeds and what was not tested
    scope = browser.find_element(By.ID, "scope")
    top = browser.execute_script("return arguments[0].getBoundingClientRect().top", scope)
    assert 0 <= top < browser.execute_script("return window.innerHeight"), top
    for word in ("hardware", "cores", "paper text and code unavailable", "seeds", "not tested", "seed's marks"):
        assert word in scope.text, word
    scope.screenshot(str(shots / "index-scope.png"))

    reports = [a.get_attribute("href") for a in browser.find_elements(By.LINK_TEXT, "report")]
    notebooks = sorted(p.name for p in (out / "smoke").iterdir())
    assert len(set(h.split("#")[0] for h in reports)) >= len(notebooks)
    checked = {}
    for href in dict.fromkeys(h.split("#")[0] for h in reports):
        browser.get(href)
        _wait_plots(browser)
        n_plots = browser.execute_script("return document.querySelectorAll('.js-plotly-plot').length")
        n_svg = browser.execute_script(
            "return Array.from(document.querySelectorAll('.js-plotly-plot')).filter("
            "e => e.querySelector('svg.main-svg')).length"
        )
        assert n_plots > 0 and n_svg == n_plots, (href, n_plots, n_svg)
        assert not _severe(browser), (href, _severe(browser))
        checked[href.split("/")[-3]] = n_plots
    # every evidence link lands on an existing section of its report
    for href in {h for h in reports if "#" in h}:
        browser.get(href)
        found = browser.execute_script(
            "const h = location.hash.slice(1);"
            "return !!(document.getElementById(h) || document.getElementById(decodeURIComponent(h)));"
        )
        assert found, f"no section for {href}"
    # one report's takeaway: a box on the first screen, above the contents
    browser.get(next(h for h in reports if "01_kernel_derivation" in h).split("#")[0])
    take = browser.find_element(By.CSS_SELECTOR, ".lr-takeaway")
    assert take.text.startswith("What this run found.") and "seed" in take.text, take.text
    top = browser.execute_script("return arguments[0].getBoundingClientRect().top", take)
    assert 0 <= top < browser.execute_script("return window.innerHeight"), top
    assert browser.find_element(By.CSS_SELECTOR, "details.lr-code").get_attribute("open") is None  # code folded
    take.screenshot(str(shots / "report-01-takeaway.png"))
    browser.get(next(h for h in reports if "02_attention_timing" in h).split("#")[0])
    _wait_plots(browser)
    browser.execute_script("document.querySelector('.js-plotly-plot').scrollIntoView()")
    browser.save_screenshot(str(shots / "report-02.png"))
    (shots / "checked.json").write_text(json.dumps(checked, indent=1))
    assert set(checked) >= set(notebooks), (checked, notebooks)
