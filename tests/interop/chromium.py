"""Debian's Chromium for the browser tests, driven by Playwright: where it is, how it starts, where
screenshots go (test-artifacts/screenshots/, git-ignored). Without /usr/bin/chromium a browser
test is skipped, except under CI=true, where that is a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def require_chromium() -> str:
    """The Chromium executable, after making the screenshots folder; skips the test (fails it
    under CI=true) when Chromium is not installed."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing; CI installs it with apt-get (package chromium).")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return CHROMIUM
