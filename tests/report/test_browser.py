"""The HTML reports in a real browser: headless Chromium (Debian's `chromium` and the matching
`chromium-driver`) driven by selenium, over file:// URLs.

Checked on a report.html the report stage wrote, and on the published site's index and an
experiment page: every table rendered with the rows the data has, every image decoded
(naturalWidth > 0), no console errors, no failed or external requests; a full-page screenshot
of each goes to the test's tmp dir (and to $REPRO_BROWSER_ARTIFACTS when set).

Without Chromium the tests skip, unless REPRO_REQUIRE_BROWSER=1 (CI), where they fail:
scripts/install-test-browser.sh installs it.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from repro.report.publish import build_site


def _site_fixtures():
    """tests/report/report_site_fixtures.py, by path (tests are not a package)."""
    path = Path(__file__).with_name("report_site_fixtures.py")
    spec = importlib.util.spec_from_file_location("report_site_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_fixtures = _site_fixtures()
stage_reports, parse_page = _fixtures.stage_reports, _fixtures.parse_page  # pytest fixtures


CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"
# shared/OFFLINE.md: nothing in the browser may reach for the network or a profile.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync",
         "--window-size=1280,900")
MAX_SHOT_HEIGHT = 6000  # px; a longer page is cut there, the screenshot is for reading
PAGE_STATE = """
return {
  tables: [...document.querySelectorAll('table')].map(t => ({
      rows: t.tBodies.length ? t.tBodies[0].rows.length : 0,
      visible: t.offsetWidth > 0 && t.offsetHeight > 0,
      firstColumn: t.tBodies.length
          ? [...t.tBodies[0].rows].map(r => r.cells.length ? r.cells[0].textContent : '') : []})),
  images: [...document.images].map(i => ({complete: i.complete, width: i.naturalWidth,
                                          height: i.naturalHeight})),
  size: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
  dpr: window.devicePixelRatio,
};
"""


def _missing_browser() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in requirements.lock and the `test` extra)"
    if not any(Path(p).is_file() for p in CHROMIUM):
        return f"Chromium is not installed (none of {', '.join(CHROMIUM)})"
    if not Path(CHROMEDRIVER).is_file():
        return f"chromium-driver is not installed (no {CHROMEDRIVER})"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    reason = _missing_browser()
    if reason is not None:
        hint = "scripts/install-test-browser.sh installs it (Debian, as root)"
        if os.environ.get("REPRO_REQUIRE_BROWSER") == "1":
            pytest.fail(f"REPRO_REQUIRE_BROWSER=1 but {reason}; {hint}", pytrace=False)
        pytest.skip(f"{reason}; {hint}")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = next(p for p in CHROMIUM if Path(p).is_file())
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # An explicit driver path: selenium-manager never runs, so nothing is downloaded.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _requests(driver, page_url: str) -> tuple[list[str], list[str]]:
    """URLs the page requested and those that failed, from the DevTools network log. Only
    requests of this page count: the browser's own start page logs into the same stream."""
    sent: dict[str, str] = {}
    failed: list[str] = []
    events = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
    for ev in events:
        params = ev.get("params", {})
        if ev["method"] == "Network.requestWillBeSent" and params.get("documentURL") == page_url:
            sent[params["requestId"]] = params["request"]["url"]
    for ev in events:
        params = ev.get("params", {})
        url = sent.get(params.get("requestId"))
        if url is None:
            continue
        if ev["method"] == "Network.loadingFailed":
            failed.append(f"{url[:80]}: {params.get('errorText')}")
        elif ev["method"] == "Network.responseReceived" and params["response"]["status"] >= 400:
            failed.append(f"{url[:80]}: HTTP {params['response']['status']}")
    return list(sent.values()), failed


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def _screenshot(driver, state: dict, path: Path) -> None:
    """Full-page PNG (up to MAX_SHOT_HEIGHT), checked to be the size the page lays out at."""
    width, height = state["size"][0], min(state["size"][1], MAX_SHOT_HEIGHT)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    png = base64.b64decode(shot["data"])
    assert len(png) > 1000
    assert _png_size(png) == (round(width * state["dpr"]), round(height * state["dpr"]))
    path.write_bytes(png)
    artifacts = os.environ.get("REPRO_BROWSER_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(artifacts) / path.name)


def open_page(driver, page: Path, shot: Path) -> dict:
    """Load `page`, check it loaded cleanly, screenshot it; returns what the page rendered."""
    driver.get_log("browser"), driver.get_log("performance")  # drop earlier pages' entries
    url = page.resolve().as_uri()
    driver.get(url)
    state = driver.execute_script(PAGE_STATE)
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], f"console errors on {page}"
    urls, failed = _requests(driver, url)
    assert failed == [], f"failed requests on {page}"
    assert url in urls and all(u.startswith(("file://", "data:")) for u in urls), urls
    assert all(t["visible"] for t in state["tables"]), f"a table on {page} did not render"
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in state["images"]), \
        f"an image on {page} did not decode"
    _screenshot(driver, state, shot)
    return state


@pytest.mark.slow
def test_report_stage_html_renders(browser, stage_reports, parse_page, tmp_path):
    report = stage_reports / "quick"
    summary = json.loads((report / "summary.json").read_text())
    state = open_page(browser, report / "report.html", tmp_path / "report-quick.png")
    # Every table and image the HTML holds rendered, tables with all their body rows.
    source = parse_page(report / "report.html")
    assert [t["rows"] for t in state["tables"]] == [len(t) - 1 for t in source.tables_in_order]
    assert len(state["images"]) == len(source.srcs) >= 1  # the plots, inlined
    # The results table lists every experiment of summary.json, in its order.
    listed = [[c.removesuffix(" (baseline)") for c in t["firstColumn"]] for t in state["tables"]]
    assert summary["experiments"] in listed


def test_published_site_renders(browser, stage_reports, tmp_path):
    site = tmp_path / "site"
    build_site(stage_reports, site)
    summary = json.loads((stage_reports / "flipped/summary.json").read_text())

    index = open_page(browser, site / "index.html", tmp_path / "site-index.png")
    reports, experiments = index["tables"]
    assert reports["firstColumn"] == ["flipped", "quick"]
    quick = json.loads((stage_reports / "quick/summary.json").read_text())
    assert experiments["firstColumn"] == sorted(quick["experiments"])

    # Follow the index's link, as a reader would: relative links work from file://.
    name = summary["experiments"][0]
    browser.find_element("link text", name).click()
    page_path = site / f"experiments/{name}.html"
    assert browser.current_url == page_path.resolve().as_uri()
    page = open_page(browser, page_path, tmp_path / f"site-experiment-{name}.png")
    stages_t, final_t, checkpoints_t = page["tables"]
    assert stages_t["rows"] == len(summary["stages"][name])
    assert final_t["rows"] == len(summary["metrics"])
    assert checkpoints_t["rows"] == sum(
        len([m for m in metrics if not m.endswith("_stderr")])
        for ev in summary["evaluations"][name].values() for metrics in ev["tasks"].values())
