"""A real browser for the tests: Debian's Chromium driven by Playwright, and axe-core's accessibility checks.

``scripts/ensure-browser.sh`` (``make browser``, a prerequisite of ``make test``) installs all three: Debian's
``chromium``, the Playwright pinned in pyproject.toml (its driver only: Playwright never downloads a browser
here, it starts Debian's through ``executable_path``) and axe-core from npm, pinned in tools/browser/, into a
cache keyed by its version.

* ``browser`` (session): one headless Chromium for the whole run, started lazily by the first test that needs
  it (``--no-sandbox`` as root, background networking, first-run and default-browser checks off).
* ``page`` (function): a fresh page in a fresh context (its own cookies and storage), closed afterwards.
* ``axe(page)``: injects the cached axe-core into the page and returns its violations (dicts as axe reports
  them: ``id``, ``impact``, ``nodes``...).

Missing pieces fail the test under ``CI=true`` with one line naming scripts/ensure-browser.sh, and skip it
otherwise (the pattern of tests/conftest.py's PostgreSQL).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENSURE = "scripts/ensure-browser.sh"
# Debian's /usr/bin/chromium is a shell wrapper around this binary; Playwright starts the binary itself.
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--metrics-recording-only",
    "--disable-breakpad",
    "--disable-crash-reporter",
]

# Figures of the last start, for the tests that report them.
STATS: dict[str, float] = {}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str) -> None:
    """Fail under CI, skip elsewhere, with one line saying how to install ``what``."""
    message = f"{what}; run `bash {ENSURE}` (or `make browser`) to install it"
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def find_chromium() -> str | None:
    override = os.environ.get("CELLPLANE_CHROMIUM")  # another build of Chromium, or a missing one on purpose
    if override:
        return override if os.access(override, os.X_OK) else None
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


def axe_script_path() -> Path | None:
    """axe.min.js of the pinned axe-core in the cache, as the ensure script reports it (None when absent)."""
    result = subprocess.run(["bash", str(ROOT / ENSURE), "--axe"], capture_output=True, text=True, check=False)
    path = Path(result.stdout.strip())
    return path if result.returncode == 0 and path.is_file() else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's) per test module, through Playwright's synchronous API. Not per session:
    while Playwright's sync API is started, its event loop counts as this thread's running loop, so every later
    test that calls ``asyncio.run`` (most of the suite) would fail with "cannot be called from a running event
    loop"; stopped at the module's end, the loop goes with it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the Python package playwright is not installed in this venv")
    executable = find_chromium()
    if executable is None:
        where = os.environ.get("CELLPLANE_CHROMIUM") or "/usr/lib/chromium/chromium, /usr/bin/chromium and on PATH"
        missing(f"chromium not found (looked in {where})")
    started = time.perf_counter()
    manager = sync_playwright().start()
    driver_ready = time.perf_counter()
    args = [*CHROMIUM_ARGS]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    try:
        chromium = manager.chromium.launch(executable_path=executable, headless=True, args=args)
    except Exception:
        manager.stop()
        raise
    STATS["driver_s"] = driver_ready - started
    STATS["launch_s"] = time.perf_counter() - driver_ready
    STATS["start_s"] = time.perf_counter() - started
    try:
        yield chromium
    finally:
        chromium.close()
        manager.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a context of its own (no cookies or storage shared with other tests)."""
    started = time.perf_counter()
    context = browser.new_context()
    p = context.new_page()
    STATS["page_s"] = time.perf_counter() - started
    try:
        yield p
    finally:
        context.close()


_AXE_SOURCE: str | None = None


def axe(page: Any, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now and return its violations (empty when none)."""
    global _AXE_SOURCE
    if _AXE_SOURCE is None:
        path = axe_script_path()
        if path is None:
            missing("axe-core is not installed in the cache")
        assert path is not None
        _AXE_SOURCE = path.read_text()
    # evaluate rather than add_script_tag: a page's Content-Security-Policy cannot refuse it
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_AXE_SOURCE + "\n;void 0")
    result = page.evaluate("async (options) => await window.axe.run(document, options || {})", options)
    return list(result["violations"])
