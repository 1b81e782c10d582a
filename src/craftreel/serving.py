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
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

log = logging.getLogger(__name__)


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


class ReusePortSupervisor(Multiprocess):
    """uvicorn's supervisor with one ``SO_REUSEPORT`` socket per worker slot: worker ``i``
    (and whichever process replaces it) always serves socket ``i``."""

    def _process(self, slot: int) -> Process:
        return Process(self.config, [self.sockets[slot]])

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
    try:
        ReusePortSupervisor(config, sockets).run()
    finally:
        for sock in sockets:
            sock.close()
