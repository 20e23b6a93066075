"""Drive a real headless Chromium from a test, through the DevTools protocol over a pipe (no pip dependency).

Chromium started with ``--remote-debugging-pipe`` reads protocol commands from its fd 3 and writes replies and
events to its fd 4, each a JSON message ended by a NUL byte. :class:`Browser` starts it, opens one page
(``Target.attachToTarget`` with ``flatten``: commands carry the page's ``sessionId``) and records everything
a test asserts on: console errors, uncaught exceptions, JavaScript dialogs (an ``alert`` is dismissed and
recorded, never left blocking the page) and the URL of every request the page makes.

The browser is Debian's ``chromium`` (``apt-get install -y chromium``), or the executable ``RD_EVAL_CHROMIUM``
names. A test calls :func:`chromium_or_fail`: a missing browser fails the test with how to install it; only
``RD_EVAL_SKIP_BROWSER=1`` (for developers without one; CI never sets it) skips.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Browser", "BrowserError", "chromium_or_fail"]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "install it with `apt-get install -y chromium` (Debian), or set RD_EVAL_CHROMIUM=/path/to/chrome"
SKIP_VARIABLE = "RD_EVAL_SKIP_BROWSER"
_CHILD_IN, _CHILD_OUT = 3, 4  # the fds Chromium's --remote-debugging-pipe uses


class BrowserError(RuntimeError):
    """The browser did not start, answer in time, or answered a command with an error."""


def chromium_or_fail() -> str:
    """The Chromium executable; fails the calling test when there is none (skips only under RD_EVAL_SKIP_BROWSER=1)."""
    named = os.environ.get("RD_EVAL_CHROMIUM")
    found = shutil.which(named) if named else next((p for p in map(shutil.which, CANDIDATES) if p), None)
    if found:
        return found
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"no Chromium and {SKIP_VARIABLE}=1")
    where = f"RD_EVAL_CHROMIUM={named!r} is not an executable" if named else f"none of {', '.join(CANDIDATES)} on PATH"
    pytest.fail(f"this test needs a headless Chromium ({where}): {INSTALL_HINT}; "
                f"developers without one may set {SKIP_VARIABLE}=1 to skip", pytrace=False)


def _high_dup(fd: int) -> int:
    """A copy of `fd` numbered above 4, so moving it onto 3 or 4 in the child cannot clobber the other pipe end."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD, 10)


class Browser:
    """One headless Chromium with one page; use as a context manager (the browser is closed on exit)."""

    def __init__(self, executable: str, *, width: int = 1280, height: int = 900, timeout: float = 15.0) -> None:
        self.timeout = timeout
        self.console_errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self._profile = tempfile.TemporaryDirectory(prefix="rd-eval-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        child_in, child_out = _high_dup(to_child_r), _high_dup(from_child_w)

        # Python's own fds are not inheritable (PEP 446), so close_fds=False passes on only the two that dup2 makes
        # (close_fds=True would close them after this hook).
        def wire_pipe() -> None:  # runs in the child between fork and exec
            os.dup2(child_in, _CHILD_IN)
            os.dup2(child_out, _CHILD_OUT)

        command = [
            executable, "--headless", "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}",
            # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", "--mute-audio", f"--window-size={width},{height}", "about:blank",
        ]
        self._log = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log,
                                             stderr=subprocess.STDOUT, close_fds=False, preexec_fn=wire_pipe)
        finally:
            for fd in (to_child_r, from_child_w, child_in, child_out):
                os.close(fd)
        self._closed = False
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self._session: str | None = None
        self.width, self.height = width, height

    # -- protocol ---------------------------------------------------------------------------------------------

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise BrowserError(f"Chromium sent nothing within {self.timeout:g} s; its log: {self.log()[-2000:]}")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed its pipe (exit code {self._process.poll()}); "
                                   f"its log: {self.log()[-2000:]}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        if "method" in message:
            self._on_event(message)
        return message

    def _on_event(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.console_errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.console_errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.console_errors.append(f"{params['entry']['source']}: {params['entry']['text']}")
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(f"{params['type']}: {params['message']}")
            self._write("Page.handleJavaScriptDialog", {"accept": False}, self._session)
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])

    def _write(self, method: str, params: dict[str, Any] | None, session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        return self._next_id

    def send(self, method: str, params: dict[str, Any] | None = None, *, browser_level: bool = False) -> Any:
        """Send a command (to the page unless `browser_level`) and return its result."""
        sent = self._write(method, params, None if browser_level else self._session)
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == sent:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})

    def wait_for(self, method: str, predicate: Callable[[dict[str, Any]], bool] = lambda _: True) -> dict[str, Any]:
        """The first event named `method` (already received or next) for which `predicate(params)` holds."""
        deadline = time.monotonic() + self.timeout
        seen = 0
        while True:
            for event in self._events[seen:]:
                if event["method"] == method and predicate(event.get("params", {})):
                    self._events.remove(event)
                    return event
            seen = len(self._events)
            self._read_message(deadline)

    # -- a page ------------------------------------------------------------------------------------------------

    def __enter__(self) -> Browser:
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"}, browser_level=True)["targetId"]
            attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, browser_level=True)
            self._session = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(f"{domain}.enable")
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, url: str) -> None:
        """Navigate to `url` and wait until the page (and its scripts) has loaded."""
        self._events = [e for e in self._events if e["method"] != "Page.loadEventFired"]
        navigated = self.send("Page.navigate", {"url": url})
        if navigated.get("errorText"):
            raise BrowserError(f"opening {url}: {navigated['errorText']}")
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _centre(self, selector: str) -> tuple[float, float]:
        found = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center', inline: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if found is None:
            raise BrowserError(f"no element matches {selector!r}")
        return found[0], found[1]

    def click(self, selector: str) -> None:
        """A real left click (mouse events from the input layer) at the centre of the element."""
        x, y = self._centre(selector)
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def type_text(self, selector: str, text: str) -> None:
        """Click into the element and type `text` as the keyboard would insert it."""
        self.click(selector)
        self.send("Input.insertText", {"text": text})

    def screenshot(self, path: Path) -> Path:
        """The whole page (not only the viewport) as a PNG file."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._process.poll() is None:
            try:
                self._write("Browser.close", None, None)
                self._process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        self._profile.cleanup()
