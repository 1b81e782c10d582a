"""A real Craftreel server process and Debian's Chromium, at a phone's size."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}


@dataclass(frozen=True)
class Server:
    base_url: str
    var_dir: Path

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "mail"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /healthz in time:\n{log.read_text()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`craftreel serve` on a free port, with its own SQLite database and mail folder."""
    var_dir = tmp_path_factory.mktemp("e2e-var")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CRAFTREEL_DEMO_MODE": "true",
        "CRAFTREEL_VAR_DIR": str(var_dir),
        "CRAFTREEL_BASE_URL": base_url,
        "CRAFTREEL_LOG_JSON": "false",
        # Every browser here is 127.0.0.1: per-address limits sized for one person would
        # trip over the suite's own sign-ups.
        "CRAFTREEL_RATE_LIMIT_SIGNUP": "1000/3600",
        "CRAFTREEL_RATE_LIMIT_SIGNIN_IP": "1000/300",
        "CRAFTREEL_RATE_LIMIT_RESET": "1000/3600",
    }
    for name in ("CRAFTREEL_DATABASE_URL", "CRAFTREEL_REDIS_URL", "CRAFTREEL_SMTP_HOST"):
        env.pop(name, None)
    cli = [sys.executable, "-m", "craftreel.cli_main"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
    log = var_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*cli, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_healthy(base_url, process, log)
            yield Server(base_url, var_dir)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium through Playwright's sync API (the tests using it are plain sync tests).

    Module-scoped so Playwright's own event loop is gone before any later async test runs.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
