"""Serving the app in several worker processes, each with its own listening socket.

uvicorn's ``--workers`` shares one listening socket between the processes, and whichever
process wakes first accepts every connection waiting: a burst of new keep-alive connections
(a proxy's pool, a load balancer warming up, a benchmark's clients) lands on one worker while
the others idle, and stays there for the connections' lives. Measured with 32 connections
and two workers: all 32 on one process, the other idle.

Here every worker gets its own socket bound to the same address with ``SO_REUSEPORT``, and
the kernel spreads new connections over the sockets by a hash of their addresses, whether
the workers are busy or not. uvicorn's supervisor still does the rest (restarting a worker
that dies or hangs, SIGHUP to restart all, SIGTERM to stop); it is told which socket each
worker serves. The parent keeps every socket open, so a connection hashed to a worker that
is being restarted waits in that socket's queue for its replacement rather than being
refused. Where ``SO_REUSEPORT`` does not exist, the workers share one socket as before.

The hash spreads connections at random, not evenly: 32 keep-alive connections (a proxy's
pool) landed 10 and 22 on two workers in the feed benchmark, and the worker holding 22 took
as many requests as the other with twice the latency (p50 42 against 18 ms, p99 91 against
44). So the workers balance themselves (:class:`ConnectionBalancer`): each publishes how many
HTTP connections it holds in a small file all of them map, and one holding more than its
share answers a request with ``Connection: close`` (at most one every 50 ms); the client
opens a new connection, which the kernel hashes again.
"""

from __future__ import annotations

import logging
import mmap
import os
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors.multiprocess import Multiprocess, Process

log = logging.getLogger(__name__)

#: Tells a worker process where the workers' loads are: ``path:slot:workers``.
LOADS_ENV = "CRAFTREEL_WORKER_LOADS"
#: How often a worker looks at the loads, and so sheds one connection at most.
BALANCE_SECONDS = 0.05


def reuse_port_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` TCP sockets bound to the same address with ``SO_REUSEPORT`` (and
    ``SO_REUSEADDR``, as uvicorn's own); port 0 picks one free port for all of them. Each
    worker's event loop starts listening on its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class WorkerLoads:
    """How many HTTP connections each worker holds: one 8-byte count per worker slot, in a
    file every worker maps (written by its own worker only)."""

    def __init__(self, path: Path, slot: int, workers: int) -> None:
        self.slot = slot
        self.workers = workers
        with path.open("r+b") as file:
            self._map = mmap.mmap(file.fileno(), 8 * workers)

    @staticmethod
    def create(workers: int) -> Path:
        """A new zeroed loads file (in shared memory where there is one)."""
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - mkstemp's
        fd, name = tempfile.mkstemp(prefix="craftreel-workers-", dir=folder)
        with os.fdopen(fd, "wb") as file:
            file.write(bytes(8 * workers))
        return Path(name)

    @classmethod
    def from_environment(cls) -> WorkerLoads | None:
        value = os.environ.get(LOADS_ENV)
        if not value:
            return None
        path, slot, workers = value.rsplit(":", 2)
        try:
            return cls(Path(path), int(slot), int(workers))
        except (OSError, ValueError):
            log.warning("cannot map the workers' loads at %s: not balancing", path)
            return None

    def publish(self, count: int) -> None:
        struct.pack_into("<q", self._map, 8 * self.slot, count)

    def counts(self) -> tuple[int, ...]:
        return struct.unpack_from(f"<{self.workers}q", self._map)


class ConnectionBalancer:
    """ASGI middleware of a worker process: while this worker holds more HTTP connections
    than its share (the total over the workers, divided evenly and rounded up), it answers
    one request every :data:`BALANCE_SECONDS` with ``Connection: close``. The client comes
    back on a new connection, which the kernel hashes to a socket again."""

    def __init__(self, app: ASGIApp, loads: WorkerLoads, server: Server) -> None:
        self.app = app
        self.loads = loads
        self.server = server
        self._next_look = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._over_share():
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A copy: the app may send the same header list with every answer.
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, closing)

    def _over_share(self) -> bool:
        now = time.monotonic()
        if now < self._next_look:
            return False
        self._next_look = now + BALANCE_SECONDS
        mine = sum(
            isinstance(c, (HttpToolsProtocol, H11Protocol))
            for c in self.server.server_state.connections
        )
        self.loads.publish(mine)
        counts = self.loads.counts()
        share = -(-sum(counts) // len(counts))
        return mine > share


class _WorkerProcess(Process):
    """uvicorn's worker process, told where the loads are and which slot is its own; it serves
    the app behind a :class:`ConnectionBalancer`."""

    def __init__(self, config: Config, sockets: list[socket.socket], loads: str) -> None:
        super().__init__(config, sockets)
        self.loads = loads

    def start(self) -> None:
        os.environ[LOADS_ENV] = self.loads  # spawn: the child starts with this environment
        try:
            super().start()
        finally:
            os.environ.pop(LOADS_ENV, None)

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover
        loads = WorkerLoads.from_environment()
        if loads is not None:
            # Loaded here (uvicorn's server would load it first thing) to be wrapped.
            self.config.load()
            self.config.loaded_app = ConnectionBalancer(self.config.loaded_app, loads, self.server)
        super().target(sockets)


class ReusePortSupervisor(Multiprocess):
    """uvicorn's supervisor with one ``SO_REUSEPORT`` socket per worker slot: worker ``i``
    (and whichever process replaces it) always serves socket ``i``, and publishes its load
    in slot ``i`` of the loads file."""

    def __init__(self, config: Config, sockets: list[socket.socket], loads: Path) -> None:
        super().__init__(config, sockets)
        self.loads = loads

    def _process(self, slot: int) -> Process:
        loads = f"{self.loads}:{slot}:{len(self.sockets)}"
        return _WorkerProcess(self.config, [self.sockets[slot]], loads)

    def init_processes(self) -> None:
        for slot in range(self.processes_num):
            process = self._process(slot)
            process.start()
            self.processes.append(process)

    def restart_all(self) -> None:
        """Replace each worker with a new one on the same socket; the old one stops only
        once its replacement serves (uvicorn's order)."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._process(slot)
            new.start()
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                return
            old.terminate()
            old.join()
            self.processes[slot] = new

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # It never served: the app or the socket is broken, and a replacement would
                # fail the same way (uvicorn stops here too).
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            replacement = self._process(slot)
            replacement.start()
            self.processes[slot] = replacement


def run_workers(app: str, workers: int, **options: Any) -> None:
    """Serve the ASGI app at import string ``app`` (a factory when ``factory=True``) in
    ``workers`` processes, each on its own ``SO_REUSEPORT`` socket; until SIGTERM/SIGINT."""
    import uvicorn

    if not hasattr(socket, "SO_REUSEPORT") or os.name != "posix":
        uvicorn.run(app, workers=workers, **options)
        return
    config = Config(app, workers=workers, **options)
    sockets = reuse_port_sockets(config.host, config.port, workers)
    log.info(
        "serving on http://%s:%d in %d worker processes, one SO_REUSEPORT socket each",
        config.host,
        sockets[0].getsockname()[1],
        workers,
    )
    loads = WorkerLoads.create(workers)
    try:
        ReusePortSupervisor(config, sockets, loads).run()
    finally:
        for sock in sockets:
            sock.close()
        loads.unlink(missing_ok=True)
