"""The websocket chat example in a real headless browser: Debian's Chromium, driven by selenium.

The example runs as its own process, as a person starts it (``python
examples/websocket_chat.py``). scripts/test.sh installs ``chromium`` and ``chromium-driver``
when they are missing; without them these tests skip, and fail under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import JavascriptException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WAIT = 15.0  # seconds a page may take to show what a step expects


def _binaries() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return None
    return browser, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile (no cookies)."""
    found = _binaries()
    if found is None:
        message = (
            "NO HEADLESS BROWSER: chromium and chromedriver are not installed (scripts/test.sh "
            "installs Debian's chromium and chromium-driver as root); the browser test of the "
            "chat example is NOT run"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    binary, driver_binary = found
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root (CI) Chromium refuses to start with its sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1024,768",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(argument)
    # An explicit driver path: selenium then never tries to download one.
    service = webdriver.ChromeService(executable_path=driver_binary)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def chat_url() -> Iterator[str]:
    """The chat example, started as its own process on a free port; its base URL."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "websocket_chat.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            match = re.search(r"listening on (http://\S+?)/ ", line)
            if match:
                url = match.group(1)
                break
        assert url is not None, "the example did not say where it listens"
        yield url
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[0]
        assert "stopped" in rest, rest
        assert proc.returncode == 0, rest
    finally:
        proc.kill()
        proc.wait()


def _log(driver: webdriver.Chrome) -> list[str]:
    # Read in one script, so that a page being replaced cannot leave stale elements behind.
    lines = driver.execute_script(
        "return Array.from(document.querySelectorAll('#log li'), li => li.textContent)"
    )
    return list(lines or [])


def _wait_for_line(driver: webdriver.Chrome, line: str) -> None:
    try:
        # A script may run while a navigation replaces the page: try again.
        WebDriverWait(driver, WAIT, ignored_exceptions=[JavascriptException]).until(
            lambda d: line in _log(d)
        )
    except Exception as exc:
        raise AssertionError(f"the page never showed {line!r}; it shows {_log(driver)}") from exc


def _wait_for_url(driver: webdriver.Chrome, url: str) -> None:
    try:
        WebDriverWait(driver, WAIT).until(lambda d: d.current_url == url)
    except Exception as exc:
        raise AssertionError(
            f"the browser never reached {url}; it is at {driver.current_url}: "
            f"{driver.find_element(By.TAG_NAME, 'body').text!r}"
        ) from exc


def _session_cookie(driver: webdriver.Chrome) -> dict[str, Any] | None:
    found = [c for c in driver.get_cookies() if c["name"] == "sid"]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_chat_in_a_browser_login_message_logout(browser: webdriver.Chrome, chat_url: str) -> None:
    driver = browser
    driver.get(chat_url + "/")

    # An anonymous visitor: the websocket greets them, and the handshake response set a cookie.
    _wait_for_line(driver, "hello, anonymous visitor")
    anonymous = _session_cookie(driver)
    assert anonymous is not None, "the websocket handshake set no session cookie"

    # Log in with the page's form: the example redirects back to the chat, whose websocket now
    # knows the user from the session.
    driver.find_element(By.NAME, "user").send_keys("alice")
    driver.find_element(By.NAME, "password").send_keys("wonderland")
    driver.find_element(By.ID, "login").click()
    _wait_for_line(driver, "hello, alice")
    cookie = _session_cookie(driver)
    assert cookie is not None
    # Login regenerated the id: the anonymous one (which an attacker could have planted) is gone.
    assert cookie["value"] != anonymous["value"]

    # The cookie as the browser keeps it: what the example configures.
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["domain"] == "127.0.0.1"  # host-only: no Domain attribute
    # Not Secure: the example serves plain http and configures secure=False, so that it works
    # from any address. (Chromium would keep a Secure cookie here too: it treats 127.0.0.1 and
    # localhost as secure origins; from any other http address it drops such a cookie.)
    assert cookie["secure"] is False
    # Max-Age=1800 (the example's max_age), counted by the browser from the response.
    assert 1800 - 60 <= cookie["expiry"] - time.time() <= 1800 + 5
    # HttpOnly holds in the page itself: scripts cannot read the id.
    assert "sid=" not in driver.execute_script("return document.cookie")

    # A message over the websocket comes back with the user's name.
    driver.find_element(By.ID, "msg").send_keys("hi from the browser")
    driver.find_element(By.ID, "send").click()
    _wait_for_line(driver, "alice: hi from the browser")

    # Log out: the session is deleted and its cookie removed from the browser.
    driver.find_element(By.ID, "logout").click()
    _wait_for_url(driver, chat_url + "/logged-out")
    assert driver.find_element(By.ID, "status").text == "logged out"
    assert _session_cookie(driver) is None
    assert driver.get_cookies() == []

    # The old id is dead on the server too: replayed, it is not alice's session any more, and
    # the anonymous visit it leads to is stored under a fresh id, not the replayed one.
    driver.add_cookie({"name": "sid", "value": cookie["value"], "path": "/"})
    driver.find_element(By.LINK_TEXT, "back to the chat").click()
    _wait_for_line(driver, "hello, anonymous visitor")
    assert "hello, alice" not in _log(driver)
    again = _session_cookie(driver)
    assert again is not None
    assert again["value"] not in (anonymous["value"], cookie["value"])
