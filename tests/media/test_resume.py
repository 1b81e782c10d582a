"""An upload survives ``kill -9`` of the server mid-PATCH: after a restart HEAD reports the
offset the server acknowledged, and the upload completes from there."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from craftreel.context import AppContext
from tests.conftest import PASSWORD
from tests.media import media_factory
from tests.media.test_uploads import MIB, metadata

TUS = {"Tus-Resumable": "1.0.0"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``craftreel serve`` as a real process that can be killed and started again."""

    def __init__(self, var_dir: Path, port: int, database_url: str) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "CRAFTREEL_DEMO_MODE": "true",
            "CRAFTREEL_VAR_DIR": str(var_dir),
            "CRAFTREEL_DATABASE_URL": database_url,
            "CRAFTREEL_LOG_LEVEL": "WARNING",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "craftreel.cli_main", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def server(
    tmp_path: Path, ctx: AppContext, database_urls: dict[str, str], backend: str
) -> Iterator[Server]:
    """A server on this test's database (emptied by the ``ctx`` fixture first)."""
    var_dir = tmp_path / "var"
    srv = Server(var_dir, _free_port(), database_urls[backend])
    srv.start()
    try:
        yield srv
    finally:
        if srv.process and srv.process.poll() is None:
            srv.process.terminate()
            srv.process.wait(timeout=10)


def _big_video(folder: Path) -> bytes:
    """A real (lossless, so large) video: after the upload completes it is processed, and a
    real video's source is kept, so the test can compare it byte for byte."""
    out = folder / "big.mp4"
    media_factory.ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=15"),
        *("-f", "lavfi", "-i", "sine=frequency=440:duration=15"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p"),
        *("-c:a", "aac", "-shortest", str(out)),
    )
    return out.read_bytes()


def test_upload_resumes_after_kill_9(server: Server, tmp_path: Path) -> None:
    signup = httpx.post(
        f"{server.base}/api/v1/auth/signup",
        json={"email": "killer@example.org", "handle": "killer", "password": PASSWORD},
    )
    assert signup.status_code == 201, signup.text
    tokens = httpx.post(
        f"{server.base}/api/v1/auth/signin",
        json={"email": "killer@example.org", "password": PASSWORD},
    ).json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    data = _big_video(tmp_path)
    assert len(data) > 22 * MIB
    created = httpx.post(
        f"{server.base}/api/v1/uploads",
        headers={
            **TUS,
            **auth,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(kind="video"),
        },
    )
    url = created.headers["Location"]

    # One long PATCH of the whole file; the server is killed after about 20 MiB arrived.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("PATCH", url.replace(server.base, ""))
    for name, value in {
        **TUS,
        **auth,
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(len(data)),
    }.items():
        conn.putheader(name, value)
    conn.endheaders()
    sent = 0
    while sent < 20 * MIB:
        conn.send(data[sent : sent + MIB])
        sent += MIB
    acknowledged = 0
    deadline = time.monotonic() + 30
    while acknowledged < 16 * MIB and time.monotonic() < deadline:
        probe = httpx.head(url, headers={**TUS, **auth})
        acknowledged = int(probe.headers["Upload-Offset"])
        time.sleep(0.05)
    server.kill()
    conn.close()

    server.start()
    resumed = httpx.head(url, headers={**TUS, **auth})
    assert resumed.status_code == 200
    offset = int(resumed.headers["Upload-Offset"])
    # What the server acknowledged survived; nothing unacknowledged is claimed.
    assert 16 * MIB <= offset <= 20 * MIB
    assert offset >= acknowledged
    finish = httpx.patch(
        url,
        content=data[offset:],
        headers={
            **TUS,
            **auth,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
        timeout=60,
    )
    assert finish.status_code == 204, finish.text
    assert int(finish.headers["Upload-Offset"]) == len(data)
    media_id = url.rsplit("/", 1)[1]
    source = Path(server.env["CRAFTREEL_VAR_DIR"]) / "media" / "media" / media_id / "source"
    assert hashlib.sha256(source.read_bytes()).digest() == hashlib.sha256(data).digest()
