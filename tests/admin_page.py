"""Drives Sheaf's admin page in a real headless Chromium (Debian's chromium and chromium-driver,
installed by tests/run.sh) through Selenium's WebDriver client, as an operator would use it.

Usage: admin_page.py BASE_URL TOKEN WAF_URL SCREENSHOT
  1. opens BASE_URL/admin: the page asks for the token;
  2. gives a wrong token: the page must say it was refused;
  3. gives TOKEN, adds a WAF source named "from-page" at WAF_URL from the page's form (which
     starts its first harvest) and waits until the page shows the job finished;
  4. saves a screenshot of the whole page to SCREENSHOT.
Prints one JSON object: what the page said to the wrong token, the job's row as the page shows
it, and every message Chromium's console logged (the caller checks there is no error).
The browser may reach 127.0.0.1 only: everything else goes to a proxy that is not there.
"""

import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,2400",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--disable-extensions",
        "--metrics-recording-only",
        "--no-pings",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
    ]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


# The page redraws its tables while it refreshes, so an element found one moment may be gone
# the next (Selenium's StaleElementReferenceException, seen on a loaded machine): a row is read
# whole, in one script, from the page as it is at that moment.
READ_ROW = """
const row = document.querySelector(arguments[0]);
if (!row) return null;
return {
  cells: Array.from(row.querySelectorAll("td"), (td) => td.innerText.trim()),
  status: row.querySelector("td.status")?.innerText.trim() ?? "",
  progress: row.querySelector("progress") !== null,
};
"""


def read_row(driver, selector):
    """The row's cells' text, its status and whether it shows a progress bar; None when the
    page has no such row."""
    return driver.execute_script(READ_ROW, selector)


def main():
    base, token, waf_url, screenshot = sys.argv[1:5]
    driver = browser()
    wait = WebDriverWait(driver, 30)
    out = {}
    try:
        driver.get(base + "/admin")
        wait.until(ec.visibility_of_element_located((By.ID, "login")))

        driver.find_element(By.ID, "token").send_keys("not-the-token")
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        wait.until(lambda d: "refused" in d.find_element(By.ID, "message").text)
        out["wrong_token_message"] = driver.find_element(By.ID, "message").text
        out["main_hidden_after_wrong_token"] = not driver.find_element(By.ID, "main").is_displayed()

        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        wait.until(ec.visibility_of_element_located((By.ID, "main")))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sources-body tr[data-source]"))

        driver.find_element(By.ID, "source-editor-title").click()
        form = driver.find_element(By.ID, "source-form")
        form.find_element(By.NAME, "name").send_keys("from-page")
        form.find_element(By.NAME, "url").send_keys(waf_url)
        Select(form.find_element(By.NAME, "type")).select_by_value("waf")
        form.find_element(By.NAME, "title").send_keys("Added from the admin page")
        driver.find_element(By.ID, "source-submit").click()

        row = "#jobs-body tr[data-source='from-page']"
        deadline = time.time() + 120
        progress_seen = False
        while True:
            seen = read_row(driver, row)
            if seen:
                progress_seen = progress_seen or seen["progress"]
                if seen["status"] in ("finished", "aborted"):
                    break
            if time.time() > deadline:
                raise SystemExit("the page never showed the job of from-page finished")
            time.sleep(0.5)
        out["job_row"] = seen["cells"]
        out["progress_bar_seen"] = progress_seen
        out["message"] = driver.find_element(By.ID, "message").text
        last_job = "#sources-body tr[data-source='from-page'] td.last-job"
        out["source_row"] = driver.execute_script(
            "return document.querySelector(arguments[0])?.innerText.trim() ?? null;", last_job)
        out["sections"] = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "main h2")]

        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, max(height, 800))
        driver.save_screenshot(screenshot)
        out["console"] = driver.get_log("browser")
    finally:
        driver.quit()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
