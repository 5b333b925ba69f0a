"""The web view in a real headless Chromium (Debian's chromium and chromium-driver): list,
filter, open an alert, its evidence graph, an entity's timeline, markup in events that runs
no script, and the same pages with the OpenSearch-compatible server as the alert store.

Screenshots go to $SIEM_GAD_SCREENSHOTS when set (docs/ui.md shows the ones taken so), else
to the test's temporary folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import read_alerts, require_module, require_program, siem_gad
from ui_support import HOSTILE_ID, HOSTILE_USER, deploy, hostile_alert, serving

CHROMIUM, CHROMEDRIVER = require_program("chromium", "chromedriver", package="chromium chromium-driver")
webdriver = require_module("selenium.webdriver", extra="test")
from selenium.common.exceptions import NoAlertPresentException, WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("SIEM_GAD_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Path:
    return deploy(tmp_path_factory.mktemp("ui-browser") / "deploy")


def table_ids(driver) -> list[str]:
    return [row.get_attribute("data-alert-id") for row in driver.find_elements(By.CSS_SELECTOR, "#alerts tbody tr[data-alert-id]")]


def follow(driver, element) -> None:
    """Click `element` (a link or a submit button) and wait until the next page has loaded:
    reading the old page's rows while the new one replaces it finds stale elements."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 20).until(lambda _: detached(page))
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


def detached(element) -> bool:
    """Whether `element` left the document. Chromium answers a node of a page being replaced
    either with a stale-element error or, now and then, with 'Node with given id does not
    belong to the document' (a plain WebDriverException): both mean it is gone."""
    try:
        element.is_enabled()
    except WebDriverException:
        return True
    return False


def no_dialog(driver) -> bool:
    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_list_filter_open_an_alert_its_graph_and_the_entity_timeline(browser, deployment, shots):
    alerts = read_alerts(deployment.parent / "state" / "alerts.jsonl")
    chosen = max((a for a in alerts if a["siem_gad"]["detector"] == "iforest"),
                 key=lambda a: (sum(e["unusual"] for e in a["siem_gad"]["graph"]["edges"]) > 0,
                                len(a["siem_gad"]["graph"]["nodes"]), a["event"]["risk_score"]))
    with serving(deployment) as url:
        browser.get(f"{url}/alerts")
        assert browser.title.startswith("Alerts")
        assert len(table_ids(browser)) == min(50, len(alerts))
        browser.save_screenshot(str(shots / "ui-alerts.png"))

        Select(browser.find_element(By.NAME, "detector")).select_by_value("iforest")
        Select(browser.find_element(By.NAME, "sort")).select_by_value("riskiest")
        browser.find_element(By.NAME, "entity").send_keys(chosen["siem_gad"]["entity"]["value"])
        follow(browser, browser.find_element(By.ID, "apply"))
        shown = table_ids(browser)
        by_id = {a["siem_gad"]["alert_id"]: a for a in alerts}
        assert chosen["siem_gad"]["alert_id"] in shown
        assert all(by_id[i]["siem_gad"]["detector"] == "iforest" for i in shown)

        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-alert-id="{chosen["siem_gad"]["alert_id"]}"] a.open')
        follow(browser, row)
        assert chosen["siem_gad"]["alert_id"] in browser.title
        alerted = browser.find_elements(By.CSS_SELECTOR, "svg.evidence-graph g.node.alerted")
        assert [n.get_attribute("data-entity") for n in alerted] == [chosen["siem_gad"]["entity"]["value"]]
        unusual = browser.find_elements(By.CSS_SELECTOR, "svg.evidence-graph line.edge.unusual")
        assert len(unusual) == sum(e["unusual"] for e in chosen["siem_gad"]["graph"]["edges"]) > 0
        bars = browser.find_elements(By.CSS_SELECTOR, "#explanation rect")
        assert len(bars) == len(chosen["siem_gad"]["explanation"])
        browser.save_screenshot(str(shots / "ui-alert.png"))
        graph = browser.find_element(By.CSS_SELECTOR, "svg.evidence-graph")
        browser.execute_script("arguments[0].scrollIntoView()", graph)
        graph.screenshot(str(shots / "ui-evidence-graph.png"))

        follow(browser, browser.find_element(By.ID, "entity-link"))
        charts = browser.find_elements(By.CSS_SELECTOR, "#timeline .chart")
        assert "iforest" in [c.get_attribute("data-detector") for c in charts]
        assert browser.find_elements(By.CSS_SELECTOR, "svg.timeline circle.alerted")
        browser.save_screenshot(str(shots / "ui-entity.png"))

        browser.get(f"{url}/")
        assert browser.find_elements(By.CSS_SELECTOR, "#incidents tbody tr")
        browser.save_screenshot(str(shots / "ui-incidents.png"))
        browser.get(f"{url}/status")
        assert browser.find_element(By.ID, "job-network")
        browser.save_screenshot(str(shots / "ui-status.png"))


def test_markup_in_event_fields_renders_as_text_and_runs_no_script(browser, deployment):
    path = deployment.parent / "state" / "alerts.jsonl"
    with path.open("a") as handle:
        handle.write(json.dumps(hostile_alert(read_alerts(path)[0])) + "\n")
    with serving(deployment) as url:
        for page in (f"/alerts/{HOSTILE_ID}", "/alerts?entity=onerror", "/entities/user:" + HOSTILE_USER):
            browser.get(url + page)
            assert no_dialog(browser), page
            assert browser.execute_script("return document.images.length") == 0
            assert not browser.find_elements(By.CSS_SELECTOR, "main script, main img, main svg svg")
            assert HOSTILE_USER in browser.find_element(By.TAG_NAME, "main").text, page


@pytest.fixture(scope="module")
def opensearch():
    from osmem_server import OsmemServer

    server = OsmemServer.start(japanese=False)
    yield server.url
    server.close()


def test_the_same_pages_with_opensearch_as_the_alert_store(browser, tmp_path_factory, opensearch, shots):
    deployment = deploy(tmp_path_factory.mktemp("ui-opensearch") / "deploy", es_url=opensearch)
    alerts = read_alerts(deployment.parent / "state" / "alerts.jsonl")
    marked = alerts[0]["siem_gad"]["alert_id"]
    siem_gad("feedback", marked, "-c", str(deployment), "--verdict", "false_positive")
    pages = {}
    for sink in ("alerts", "siem"):
        with serving(deployment, sink=sink) as url:
            for verdict in ("false_positive", "true_positive", "none"):
                browser.get(f"{url}/alerts?verdict={verdict}&per_page=500")
                pages.setdefault(sink, {})[verdict] = sorted(table_ids(browser))
            browser.get(f"{url}/alerts?sort=riskiest&per_page=20")
            assert f"alerts from {sink}" in browser.find_element(By.CSS_SELECTOR, "header .source").text
            pages[sink]["riskiest"] = table_ids(browser)
            Select(browser.find_element(By.NAME, "detector")).select_by_value("gcn_hmm")
            follow(browser, browser.find_element(By.ID, "apply"))
            pages[sink]["gcn_hmm"] = table_ids(browser)
            chosen = pages[sink]["riskiest"][0]
            browser.get(f"{url}/alerts/{chosen}")
            pages[sink]["graph"] = sorted(n.get_attribute("data-entity") for n in
                                          browser.find_elements(By.CSS_SELECTOR, "svg.evidence-graph g.node"))
            browser.get(f"{url}/")
            pages[sink]["incidents"] = len(browser.find_elements(By.CSS_SELECTOR, "#incidents tbody tr"))
            if sink == "siem":
                browser.get(f"{url}/alerts/{chosen}")
                browser.save_screenshot(str(shots / "ui-alert-opensearch.png"))
    assert pages["alerts"]["false_positive"] == pages["siem"]["false_positive"] == [marked]
    assert pages["alerts"]["true_positive"] == pages["siem"]["true_positive"] == []
    assert pages["alerts"]["none"] == pages["siem"]["none"] and len(pages["siem"]["none"]) == len(alerts) - 1
    assert pages["alerts"]["riskiest"] == pages["siem"]["riskiest"] and len(pages["siem"]["riskiest"]) == min(20, len(alerts))
    assert pages["alerts"]["gcn_hmm"] == pages["siem"]["gcn_hmm"] != []
    assert pages["alerts"]["graph"] == pages["siem"]["graph"] != []
    assert pages["alerts"]["incidents"] == pages["siem"]["incidents"] > 0
