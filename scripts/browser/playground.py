"""Drives sift's search playground (GET /ui) in headless Chromium through Selenium and prints, as
JSON, what the page showed. Run by crates/cli/tests/playground.rs against a live `sift serve`;
the Rust test decides whether it is right.

    playground.py BASE_URL API_KEY|- COLLECTION QUERY SCREENSHOT.png

Uses Debian's chromium and chromedriver (scripts/browser/install.sh), never a downloaded one.
"""

import json
import sys
import tempfile

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The closed network: nothing in the background may try to reach the internet.
    for flag in [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}",
    ]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def ids(driver, list_id):
    # One script call reads the whole list at once: the page replaces a list's items when a
    # search answers, so element handles fetched one by one can go stale in between.
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), li => li.dataset.id);",
        f"#{list_id} > li",
    )


def main():
    base, key, collection, query, screenshot = sys.argv[1:6]
    seen = {}
    with tempfile.TemporaryDirectory() as profile:
        driver = browser(profile)
        wait = WebDriverWait(driver, 30, ignored_exceptions=[StaleElementReferenceException])
        try:
            driver.get(base + "/ui")
            status = driver.find_element(By.ID, "status")
            if key != "-":
                # Without the key the page says it needs one.
                wait.until(lambda d: "API key" in status.text)
                seen["status_without_key"] = status.text
                driver.find_element(By.ID, "api-key").send_keys(key)
                driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
            wait.until(ec.presence_of_element_located(
                (By.CSS_SELECTOR, f"#collection option[value='{collection}']")))
            driver.find_element(By.ID, "query").send_keys(query)
            driver.find_element(By.ID, "search").click()
            wait.until(lambda d: ids(d, "recall-list") and ids(d, "rerank-list"))
            seen["recall"] = ids(driver, "recall-list")
            seen["reranked"] = ids(driver, "rerank-list")
            seen["moves"] = [m.text for m in driver.find_elements(By.CSS_SELECTOR, "#rerank-list .move")]
            seen["marks"] = [m.text for m in driver.find_elements(By.CSS_SELECTOR, "#recall-list mark")]
            seen["recall_texts"] = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#recall-list > li")]
            seen["injected_elements"] = len(driver.find_elements(By.CSS_SELECTOR, ".hits img, .hits script, .hits b"))
            seen["timings"] = driver.find_element(By.ID, "rerank-timings").text
            driver.save_screenshot(screenshot)

            # Reranker off: the reranked column empties and says so.
            driver.find_element(By.ID, "rerank-toggle").click()
            driver.find_element(By.ID, "search").click()
            wait.until(lambda d: not ids(d, "rerank-list") and d.find_element(By.ID, "rerank-off").is_displayed())
            seen["recall_without_rerank"] = ids(driver, "recall-list")

            # The direct panel.
            driver.find_element(By.ID, "direct-query").send_keys("a volcano erupting")
            driver.find_element(By.ID, "direct-docs").send_keys("The volcano erupted.\nA recipe for bread.\n<i>tagged</i>")
            driver.find_element(By.ID, "direct-rerank").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#direct-list > li")) == 3)
            seen["direct"] = [li.get_attribute("data-index") for li in driver.find_elements(By.CSS_SELECTOR, "#direct-list > li")]
            seen["direct_texts"] = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#direct-list > li")]
            seen["status"] = driver.find_element(By.ID, "status").text
        finally:
            driver.quit()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
