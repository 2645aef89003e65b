"""A headless Chromium for the console's browser tests (docs/console.md, Tests).

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them), driven by Selenium.
Selenium blocks, so every call runs in a thread pool of the browser's own (started and
stopped with it): the reactor thread stays free for the in-process worker and the API client
of ``tests/e2e.py``. Not a test module; ``test_console_browser.py`` imports it.

The browser's console log and its network log are read after each step: any console error
and any failed request (a status of 400 or more, or no answer) fails the test, except the
ones a test says it expects.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Iterable

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from e2e import asyncCleanup, reactor

CHROMIUM = os.environ.get("FIREWORQ_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FIREWORQ_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
DESKTOP = (1280, 800)
PHONE = (375, 740)
WAIT = 15.0
_FAILED_RESOURCE = re.compile(
    r"^(\S+) - Failed to load resource: the server responded with a status of (\d+)")
#: Set to 1 to write the screenshots of docs/console.md (docs/console/*.png).
UPDATE_SCREENSHOTS = os.environ.get("FIREWORQ_UPDATE_SCREENSHOTS") == "1"
SCREENSHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "docs", "console")


def _driver() -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                     "--window-size=%d,%d" % DESKTOP, "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    return driver


class Browser:
    """One headless Chromium aimed at a daemon's console."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="browser")
        self.driver: WebDriver | None = None
        #: Failed requests seen so far, as "<status> <path>" (0: no answer).
        self.failed_requests: list[str] = []
        self.console_errors: list[str] = []

    @classmethod
    async def start(cls, case: TestCase, base_url: str) -> Browser:
        browser = cls(base_url)
        browser._pool.start()
        asyncCleanup(case, browser.stop)
        browser.driver = await browser.do(lambda _: _driver())
        return browser

    async def stop(self) -> None:
        if self.driver is not None:
            await self.do(lambda d: d.quit())
            self.driver = None
        self._pool.stop()

    async def do(self, f: Callable[[WebDriver], Any]) -> Any:
        """``f(driver)`` in the browser's thread."""
        return await deferToThreadPool(reactor, self._pool, f, self.driver)

    # -- steps

    async def open(self, fragment: str, *, reload: bool = False) -> None:
        """Show the console at ``#<fragment>`` and wait until that page is rendered."""
        url = f"{self.base_url}/console/#{fragment}"

        def go(d: WebDriver) -> None:
            before = d.execute_script(
                "const m = document.getElementById('main'); return m ? m.dataset.renders : null")
            # The same URL again makes no hashchange: load the page again instead.
            again = reload or d.current_url == url
            if d.current_url != url:
                d.get(url)
            if again:
                d.refresh()
            _wait(d, lambda d: d.execute_script(
                "const m = document.getElementById('main');"
                "return m && m.dataset.route === arguments[0] && m.dataset.renders !== arguments[1]",
                "#" + fragment, before if not again else None), f"page {fragment}")
        await self.do(go)

    async def wait_for(self, script: str, *args: Any, what: str = "condition",
                       timeout: float = WAIT) -> Any:
        """Wait until the JavaScript ``script`` (a function body) returns something truthy."""
        return await self.do(lambda d: _wait(
            d, lambda d: d.execute_script(script, *args), what, timeout))

    async def rendered_after(self, action: Callable[[WebDriver], Any], what: str) -> None:
        """Do ``action`` and wait for the page it causes to be rendered."""
        def run(d: WebDriver) -> None:
            before = d.execute_script("return document.getElementById('main').dataset.renders")
            action(d)
            _wait(d, lambda d: d.execute_script(
                "return document.getElementById('main').dataset.renders !== arguments[0]",
                before), what)
        await self.do(run)

    async def click(self, css: str) -> None:
        await self.do(lambda d: d.find_element("css selector", css).click())

    async def type(self, css: str, text: str, clear: bool = True) -> None:
        def run(d: WebDriver) -> None:
            element = d.find_element("css selector", css)
            if clear:
                element.clear()
            element.send_keys(text)
        await self.do(run)

    async def text(self, css: str) -> str:
        return str(await self.do(lambda d: d.find_element("css selector", css).text))

    async def texts(self, css: str) -> list[str]:
        return [str(e.text) for e in await self.do(
            lambda d: d.find_elements("css selector", css))]

    async def script(self, script: str, *args: Any) -> Any:
        return await self.do(lambda d: d.execute_script(script, *args))

    # -- logs

    async def problems(self, expected: Iterable[str] = ()) -> list[str]:
        """Console errors and failed requests since the last call, less the ``expected``
        ones (substrings of "<status> <path>" or of the console message)."""
        browser_log, network_log = await self.do(
            lambda d: (d.get_log("browser"), d.get_log("performance")))
        found: list[str] = []
        for entry in network_log:
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.responseReceived":
                response = params["response"]
                if response["status"] >= 400:
                    found.append("%d %s" % (response["status"], response["url"]))
            elif message["method"] == "Network.loadingFailed" and not params.get("canceled"):
                found.append("0 %s (%s)" % (params.get("requestId"), params.get("errorText")))
        for entry in browser_log:
            if entry["level"] not in ("SEVERE", "ERROR"):
                continue
            # Chromium also logs each failed request: already counted above.
            failed = _FAILED_RESOURCE.match(entry["message"])
            if failed and "%s %s" % (failed[2], failed[1]) in found:
                continue
            found.append("console: " + entry["message"])
        wanted = list(expected)
        return [p for p in found if not any(w in p for w in wanted)]

    async def assert_clean(self, case: TestCase, expected: Iterable[str] = ()) -> None:
        """No console error and no failed request (but the expected ones) so far, and every
        form control of the page labelled."""
        case.assertEqual(await self.problems(expected), [])
        unlabelled = await self.script(
            "return [...document.querySelectorAll('input, select, textarea, button')]"
            ".filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')"
            " && !e.textContent.trim()).map((e) => e.outerHTML)")
        case.assertEqual(unlabelled, [])

    # -- sizes and screenshots

    async def phone(self, dark: bool = False) -> None:
        await self._emulate(PHONE, mobile=True, dark=dark)

    async def desktop(self, dark: bool = False) -> None:
        await self._emulate(DESKTOP, mobile=False, dark=dark)

    async def _emulate(self, size: tuple[int, int], *, mobile: bool, dark: bool) -> None:
        def run(d: WebDriver) -> None:
            d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile})
            d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
                {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})
        await self.do(run)

    async def overflow(self) -> int:
        """How many pixels the page is wider than the window (0: it fits)."""
        return int(await self.script(
            "return document.documentElement.scrollWidth - window.innerWidth"))

    async def screenshots(self, case: TestCase, name: str, dark: bool = False) -> None:
        """At desktop and phone width: the page must fit the phone's width; with
        FIREWORQ_UPDATE_SCREENSHOTS=1 both are written to docs/console/<name>-*.png.
        The browser is left at desktop width, light."""
        for label, size_step in (("phone", self.phone), ("desktop", self.desktop)):
            await size_step(dark)
            # A frame for the layout (and the chart's canvas) to follow the new size.
            await self.script("return new Promise((r) => requestAnimationFrame(() => "
                              "requestAnimationFrame(() => r(true))))")
            if label == "phone":
                case.assertEqual(await self.overflow(), 0, f"{name} is wider than a phone")
            if UPDATE_SCREENSHOTS:
                path = os.path.join(SCREENSHOTS, f"{name}-{label}.png")
                os.makedirs(SCREENSHOTS, exist_ok=True)
                await self.do(lambda d: d.save_screenshot(path))
        if dark:
            await self.desktop()


def _wait(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str,
          timeout: float = WAIT) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except TimeoutException:
        main = driver.execute_script(
            "const m = document.getElementById('main'); return m ? m.innerText : ''")
        messages = driver.execute_script(
            "const m = document.getElementById('messages'); return m ? m.innerText : ''")
        raise AssertionError(
            f"{what}: not within {timeout} s; page shows:\n{main[:2000]}\nmessages: {messages}"
        ) from None
