"""The command line against a fresh SQLite database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def run(var_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CRAFTREEL_DEMO_MODE": "true",
        "CRAFTREEL_VAR_DIR": str(var_dir),
        "CRAFTREEL_LOG_LEVEL": "WARNING",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "craftreel.cli_main", *args],
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli")
    result = run(path, "migrate")
    assert result.returncode == 0, result.stderr
    return path


def test_seed_demo_is_idempotent(var_dir: Path) -> None:
    first = run(var_dir, "seed-demo")
    assert first.returncode == 0, first.stderr
    assert "6 people, 2 shops and 6 posts added" in first.stdout
    second = run(var_dir, "seed-demo")
    assert second.returncode == 0, second.stderr
    assert "0 people, 0 shops and 0 posts added" in second.stdout
    assert list((var_dir / "media" / "avatars").glob("*/*.webp"))
    # The demo posts went through the real pipeline: each has a playable HLS ladder.
    assert len(list((var_dir / "media" / "media").glob("*/r*/master.m3u8"))) == 6


def test_create_admin(var_dir: Path) -> None:
    made = run(
        var_dir,
        "create-admin",
        "--email",
        "root@example.org",
        "--handle",
        "boss",
        CRAFTREEL_ADMIN_PASSWORD="an admin passphrase",
    )
    assert made.returncode == 0, made.stderr
    assert "admin @boss created" in made.stdout
    again = run(
        var_dir,
        "create-admin",
        "--email",
        "root@example.org",
        "--handle",
        "boss2",
        CRAFTREEL_ADMIN_PASSWORD="an admin passphrase",
    )
    assert again.returncode == 1
    assert "email_taken" in again.stderr


def test_worker_runs_until_told_to_stop(var_dir: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "craftreel.cli_main", "worker"],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CRAFTREEL_DEMO_MODE": "true",
            "CRAFTREEL_VAR_DIR": str(var_dir),
            "CRAFTREEL_LOG_JSON": "false",
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    first = process.stderr.readline()
    assert "running jobs from the database" in first
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_serve_with_two_workers_answers_and_stops(var_dir: Path) -> None:
    """Both worker processes start (each builds its app from the environment), the port
    answers, and SIGTERM stops the lot."""
    import socket
    import time

    import httpx

    assert run(var_dir, "migrate").returncode == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = var_dir / "serve.log"
    command = [sys.executable, "-m", "craftreel.cli_main", "serve", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--workers", "2"],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "CRAFTREEL_DEMO_MODE": "true",
                "CRAFTREEL_VAR_DIR": str(var_dir),
                "CRAFTREEL_LOG_JSON": "false",
            },
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count("Application startup complete") < 2:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
