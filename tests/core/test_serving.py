"""``craftreel serve --workers N``'s supervisor: one SO_REUSEPORT socket per worker, so a
burst of keep-alive connections is spread over the workers, and a worker that dies is
replaced on its socket."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: A tiny ASGI app that answers with the pid of the worker process serving it.
PID_APP = """
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""

SERVE = """
import sys
sys.path.insert(0, {app_dir!r})
from craftreel.serving import run_workers
run_workers("pid_app:app", 2, host="127.0.0.1", port={port}, log_config=None,
            timeout_worker_healthcheck=2)
"""

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="Linux only")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answer(conn: socket.socket) -> tuple[int, bool]:
    """One keep-alive GET on ``conn``: the answering worker's pid, and whether it closes the
    connection after the answer."""
    conn.sendall(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    head = head.lower()
    length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += conn.recv(4096)
    return int(body), b"\r\nconnection: close" in head


def _ask(conn: socket.socket) -> int:
    return _answer(conn)[0]


def _connect_all(port: int, count: int) -> list[socket.socket]:
    """``count`` connections whose handshakes are all under way at once (as a client pool
    opens them), each made blocking again once connected."""
    conns = []
    for _ in range(count):
        conn = socket.socket()
        conn.setblocking(False)
        conn.connect_ex(("127.0.0.1", port))
        conns.append(conn)
    _, writable, _ = select.select([], conns, [], 10)
    assert len(writable) == count
    for conn in conns:
        conn.setblocking(True)
        conn.settimeout(10)
    return conns


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    (tmp_path / "pid_app.py").write_text(PID_APP)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE.format(app_dir=str(tmp_path), port=port)],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    seen: set[int] = set()
    try:
        # Both workers up: connections keep arriving until two pids have answered.
        while len(seen) < 2:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the two workers did not both answer"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    seen.add(_ask(conn))
            except OSError:
                time.sleep(0.1)
        yield process, port
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_a_burst_of_connections_is_spread_over_the_workers(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    """32 connections opened at once (a client pool warming up) are not all taken by the
    worker that woke first: each worker answers at least 6 of them (the kernel's hash of
    the addresses leaves one worker fewer with probability 0.0001 — while uvicorn's shared
    socket put all 32 on one worker in the feed benchmark)."""
    _, port = server
    conns = _connect_all(port, 32)
    try:
        pids = [_ask(conn) for conn in conns]
        again = [_ask(conn) for conn in conns]
    finally:
        for conn in conns:
            conn.close()
    assert pids == again  # keep-alive: a connection stays with its worker
    counts = sorted(pids.count(pid) for pid in set(pids))
    assert len(counts) == 2 and counts[0] >= 6, counts


def test_the_workers_even_out_their_connections(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    """A client pool of 32 keep-alive connections, 24 on one worker and 8 on the other (as an
    unlucky hash leaves them): the busier worker closes connections after answering until
    each worker holds its share, and the pool, reconnecting (the kernel hashes each new
    connection again), ends with 16 and 16, give or take one."""
    _, port = server
    opened = _connect_all(port, 64)
    by_worker: dict[int, list[socket.socket]] = {}
    for conn in opened:
        pid, closing = _answer(conn)
        if not closing:
            by_worker.setdefault(pid, []).append(conn)
    busy, quiet = sorted(by_worker, key=lambda pid: -len(by_worker[pid]))
    assert len(by_worker[busy]) >= 24 and len(by_worker[quiet]) >= 8
    pool = by_worker[busy][:24] + by_worker[quiet][:8]
    for conn in opened:
        if conn not in pool:
            conn.close()
    closed = 0
    counts: list[int] = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            answers = []
            for i, conn in enumerate(pool):
                pid, closing = _answer(conn)
                if closing:
                    closed += 1
                    conn.close()
                    pool[i] = socket.create_connection(("127.0.0.1", port), timeout=10)
                else:
                    answers.append(pid)
            counts = sorted(answers.count(pid) for pid in set(answers))
            if len(answers) == 32 and len(counts) == 2 and counts[1] - counts[0] <= 2:
                break
            time.sleep(0.01)
    finally:
        for conn in pool:
            conn.close()
    assert closed >= 8, "the busier worker sent some connections away"
    assert len(counts) == 2 and counts[1] - counts[0] <= 2, counts


def test_a_killed_worker_is_replaced_on_its_socket(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    """SIGKILL one worker: the supervisor starts another on the same socket, and every new
    connection is answered — none refused, even those the kernel hashes to the dead
    worker's socket while it is being replaced."""
    _, port = server
    conns = _connect_all(port, 16)
    try:
        pids = {_ask(conn) for conn in conns}
    finally:
        for conn in conns:
            conn.close()
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    answered: set[int] = set()
    deadline = time.monotonic() + 30
    while len(answered - {victim}) < 2:
        assert time.monotonic() < deadline, f"answers from {answered}"
        conns = _connect_all(port, 16)
        try:
            answered |= {_ask(conn) for conn in conns}
        finally:
            for conn in conns:
                conn.close()
    assert victim not in answered
