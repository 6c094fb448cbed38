"""Headless Chromium for page tests: Debian's build, started the way this closed network needs."""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox as root; no background connections, which the closed network refuses by the dozen.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots the tests save for people to look at (gitignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
