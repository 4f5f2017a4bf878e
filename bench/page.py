"""One upload through ferry's browser page in Debian's headless Chromium:
sign in, choose FILE, wait for the upload to end. Prints its seconds, from
the file chosen to the page saying it is stored.

usage: page.py URL KEY FILE
"""

import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, key, path = sys.argv[1:]
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage"]:
    options.add_argument(arg)
driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
try:
    driver.get(url)
    driver.find_element(By.NAME, "api_key").send_keys(key + "\n")
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "upload").is_displayed())
    start = time.monotonic()
    driver.find_element(By.ID, "choose-files").send_keys(path)
    row = "li.upload"
    WebDriverWait(driver, 3600, poll_frequency=0.02).until(
        lambda d: d.find_element(By.CSS_SELECTOR, row).get_attribute("data-upload-state") in ("done", "failed"))
    seconds = time.monotonic() - start
    state = driver.find_element(By.CSS_SELECTOR, row).get_attribute("data-upload-state")
    if state != "done":
        sys.exit(f"the page's upload ended {state}: {driver.find_element(By.CSS_SELECTOR, row).text}")
    print(seconds)
finally:
    driver.quit()
