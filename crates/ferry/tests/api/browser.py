"""Drives ferry's page in Debian's Chromium through selenium, as a person
would: the browser.rs tests start the server, run one scenario here, and
check what it prints (one JSON object) against the server's own state.

usage: browser.py SCENARIO URL KEY SCREENSHOT_DIR DOWNLOAD_DIR [FILE...]
"""

import json
import os
import re
import sys
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

scenario, url, key, shots, downloads, *files = sys.argv[1:]
# Long enough for a slow machine; a wait that runs out fails the test
# with what it waited for.
TIMEOUT = 120


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("FERRY_TEST_CHROMIUM", "/usr/bin/chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]:
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": downloads,
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("FERRY_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


driver = browser()
report = {"console_errors": []}


def wait_for(what, condition):
    try:
        # The page re-renders lists as it goes: an element found a moment
        # ago may be gone, and is looked for again.
        ignored = [NoSuchElementException, StaleElementReferenceException]
        return WebDriverWait(driver, TIMEOUT, poll_frequency=0.05, ignored_exceptions=ignored).until(
            lambda d: condition())
    except TimeoutException as e:
        shot("timed-out")
        raise AssertionError(f"waited {TIMEOUT} s for {what}; page said: {text('#messages')!r}") from e


def find(selector):
    return driver.find_element(By.CSS_SELECTOR, selector)


def find_all(selector):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def text(selector):
    elements = find_all(selector)
    return elements[0].text if elements else ""


def shot(name):
    os.makedirs(shots, exist_ok=True)
    driver.save_screenshot(os.path.join(shots, f"{scenario}-{name}.png"))


def console():
    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            report["console_errors"].append(entry["message"])


def sign_in(with_key):
    field = find("input[name=api_key]")
    field.clear()
    field.send_keys(with_key)
    find("#sign-in-form button[type=submit]").click()


def signed_in():
    wait_for("the signed-in page", lambda: find("#upload").is_displayed() and find("#files").is_displayed())


def choose(paths):
    find("#choose-files").send_keys("\n".join(paths))


def upload_row(name):
    rows = [r for r in find_all("#uploads li.upload") if r.get_attribute("data-file-name") == name]
    return rows[0] if rows else None


def state(name):
    row = upload_row(name)
    return row.get_attribute("data-upload-state") if row else None


def attribute(name, attr):
    return int(upload_row(name).get_attribute(attr) or 0)


def file_row(name):
    rows = [r for r in find_all("#file-rows tr") if r.get_attribute("data-file-id") == name]
    return rows[0] if rows else None


def checkpoints():
    """Parts checkpointed on the server so far: one request per part sent."""
    with urllib.request.urlopen(f"{url}/metrics") as response:
        body = response.read().decode()
    total = 0
    for line in body.splitlines():
        if line.startswith("ferry_http_requests_total{") and "parts/checkpoint" in line and 'status="200"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def throttle(bytes_per_second):
    driver.set_network_conditions(offline=False, latency=0, download_throughput=bytes_per_second,
                                  upload_throughput=bytes_per_second)


def journaled_tokens():
    """Part tokens in the page's IndexedDB journal, over all its uploads."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const open = indexedDB.open('ferry');
        open.onsuccess = () => {
          const all = open.result.transaction('uploads').objectStore('uploads').getAll();
          all.onsuccess = () => done(all.result.reduce((n, e) => n + Object.keys(e.tokens ?? {}).length, 0));
        };""")


def accept_leave_dialog():
    try:
        driver.switch_to.alert.accept()
    except NoAlertPresentException:
        pass


def start_slow_upload(path):
    """Signs in and starts uploading `path` slowly enough that a test can act
    between its parts; its name."""
    driver.get(url)
    sign_in(key)
    signed_in()
    throttle(8 * 1024 * 1024)
    choose([path])
    return os.path.basename(path)


def upload_and_manage():
    """A wrong key, then three files up, one down, one deleted."""
    driver.get(url)
    sign_in("fry_wrong_" + "x" * 40)
    wait_for("the refusal of a wrong key", lambda: text("#messages"))
    report["wrong_key_message"] = text("#messages")
    report["signed_in_with_wrong_key"] = find("#upload").is_displayed()
    shot("wrong-key")
    sign_in(key)
    signed_in()
    report["key_in_session_storage"] = driver.execute_script("return sessionStorage.getItem('ferry.api_key')") == key
    report["cookies"] = driver.get_cookies()
    choose(files)
    names = [os.path.basename(p) for p in files]
    wait_for("every upload to start", lambda: all(state(n) for n in names))
    shot("uploading")
    wait_for("every upload to end", lambda: all(state(n) in ("done", "failed") for n in names))
    report["states"] = {n: state(n) for n in names}
    shot("uploaded")
    wait_for("the list to show the files", lambda: all(file_row(n) for n in names))
    report["listed"] = [r.get_attribute("data-file-id") for r in find_all("#file-rows tr")]
    report["totals"] = text("#totals")
    driver.execute_script("document.querySelector('#files').scrollIntoView()")
    shot("files")

    # Details of the CSV: its columns, as the server extracted them.
    csv = next(n for n in names if n.endswith(".csv"))
    file_row(csv).find_element(By.XPATH, ".//button[text()='Details']").click()
    wait_for("the details", lambda: find("#details").is_displayed())
    report["details"] = text("#details-list")
    shot("details")
    find("#details form button").click()

    # Download the largest through the page, to the browser's download folder.
    largest = max(files, key=os.path.getsize)
    name = os.path.basename(largest)
    file_row(name).find_element(By.CSS_SELECTOR, "a.download").click()
    target = os.path.join(downloads, name)
    wait_for("the download", lambda: os.path.exists(target) and not any(
        f.endswith(".crdownload") for f in os.listdir(downloads)))
    report["downloaded"] = target

    # Delete the second, confirming in the dialog.
    doomed = names[1]
    file_row(doomed).find_element(By.XPATH, ".//button[text()='Delete']").click()
    wait_for("the confirmation", lambda: find("#confirm-delete").is_displayed())
    shot("confirm-delete")
    find("#confirm-delete-button").click()
    wait_for("the row to go", lambda: file_row(doomed) is None)
    report["deleted"] = doomed
    console()


def pause_reload_resume():
    """One large file: paused and resumed, then the tab reloaded mid-way and
    the file chosen again."""
    path = files[0]
    name = start_slow_upload(path)
    wait_for("a few parts", lambda: state(name) == "uploading" and attribute(name, "data-parts-done") >= 2)
    find(f"#uploads li.upload[data-file-name='{name}'] button.pause").click()
    wait_for("the pause", lambda: state(name) == "paused")
    shot("paused")
    report["parts_total"] = attribute(name, "data-parts-total")
    paused_at = attribute(name, "data-parts-done")
    before = checkpoints()
    report["checkpoints_while_paused"] = before == checkpoints() and before == paused_at
    find(f"#uploads li.upload[data-file-name='{name}'] button.resume").click()
    wait_for("the resume", lambda: state(name) == "uploading" and attribute(name, "data-parts-done") > paused_at)
    report["resumed_after_pause"] = True

    # A reload in the middle: the tab forgets everything but its journal.
    # Checkpoints are held back first, so that some parts are stored and in
    # the journal but not checkpointed when the tab goes.
    wait_for("more parts", lambda: attribute(name, "data-parts-done") >= paused_at + 2)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*parts/checkpoint*"]})
    checkpointed = attribute(name, "data-parts-done")
    wait_for("a part stored but not checkpointed", lambda: journaled_tokens() > checkpointed)
    driver.refresh()
    accept_leave_dialog()
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    signed_in()
    wait_for("the unfinished upload", lambda: find("#unfinished").is_displayed())
    report["unfinished"] = text("#unfinished-list")
    shot("unfinished")
    throttle(1024 * 1024 * 1024)
    sent_before_reload = checkpoints()
    choose([path])
    wait_for("the upload to end", lambda: state(name) in ("done", "failed"))
    report["state"] = state(name)
    report["parts_already_there"] = attribute(name, "data-parts-already-there")
    report["parts_recovered"] = attribute(name, "data-parts-recovered")
    report["checkpoints_before_reload"] = sent_before_reload
    report["checkpoints_after_resume"] = checkpoints() - sent_before_reload
    report["unfinished_after"] = find("#unfinished").is_displayed()
    shot("resumed-done")
    console()


def listed():
    return [r.get_attribute("data-file-id") for r in find_all("#file-rows tr")]


def unnamed_controls():
    """Controls a screen reader could not name: no label, no aria-label, no text."""
    return driver.execute_script("""
        return [...document.querySelectorAll('input, select, button, a[href], progress')]
          .filter((el) => el.offsetParent !== null || el.type === 'file')
          .filter((el) => !(el.labels?.length || el.getAttribute('aria-label') || el.textContent.trim()))
          .map((el) => el.outerHTML);""")


def overflows():
    """What sticks out past the window's right edge, so a reader must scroll sideways."""
    return driver.execute_script("""
        const width = document.documentElement.clientWidth;
        // Text for screen readers only is clipped to nothing wherever it lies.
        const clipped = (el) => el && (getComputedStyle(el).clip !== 'auto' || clipped(el.parentElement));
        return [...document.body.querySelectorAll('*')]
          .filter((el) => el.offsetParent !== null && el.getBoundingClientRect().right > width + 1)
          .filter((el) => !clipped(el))
          .map((el) => el.outerHTML.slice(0, 80));""")


def browse():
    """Sign in from the keyboard alone; page through the files, filter them;
    every control named; no sideways scrolling at 360 px or at 200%."""
    driver.get(url)
    field = driver.switch_to.active_element
    for _ in range(10):  # Tab until the key field has the focus
        if field.get_attribute("name") == "api_key":
            break
        field.send_keys("\t")
        field = driver.switch_to.active_element
    report["focus_reached_key_field"] = field.get_attribute("name") == "api_key"
    report["focus_visible"] = driver.execute_script(
        "return getComputedStyle(document.activeElement).outlineStyle") != "none"
    field.send_keys(key + "\n")
    signed_in()
    wait_for("the first page", lambda: len(listed()) > 0)
    report["unnamed_controls"] = unnamed_controls()
    report["first_page"] = listed()
    report["totals"] = text("#totals")
    find("#older").click()
    wait_for("the older page", lambda: listed() and listed()[0] != report["first_page"][0])
    report["second_page"] = listed()
    find("#newer").click()
    wait_for("the newer page", lambda: listed() and listed()[0] == report["first_page"][0])
    report["back_to_first"] = listed() == report["first_page"]
    Select(find("#type-filter")).select_by_visible_text("text/csv")
    wait_for("the filtered list", lambda: listed() and len(listed()) < len(report["first_page"]))
    report["filtered"] = listed()
    shot("files")
    driver.set_window_size(360, 800)
    report["overflows_at_360px"] = overflows()
    shot("narrow")
    # 200% zoom of a 1280 x 900 window: the page lays out in half the CSS
    # pixels, each drawn twice as large.
    driver.set_window_size(1280, 900)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 640, "height": 450, "deviceScaleFactor": 2, "mobile": False})
    report["overflows_at_200_percent"] = overflows()
    shot("zoomed")
    console()


def offline_then_online():
    """The network goes away mid-upload and comes back: the upload waits and
    goes on; it does not fail. Then another upload is cancelled."""
    name = start_slow_upload(files[0])
    wait_for("a part", lambda: attribute(name, "data-parts-done") >= 1)
    driver.set_network_conditions(offline=True, latency=0, download_throughput=-1, upload_throughput=-1)
    wait_for("the retry notice", lambda: "trying again" in upload_row(name).text)
    report["state_while_offline"] = state(name)
    shot("offline")
    throttle(1024 * 1024 * 1024)
    wait_for("the upload to end", lambda: state(name) in ("done", "failed"))
    report["state"] = state(name)

    # Another, cancelled part-way: the row goes and so does the upload.
    other = files[1]
    other_name = os.path.basename(other)
    throttle(8 * 1024 * 1024)
    choose([other])
    wait_for("a part of the second", lambda: attribute(other_name, "data-parts-done") >= 1)
    find(f"#uploads li.upload[data-file-name='{other_name}'] button.cancel").click()
    wait_for("the cancelled row to go", lambda: upload_row(other_name) is None)
    report["unfinished_after_cancel"] = find("#unfinished").is_displayed()
    console()


def upload_folder():
    """A folder through the folder picker: every file in it goes up."""
    folder = files[0]
    names = sorted(os.listdir(folder))
    driver.get(url)
    sign_in(key)
    signed_in()
    find("#choose-folder").send_keys(folder)
    wait_for("every upload to end", lambda: all(state(n) in ("done", "failed") for n in names))
    report["states"] = {n: state(n) for n in names}
    console()


try:
    {"upload_folder": upload_folder, "upload_and_manage": upload_and_manage, "pause_reload_resume": pause_reload_resume,
     "browse": browse, "offline_then_online": offline_then_online}[scenario]()
finally:
    driver.quit()
print(json.dumps(report))
