"""The Swagger UI pages (/docs) as a browser shows them: headless Chromium runs the page's
JavaScript, offline, and the rendered DOM must list every operation of /openapi.json.

A plain HTTP test (test_read_api.py) only sees the static HTML; it passed while Swagger UI 3
refused to render the OpenAPI 3.1 document ("Unable to render this definition").
"""

from __future__ import annotations

import os
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

# Debian's chromium, installed by services/tools.sh (`make tools`, part of `make test`).
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_TIMEOUT = 90  # seconds for one whole browser run; the page renders in a few
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


# Session scope and first in the test's arguments: a missing browser fails the test before
# the (slow) system fixture starts every process.
@pytest.fixture(scope="session")
def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: `make tools` (services/tools.sh) installs Debian's "
            "chromium; or set CHROMIUM to another Chromium binary",
            pytrace=False,
        )
    return CHROMIUM


def render(chromium: str, url: str, profile: Path) -> tuple[str, str]:
    """The DOM of ``url`` once its scripts ran, and Chromium's log (console messages too)."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # we run as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        # Console messages (CSP violations, script errors) go to stderr.
        "--enable-logging=stderr",
        "--v=0",
        # Virtual time runs the scripts and waits for the fetch of /openapi.json before the dump.
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    # Own session, so a hung browser is killed with its helper processes (by process group).
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        dom, log = proc.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        raise AssertionError(f"Chromium did not finish rendering {url} within {CHROMIUM_TIMEOUT} s") from None
    assert proc.returncode == 0 and dom.strip(), (
        f"Chromium exited {proc.returncode} on {url}; its log ends with:\n{log[-3000:]}"
    )
    return dom, log


class RenderedOperations(HTMLParser):
    """(METHOD, path, summary) of each operation block Swagger UI rendered."""

    def __init__(self) -> None:
        super().__init__()
        self.operations: set[tuple[str, str, str]] = set()
        self._method = ""
        self._path = ""
        self._capture: tuple[str, str] | None = None  # (field, tag) whose text is being read
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if "opblock-summary-method" in classes:
            self._capture, self._text = ("method", tag), ""
        elif "opblock-summary-path" in classes:
            # The attribute, not the text: Swagger UI puts zero-width spaces in long paths.
            self._path = attributes.get("data-path") or ""
        elif "opblock-summary-description" in classes:
            self._capture, self._text = ("summary", tag), ""

    def handle_data(self, data: str) -> None:
        if self._capture:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if self._capture is None or tag != self._capture[1]:
            return
        if self._capture[0] == "method":
            self._method = self._text.strip()
        else:
            self.operations.add((self._method, self._path, self._text.strip()))
        self._capture = None


def rendered_operations(dom: str) -> set[tuple[str, str, str]]:
    parser = RenderedOperations()
    parser.feed(dom)
    parser.close()
    return parser.operations


@pytest.mark.parametrize("api", ["auth", "query"])
def test_docs_page_renders_every_operation_of_the_document(chromium, system, api, tmp_path):
    base = system.auth_url if api == "auth" else system.query_url
    document = system.http.get(f"{base}/openapi.json", timeout=10).json()
    expected = {
        (method.upper(), path, operation["summary"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }
    assert expected, f"{api}: /openapi.json has no operations"

    dom, log = render(chromium, f"{base}/docs", tmp_path / "chromium-profile")

    assert "Unable to render this definition" not in dom, dom[-3000:]
    assert 'class="errors-wrapper"' not in dom, f"Swagger UI shows errors:\n{dom[-3000:]}"
    # The version stamp proves the 3.1 document itself was parsed, not just the page loaded.
    assert ">OAS 3.1<" in dom, dom[-3000:]
    rendered = rendered_operations(dom)
    assert expected - rendered == set(), f"operations missing from the {api} page: {expected - rendered}"
    assert rendered - expected == set(), f"operations on the {api} page that the document lacks"
    violations = [line for line in log.splitlines() if "Content Security Policy" in line]
    assert not violations, "the page's CSP blocks something it uses:\n" + "\n".join(violations)
