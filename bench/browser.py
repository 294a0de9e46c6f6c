"""The explorer in a real browser, shared by its browser tests and bench/explore_speed.py: Debian's
chromium driven by Playwright, and a real `python cli.py explore` process.

Playwright's own browser downloads are never used (nothing is fetched here): `executable_path`
points at the system's chromium, the binary behind Debian's wrapper script, which starts without
the wrapper's extra flags.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ENV = "PYRO_VAE_CHROMIUM"  # another chromium binary
CHROMIUM = "/usr/lib/chromium/chromium"
# No GPU, no sandbox (CI runs as root), and none of the browser's own calls home.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 120


def launch_args() -> dict:
    """Keyword arguments for Playwright's `chromium.launch`."""
    return {"executable_path": os.environ.get(CHROMIUM_ENV, CHROMIUM), "args": list(ARGS)}


# `explore` as a test or a bench starts it: any free port, no browser of the user's.
EXPLORE = ("explore", "--port", "0", "--no-browser")


def explore_command(*options: str) -> list[str]:
    """`python cli.py explore --port 0 --no-browser OPTIONS` as an argument list."""
    return [sys.executable, str(ROOT / "cli.py"), *EXPLORE, *options]


def start_explore(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start an explore process and wait for its URL line.

    Returns the running process (the caller stops it with `stop`) and the URL. Raises
    RuntimeError with the process's own error line when it exits instead.
    """
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    url = process.stdout.readline().strip()
    if not url.startswith("http://"):
        process.kill()
        _, err = process.communicate(timeout=30)
        raise RuntimeError(f"explore did not start: {err.strip() or url}")
    return process, url


def stop(process: subprocess.Popen) -> int:
    """Stop an explore process as Ctrl-C would; returns its exit status."""
    process.terminate()
    try:
        return process.wait(timeout=30)
    finally:
        process.kill()
        process.communicate()
