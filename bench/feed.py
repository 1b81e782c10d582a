"""Feed: the Following and Discover timelines against a bare ASGI route, on both databases.

For each backend, on a database filled by ``datagen.py`` (10k people, 100k posts, 1M likes,
200k follows; generated first when missing), in one run:

1. The real ``craftreel serve`` on that database; the bench accounts sign in (bearer
   tokens); GET /api/v1/feed/following?limit=20 and /api/v1/feed/discover?limit=20 at 32
   and at 64 connections, each request as a random one of the signed-in accounts (who follow
   20–200 makers each), so no cache makes it trivial. Then the app's own GET /healthz
   (routing and middleware, no database): the floor the framework sets.
2. Deep pages: a few accounts page through each feed by its cursor to page 500; those
   page-500 requests then run at 32 connections, against page 1's p99.
3. Baseline, once the app has stopped: a bare ASGI app (no framework: one coroutine that
   answers every request with the same small JSON body) served by uvicorn exactly as
   ``craftreel serve`` serves the app (the same ``--workers`` count, default 2 — the machine's
   cores —, same host, ``proxy_headers``, no access log, uvloop and httptools) takes the very
   same requests at 32 and at 64 connections.

The client is raw asyncio HTTP/1.1 over keep-alive connections (uvloop, requests encoded
in advance, only the status line and Content-Length parsed), because it shares the two cores
with the server. Each timing waits for the machine to be quiet first and is done again when
other people's work used more than ``--max-other`` cores during it; the load average, and the
CPU seconds of the server, PostgreSQL (our database's backends), the client and everything
else are recorded for every timing.

Targets (issue 4): feed throughput at least 20 % of the baseline's; p99 at most 50 ms at
32 connections; page 500's p99 within 1.5x of page 1's. The exit status is 0 when they are
met (and no request failed), 1 otherwise.

    .venv/bin/python bench/feed.py                              # both (30+ min)
    .venv/bin/python bench/feed.py --backends sqlite --duration 10
    .venv/bin/python bench/feed.py --readme-only                # README from the last JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

import datagen
import report
from checkout import LIMITS, expect, percentile
from upload_memory import Server

ROOT = Path(__file__).resolve().parents[1]
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/craftreel_bench_feed"
SQLITE_URL = f"sqlite+aiosqlite:///{ROOT / 'var' / 'bench' / 'feed.db'}"
FEEDS = {"following": "/api/v1/feed/following", "discover": "/api/v1/feed/discover"}
PAGE = 20
#: Re-sign-in before a timing once tokens are this old (access tokens live 15 minutes).
TOKEN_MAX_AGE_S = 600
#: Before a timing: the rest of the machine under a quarter of a core for five seconds.
QUIET_CORES = 0.25
QUIET_WINDOW_S = 5.0
TARGET_RATIO = 0.20
TARGET_P99_MS = 50.0
TARGET_DEEP = 1.5
BARE_BODY = b'{"items":[],"next_cursor":null}'


# --- the baseline: a bare ASGI app ------------------------------------------------------


#: When set (a database URL), the bare app runs ``SELECT 1`` through the app's driver for every
#: request before answering: what one database round trip costs without any framework.
BARE_QUERY_ENV = "CRAFTREEL_BENCH_BARE_QUERY"
_bare_query: Callable[[], Awaitable[object]] | None = None


async def _driver_query(url: str) -> Callable[[], Awaitable[object]]:
    """``SELECT 1`` on a pool of the driver's own connections (asyncpg, or aiosqlite)."""
    parsed = make_url(url)
    if parsed.drivername.startswith("postgresql"):
        import asyncpg

        pool = await asyncpg.create_pool(
            host=parsed.host,
            port=parsed.port or 5432,
            user=parsed.username,
            database=parsed.database,
            min_size=16,
            max_size=16,
        )

        async def pg_query() -> object:
            return await pool.fetchval("SELECT 1")

        return pg_query
    import aiosqlite

    idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
    for _ in range(8):
        idle.put_nowait(await aiosqlite.connect(parsed.database or ""))

    async def sqlite_query() -> object:
        conn = await idle.get()
        try:
            async with conn.execute("SELECT 1") as cursor:
                return await cursor.fetchone()
        finally:
            idle.put_nowait(conn)

    return sqlite_query


async def bare_app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Every request gets 200 and the same JSON body; nothing else (no framework) — but one
    ``SELECT 1`` first when ``CRAFTREEL_BENCH_BARE_QUERY`` names a database."""
    global _bare_query
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.environ.get(BARE_QUERY_ENV):
                    _bare_query = await _driver_query(os.environ[BARE_QUERY_ENV])
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if _bare_query is not None:
        await _bare_query()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BARE_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BARE_BODY})


def serve_bare(port: int, workers: int) -> None:
    """Served as ``craftreel serve`` serves the app (craftreel/cli.py cmd_serve: uvicorn, in
    ``workers`` processes each on its own ``SO_REUSEPORT`` socket), with bare_app."""
    import uvicorn

    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "proxy_headers": True,
        "log_config": None,
        "access_log": False,
    }
    if workers > 1:
        from craftreel.serving import run_workers

        sys.path.insert(0, str(Path(__file__).parent))  # the workers import feed:bare_app
        run_workers("feed:bare_app", workers, **options)
    else:
        uvicorn.run(bare_app, **options)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class BareServer:
    """``feed.py --serve-bare`` in its own process."""

    def __init__(self, log: Path, workers: int, query_url: str | None = None) -> None:
        self.workers = workers
        self.env = {**os.environ, BARE_QUERY_ENV: query_url or ""}
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--serve-bare", str(self.port), str(self.workers)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the bare server exited; see {self.log}")
            try:
                if httpx.get(self.base, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"the bare server did not answer within 30 s; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def uvicorn_flavour() -> str:
    """Which event loop and HTTP parser uvicorn's "auto" picks here (for both servers)."""
    import uvicorn

    parts = [f"uvicorn {uvicorn.__version__}"]
    for module in ("uvloop", "httptools"):
        try:
            parts.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            parts.append(f"no {module}")
    return ", ".join(parts)


# --- the client -------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection sending pre-encoded requests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """The status code and body of the answer to ``request``."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
        status = int(head[9:12])
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
            body = await self.reader.readexactly(length)
        elif b"\r\ntransfer-encoding: chunked" in head:
            body = await self._chunked()
        else:
            raise ValueError("an answer without a length")
        if b"\r\nconnection: close" in head:
            self.close()
        return status, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(parts)


def get(port: int, path: str, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
    ).encode()


# --- measuring --------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """CPU seconds of a process (all its threads) from /proc; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_pids(pid: int) -> set[int]:
    """A process and all its descendants (a server's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_s(pids: set[int]) -> float:
    """CPU seconds of these processes (a server and its workers)."""
    return sum(process_cpu_s(pid) for pid in pids)


def postgres_backends_cpu_s(database: str | None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving ``database`` (its process title names
    the database), so that our queries' CPU is not counted as other people's work."""
    if database is None:
        return {}
    needle = f" {database} ".encode()
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                title = cmdline.read()
        except OSError:
            continue
        if title.startswith(b"postgres:") and needle in title:
            found[int(entry.name)] = process_cpu_s(int(entry.name))
    return found


def all_processes_cpu_s() -> dict[int, tuple[str, float]]:
    """Every process's short command line and CPU seconds (to name what else ran)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                words = cmdline.read().split(b"\0")
        except OSError:
            continue
        name = b" ".join(Path(words[0].decode(errors="replace")).name.encode().split()[:1])
        rest = b" ".join(w for w in words[1:3] if w)[:60]
        label = (name + b" " + rest).decode(errors="replace").strip()
        found[int(entry.name)] = (label or "?", process_cpu_s(int(entry.name)))
    return found


def busiest_others(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    ours: set[int],
    count: int = 3,
) -> list[str]:
    """The processes (not ours) that used the most CPU between two snapshots."""
    used = []
    for pid, (label, cpu) in after.items():
        if pid in ours:
            continue
        spent = cpu - before.get(pid, (label, 0.0))[1]
        if spent >= 0.2:
            used.append((spent, label))
    return [f"{label} {spent:.1f} s" for spent, label in sorted(used, reverse=True)[:count]]


class BackendSampler(threading.Thread):
    """Notes the CPU seconds of our database's PostgreSQL backends twice a second, so that
    backends a connection pool opens and closes during a timing are counted too."""

    def __init__(self, database: str | None) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.start_cpu = postgres_backends_cpu_s(database)
        self.last_cpu = dict(self.start_cpu)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.5):
            self.last_cpu.update(postgres_backends_cpu_s(self.database))

    def stop(self) -> float:
        """CPU seconds our backends used since the sampler was made."""
        self.halt.set()
        self.join()
        self.last_cpu.update(postgres_backends_cpu_s(self.database))
        return sum(
            max(0.0, cpu - self.start_cpu.get(pid, 0.0)) for pid, cpu in self.last_cpu.items()
        )


@dataclass
class Timing:
    """One timed spell of requests."""

    label: str
    connections: int
    wall_s: float
    latencies: list[float]
    errors: Counter[str]
    body_bytes: int
    loadavg_start: tuple[float, float, float]
    quiet_wait_s: float
    cpu: dict[str, float]
    busiest_others: list[str] = field(default_factory=list)
    attempts: int = 1

    @property
    def other_cores(self) -> float:
        return self.cpu["other_s"] / self.wall_s

    def figures(self) -> dict[str, Any]:
        lat = self.latencies
        return {
            "connections": self.connections,
            "duration_s": round(self.wall_s, 2),
            "requests": len(lat),
            "rps": round(len(lat) / self.wall_s, 1),
            "p50_ms": round(percentile(lat, 0.50) * 1000, 2) if lat else None,
            "p90_ms": round(percentile(lat, 0.90) * 1000, 2) if lat else None,
            "p99_ms": round(percentile(lat, 0.99) * 1000, 2) if lat else None,
            "max_ms": round(max(lat) * 1000, 2) if lat else None,
            "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None,
            "errors": dict(self.errors),
            "mean_body_bytes": self.body_bytes,
            "loadavg_start": [round(x, 2) for x in self.loadavg_start],
            "quiet_wait_s": self.quiet_wait_s,
            "cpu_s": self.cpu,
            "other_cores": round(self.other_cores, 2),
            "busiest_others": self.busiest_others,
            "attempts": self.attempts,
        }


@dataclass
class Bench:
    """What every timing of one backend needs."""

    port: int
    server_pid: int
    database: str | None  # PostgreSQL database whose backends count as ours
    duration: float
    warmup: float
    quiet_wait: float
    max_other: float
    retries: int
    seed: int
    timings: list[dict[str, Any]] = field(default_factory=list)

    async def run(
        self,
        label: str,
        make_requests: Callable[[], Awaitable[Sequence[bytes]]],
        connections: int,
    ) -> Timing:
        """Time the requests ``make_requests`` gives (each attempt asks again, so tokens stay
        fresh), picked at random, at ``connections``; done again while other work disturbed
        it, and the least disturbed attempt kept."""
        kept: Timing | None = None
        for attempt in range(1, self.retries + 2):
            requests = await make_requests()
            waited, _ = await asyncio.to_thread(
                report.wait_for_quiet, self.quiet_wait, QUIET_CORES, QUIET_WINDOW_S
            )
            await self._spell(requests, connections, self.warmup, record=False)
            timing = await self._spell(requests, connections, self.duration, record=True)
            assert timing is not None
            timing.label, timing.quiet_wait_s = label, waited
            if kept is None or timing.other_cores < kept.other_cores:
                kept = timing
            kept.attempts = attempt
            note = f"other work {timing.other_cores:.2f} cores"
            if timing.busiest_others:
                note += ": " + ", ".join(timing.busiest_others)
            figures = timing.figures()
            print(
                f"  {label:28} {connections:>3} conns  {figures['rps']:>8} req/s  "
                f"p50 {figures['p50_ms']} ms  p99 {figures['p99_ms']} ms  "
                f"errors {sum(timing.errors.values())}  ({note})",
                file=sys.stderr,
            )
            if timing.other_cores <= self.max_other:
                break
        assert kept is not None
        return kept

    async def _spell(
        self, requests: Sequence[bytes], connections: int, duration: float, record: bool
    ) -> Timing | None:
        conns = [Connection(self.port) for _ in range(connections)]
        await asyncio.gather(*(c.open() for c in conns))
        errors: Counter[str] = Counter()
        sizes: list[int] = []
        loadavg = os.getloadavg()
        meter = report.CpuMeter()
        processes_before = all_processes_cpu_s() if record else {}
        server_pids = tree_pids(self.server_pid)
        server_before = tree_cpu_s(server_pids)
        backends = BackendSampler(self.database)
        if self.database is not None:
            backends.start()
        started = time.perf_counter()
        deadline = started + duration

        async def worker(conn: Connection, pick: random.Random) -> list[float]:
            latencies: list[float] = []
            count = len(requests)
            while time.perf_counter() < deadline:
                request = requests[pick.randrange(count)]
                began = time.perf_counter()
                try:
                    status, body = await conn.send(request)
                except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                    errors[type(exc).__name__] += 1
                    conn.close()
                    continue
                if status == 200:
                    latencies.append(time.perf_counter() - began)
                    if len(sizes) < 200:
                        sizes.append(len(body))
                else:
                    errors[str(status)] += 1
            return latencies

        picks = [random.Random(self.seed * 1000 + i) for i in range(connections)]
        per_worker = await asyncio.gather(*map(worker, conns, picks))
        wall = time.perf_counter() - started
        used = meter.stop()
        server = tree_cpu_s(server_pids) - server_before
        pg = backends.stop() if self.database is not None else 0.0
        ours = {os.getpid(), *server_pids, *backends.last_cpu}
        others = busiest_others(processes_before, all_processes_cpu_s(), ours) if record else []
        for conn in conns:
            conn.close()
        if not record:
            return None
        other = max(0.0, used.foreign_s - server - pg)
        return Timing(
            label="",
            connections=connections,
            wall_s=wall,
            latencies=[x for lat in per_worker for x in lat],
            errors=errors,
            body_bytes=round(statistics.fmean(sizes)) if sizes else 0,
            loadavg_start=loadavg,
            quiet_wait_s=0.0,
            cpu={
                "server_s": round(server, 2),
                "postgres_s": round(pg, 2),
                "client_s": round(used.own_s, 2),
                "other_s": round(other, 2),
            },
            busiest_others=others,
        )


# --- the app ----------------------------------------------------------------------------


@dataclass
class Account:
    email: str
    token: str = ""


async def sign_in(base: str, accounts: list[Account]) -> float:
    """Fresh access tokens for ``accounts`` (argon2: a few at a time); seconds it took."""
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(120, connect=10)) as client:

        async def one(account: Account) -> None:
            body = {"email": account.email, "password": datagen.BENCH_PASSWORD}
            tokens = expect(await client.post("/api/v1/auth/signin", json=body), 200)
            account.token = tokens["access_token"]

        for start in range(0, len(accounts), 4):
            await asyncio.gather(*map(one, accounts[start : start + 4]))
    return time.perf_counter() - started


async def check_feed(port: int, path: str, accounts: list[Account]) -> dict[str, Any]:
    """Page 1 of the feed for every account, parsed: it must be {items, next_cursor}."""
    conn = Connection(port)
    counts = []
    try:
        for account in accounts:
            status, body = await conn.send(get(port, f"{path}?limit={PAGE}", account.token))
            if status != 200:
                raise RuntimeError(f"{path}: {status} {body[:300]!r}")
            page = json.loads(body)
            if set(page) != {"items", "next_cursor"}:
                raise RuntimeError(f"{path}: unexpected keys {sorted(page)}")
            counts.append(len(page["items"]))
    finally:
        conn.close()
    return {
        "accounts": len(counts),
        "full_pages": sum(c == PAGE for c in counts),
        "min_items": min(counts),
    }


async def walk(port: int, path: str, account: Account, pages: int) -> tuple[int, str | None]:
    """Follow the cursor from page 1; (the page reached, the cursor that fetches it)."""
    conn = Connection(port)
    cursor: str | None = None
    try:
        for page in range(1, pages):
            query = f"{path}?limit={PAGE}" + (f"&cursor={cursor}" if cursor else "")
            status, body = await conn.send(get(port, query, account.token))
            if status != 200:
                raise RuntimeError(f"{query}: {status} {body[:300]!r}")
            cursor = json.loads(body)["next_cursor"]
            if cursor is None:
                return page, None
            if not re.fullmatch(r"[A-Za-z0-9_\-]+", cursor):
                raise RuntimeError(f"a cursor that needs escaping: {cursor!r}")
        return pages, cursor
    finally:
        conn.close()


async def deepest_followers(url: str, pool: int, count: int) -> list[int]:
    """The bench accounts (of the first ``pool``) with the most followed posts, most first:
    the ones whose Following feed reaches page 500."""
    rows = await datagen.fetch(
        url,
        "SELECT u.email, count(*) FROM users u "
        "JOIN follows f ON f.follower_id = u.id AND f.status = 'active' "
        "JOIN posts p ON p.author_id = f.followee_id AND p.status = 'published' "
        "AND p.visibility IN ('public', 'followers') "
        "WHERE u.email LIKE 'bench%@bench.example.org' GROUP BY u.email ORDER BY 2 DESC",
    )
    wanted = {datagen.bench_email(n): n for n in range(pool)}
    return [wanted[email] for email, _ in rows if email in wanted][:count]


async def run_backend(backend: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Baseline, feeds and deep pages on one database."""
    counts = await datagen.row_counts(url, datagen.TABLES)
    generated = None
    if args.regenerate or not counts.get("posts"):
        print(f"[{backend}] generating the data set", file=sys.stderr)
        generated = await datagen.generate(url, datagen.sizes_from(args), fresh=True)
        datagen.record(generated)
        counts = await datagen.row_counts(url, datagen.TABLES)
    print(f"[{backend}] data: {counts}", file=sys.stderr)
    bench_accounts = (
        await datagen.fetch(
            url, "SELECT count(*) FROM users WHERE email LIKE 'bench%@bench.example.org'"
        )
    )[0][0]
    pool = min(args.pool, bench_accounts)
    if pool == 0:
        raise SystemExit("the data set has no bench accounts; generate it with --bench-users")
    accounts = [Account(datagen.bench_email(n)) for n in range(pool)]
    database = make_url(url).database if backend == "postgres" else None
    root = Path(tempfile.mkdtemp(prefix=f"craftreel-bench-feed-{backend}-", dir=args.tmp))
    result: dict[str, Any] = {"backend": backend, "rows": counts, "pool": pool}
    if generated is not None:
        result["datagen"] = generated
    deep_queries: dict[str, list[tuple[Account, str]]] = {}
    try:
        # The app: sign in, page 1 of each feed, then deep pages.
        server = app_server(root / "var", url, args)
        await asyncio.to_thread(server.start)
        try:
            signed_at = time.monotonic()
            result["sign_in_s"] = round(await sign_in(server.base, accounts), 1)
            print(f"[{backend}] {pool} accounts signed in", file=sys.stderr)

            async def fresh_tokens() -> None:
                nonlocal signed_at
                if time.monotonic() - signed_at > TOKEN_MAX_AGE_S:
                    await sign_in(server.base, accounts)
                    signed_at = time.monotonic()

            def requests_for(
                path: str, who: Sequence[tuple[Account, str]]
            ) -> Callable[[], Awaitable[Sequence[bytes]]]:
                """GETs of ``path`` + each account's query, with its current token."""

                async def make() -> list[bytes]:
                    await fresh_tokens()
                    return [get(server.port, f"{path}{query}", a.token) for a, query in who]

                return make

            bench = _bench(args, server.port, server.pid, database)
            result["checks"] = {
                name: await check_feed(server.port, path, accounts) for name, path in FEEDS.items()
            }
            feeds: dict[str, dict[str, Any]] = {name: {} for name in FEEDS}
            for connections in args.connections:
                for name, path in FEEDS.items():
                    page_1 = requests_for(path, [(a, f"?limit={PAGE}") for a in accounts])
                    timing = await bench.run(f"{name} page 1", page_1, connections)
                    feeds[name][str(connections)] = timing.figures()
            result["feeds"] = feeds

            # The app's floor: its own GET /healthz (routing, middleware, no database).
            healthz = requests_for("/healthz", [(a, "") for a in accounts])
            result["app_healthz"] = {
                str(c): (await bench.run("app GET /healthz", healthz, c)).figures()
                for c in args.connections
            }

            # Deep pages, at the first connection count.
            deep: dict[str, Any] = {}
            deep_users = await deepest_followers(url, pool, args.deep_users)
            for name, path in FEEDS.items():
                await fresh_tokens()
                walkers = [accounts[n] for n in deep_users]
                started = time.perf_counter()
                reached = await asyncio.gather(
                    *(walk(server.port, path, a, args.deep_page) for a in walkers)
                )
                walk_s = time.perf_counter() - started
                deep_queries[name] = [
                    (a, f"?limit={PAGE}&cursor={cursor}")
                    for a, (page, cursor) in zip(walkers, reached, strict=True)
                    if page == args.deep_page and cursor is not None
                ]
                entry: dict[str, Any] = {
                    "page": args.deep_page,
                    "accounts": len(walkers),
                    "reached": len(deep_queries[name]),
                    "pages_reached": [page for page, _ in reached],
                    "walk_s": round(walk_s, 1),
                }
                if deep_queries[name]:
                    connections = args.connections[0]
                    label = f"{name} page {args.deep_page}"
                    deep_page = requests_for(path, deep_queries[name])
                    entry[str(connections)] = (
                        await bench.run(label, deep_page, connections)
                    ).figures()
                deep[name] = entry
            result["deep"] = deep
        finally:
            server.stop()

        # The same page 1 and deep requests with no page kept (CRAFTREEL_FEED_PAGE_SECONDS=0):
        # each one reads the database, as every request of a reader who scrolls on does.
        server = app_server(root / "var-unkept", url, args)
        server.env["CRAFTREEL_FEED_PAGE_SECONDS"] = "0"
        await asyncio.to_thread(server.start)
        try:
            await sign_in(server.base, accounts)
            bench = _bench(args, server.port, server.pid, database)
            c = args.connections[0]
            unkept: dict[str, dict[str, Any]] = {}
            for name, path in FEEDS.items():
                page_1 = [get(server.port, f"{path}?limit={PAGE}", a.token) for a in accounts]
                deep_requests = [
                    get(server.port, f"{path}{query}", a.token) for a, query in deep_queries[name]
                ]
                unkept[name] = {
                    "page 1": (
                        await bench.run(f"{name} page 1, unkept", _fixed(page_1), c)
                    ).figures()
                }
                if deep_requests:
                    label = f"{name} page {args.deep_page}, unkept"
                    unkept[name][f"page {args.deep_page}"] = (
                        await bench.run(label, _fixed(deep_requests), c)
                    ).figures()
            result["unkept"] = {str(c): unkept}
        finally:
            server.stop()

        # The baseline: the same requests (the Following ones) to the bare app, on its own.
        bare = BareServer(root / "bare.log", args.workers)
        await asyncio.to_thread(bare.start)
        try:
            same = [get(bare.port, f"{FEEDS['following']}?limit={PAGE}", a.token) for a in accounts]
            bench = _bench(args, bare.port, bare.pid, None)
            result["baseline"] = {
                str(c): (await bench.run("bare ASGI JSON", _fixed(same), c)).figures()
                for c in args.connections
            }
        finally:
            bare.stop()

        # The floor of any handler that reads the database: the bare app plus one SELECT 1.
        bare = BareServer(root / "bare-query.log", args.workers, url)
        await asyncio.to_thread(bare.start)
        try:
            queried = [
                get(bare.port, f"{FEEDS['following']}?limit={PAGE}", a.token) for a in accounts
            ]
            bench = _bench(args, bare.port, bare.pid, database)
            c = args.connections[0]
            result["bare_query"] = {
                str(c): (await bench.run("bare ASGI + SELECT 1", _fixed(queried), c)).figures()
            }
        finally:
            bare.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def app_server(var: Path, url: str, args: argparse.Namespace) -> Server:
    """``craftreel serve`` on the bench database, with the sign-in limits raised."""
    server = Server(var, None)
    server.serve_args = ["--workers", str(args.workers)]
    server.env.update(LIMITS)
    server.env["CRAFTREEL_DATABASE_URL"] = url
    return server


def _fixed(requests: list[bytes]) -> Callable[[], Awaitable[Sequence[bytes]]]:
    """Requests made once (their tokens outlive a few timings)."""

    async def make() -> list[bytes]:
        return requests

    return make


def _bench(args: argparse.Namespace, port: int, pid: int, database: str | None) -> Bench:
    return Bench(
        port=port,
        server_pid=pid,
        database=database,
        duration=args.duration,
        warmup=args.warmup,
        quiet_wait=args.quiet_wait,
        max_other=args.max_other,
        retries=args.retries,
        seed=args.seed,
    )


# --- targets and the README -------------------------------------------------------------


def judge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each run's ratios and whether every target is met."""
    checks: list[bool] = []
    for run in runs:
        ratios: dict[str, dict[str, float]] = {}
        for name, by_conns in run["feeds"].items():
            ratios[name] = {}
            for conns, figures in by_conns.items():
                ratio = figures["rps"] / run["baseline"][conns]["rps"]
                ratios[name][conns] = round(ratio, 3)
                checks.append(ratio >= TARGET_RATIO)
            first = min(by_conns, key=int)
            checks.append(by_conns[first]["p99_ms"] <= TARGET_P99_MS)
            deep = run["deep"].get(name, {})
            if first in deep:
                deep["p99_vs_page1"] = round(deep[first]["p99_ms"] / by_conns[first]["p99_ms"], 2)
                checks.append(deep["p99_vs_page1"] <= TARGET_DEEP)
            else:
                checks.append(False)
        run["ratios"] = ratios
    errors = 0
    for run in runs:
        for group_ in (run["baseline"], run.get("app_healthz", {}), run.get("bare_query", {})):
            errors += sum(sum(f["errors"].values()) for f in group_.values())
        errors += sum(sum(f["errors"].values()) for f in _unkept(run))
        for group in (run["feeds"], run["deep"]):
            for by_conns in group.values():
                errors += sum(
                    sum(f["errors"].values()) for key, f in by_conns.items() if key.isdigit()
                )
    return {"targets_met": all(checks), "failed_requests": errors}


def _unkept(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures of a run's timings with no page kept."""
    return [
        f
        for by_feed in run.get("unkept", {}).values()
        for by_page in by_feed.values()
        for f in by_page.values()
    ]


BEGIN = "<!-- feed-figures:begin (bench/feed.py writes this) -->"
END = "<!-- feed-figures:end -->"
SUMMARY_BEGIN = "<!-- feed-summary:begin (bench/feed.py writes this) -->"
SUMMARY_END = "<!-- feed-summary:end -->"
NAMES = {"postgres": "PostgreSQL", "sqlite": "SQLite"}


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def _processes(data: dict[str, Any]) -> str:
    workers = int(data["settings"].get("workers", 1))
    return "one server process" if workers == 1 else f"{workers} server worker processes each"


def _dates(data: dict[str, Any]) -> str:
    """When the runs were timed: one date, or each backend's when they differ."""
    dates = {
        NAMES[run["backend"]]: run.get("date", data["machine"]["date"][:10]) for run in data["runs"]
    }
    if len({d[:10] for d in dates.values()}) == 1 and all(len(d) <= 10 for d in dates.values()):
        return next(iter(dates.values()))
    return ", ".join(f"{name} timed {date}" for name, date in dates.items())


def figures_markdown(data: dict[str, Any]) -> str:
    """The "Latest figures" block of bench/README.md."""
    m = data["machine"]
    lines = [
        f"{_dates(data)}; {m['cpu_count']} × {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"Python {m['python']}, {data['settings']['server']}; {_processes(data)}, the client "
        f"on the same two cores. {data['settings']['duration_s']:g} s per timing; load average "
        f"at the start {', '.join(f'{x:.2f}' for x in data['loadavg_start'])}.",
        "",
        "| Backend | Request | Conns | req/s | × baseline | p50 | p90 | p99 | Failed "
        "| CPU s: server / PostgreSQL / client / other |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in data["runs"]:
        backend = NAMES[run["backend"]]
        rows: list[tuple[str, str, dict[str, Any], str]] = []
        for conns, figures in run["baseline"].items():
            rows.append(("bare ASGI JSON", conns, figures, "1"))
        for conns, figures in run.get("bare_query", {}).items():
            ratio = figures["rps"] / run["baseline"][conns]["rps"]
            rows.append(("bare ASGI + one SELECT 1 (driver)", conns, figures, f"{ratio:.3f}"))
        for conns, figures in run.get("app_healthz", {}).items():
            ratio = figures["rps"] / run["baseline"][conns]["rps"]
            rows.append(("app GET /healthz, no database", conns, figures, f"{ratio:.3f}"))
        for name, by_conns in run["feeds"].items():
            for conns, figures in by_conns.items():
                ratio = run["ratios"][name][conns]
                rows.append((f"{name}, page 1", conns, figures, f"**{ratio:.3f}**"))
        for name, deep in run["deep"].items():
            for conns, figures in deep.items():
                if conns.isdigit():
                    vs = deep.get("p99_vs_page1")
                    label = f"{name}, page {deep['page']}"
                    rows.append((label, conns, figures, f"p99 {vs:.2f}× page 1" if vs else ""))
        for conns, by_feed in run.get("unkept", {}).items():
            for name, by_page in by_feed.items():
                first = by_page["page 1"]
                for page, figures in by_page.items():
                    if page == "page 1":
                        ratio = f"{figures['rps'] / run['baseline'][conns]['rps']:.3f}"
                    else:
                        ratio = f"p99 {figures['p99_ms'] / first['p99_ms']:.2f}× page 1"
                    rows.append((f"{name}, {page}, no page kept", conns, figures, ratio))
        for label, conns, f, ratio in rows:
            cpu = f["cpu_s"]
            lines.append(
                f"| {backend} | {label} | {conns} | {f['rps']:.0f} | {ratio} | "
                f"{_ms(f['p50_ms'])} | {_ms(f['p90_ms'])} | **{_ms(f['p99_ms'])}** | "
                f"{sum(f['errors'].values())} | {cpu['server_s']:.1f} / {cpu['postgres_s']:.1f} "
                f"/ {cpu['client_s']:.1f} / {cpu['other_s']:.1f} |"
            )
    lines += ["", "| Backend | Data set | Deep pages walked |", "| --- | --- | --- |"]
    for run in data["runs"]:
        rows_ = run["rows"]
        walked = "; ".join(
            f"{name}: {deep['reached']}/{deep['accounts']} accounts to page {deep['page']} "
            f"in {deep['walk_s']:.0f} s"
            for name, deep in run["deep"].items()
        )
        lines.append(
            f"| {NAMES[run['backend']]} | {rows_['users']:,} people, {rows_['posts']:,} posts, "
            f"{rows_['post_likes']:,} likes, {rows_['follows']:,} follows; "
            f"{run['pool']} accounts signed in | {walked} |"
        )
    verdict = "met" if data["targets_met"] else "**not met**"
    settings = data["settings"]
    limit = settings["max_other_cores"]
    timings = [
        f
        for run in data["runs"]
        for f in [
            *run["baseline"].values(),
            *run.get("app_healthz", {}).values(),
            *run.get("bare_query", {}).values(),
            *(f for by in run["feeds"].values() for f in by.values()),
            *(f for deep in run["deep"].values() for k, f in deep.items() if k.isdigit()),
            *_unkept(run),
        ]
    ]
    disturbed = [f for f in timings if f["other_cores"] > limit]
    redone = sum(f["attempts"] - 1 for f in timings)
    lines += [
        "",
        f"Timings done again because other work used more than {limit} cores: {redone}; "
        f"still disturbed after {data['settings'].get('retries', 2) + 1} tries: "
        f"{len(disturbed)} of {len(timings)}"
        + (
            f" (other work up to {max(f['other_cores'] for f in disturbed):.2f} cores)."
            if disturbed
            else "."
        ),
        "",
        f"Targets (throughput ≥ {TARGET_RATIO:.0%} of the baseline, p99 ≤ {TARGET_P99_MS:.0f} ms "
        f"at {settings['connections'][0]} connections, page {settings['deep_page']} p99 "
        f"≤ {TARGET_DEEP}× page 1): {verdict}. "
        f"Failed requests: {data['failed_requests']}.",
    ]
    return "\n".join(lines)


def summary_markdown(data: dict[str, Any]) -> str:
    """The short block in the top-level README."""
    runs = {run["backend"]: run for run in data["runs"]}
    order = [b for b in ("postgres", "sqlite") if b in runs]
    head = " | ".join(NAMES[b] for b in order)
    rows = data["runs"][0]["rows"]
    deep_page = data["settings"]["deep_page"]
    lines = [
        f"Timelines (issue 4; `bench/feed.py` on {rows['users']:,} people, {rows['posts']:,} "
        f"posts, {rows['post_likes']:,} likes, {rows['follows']:,} follows; signed in, "
        f"{data['settings']['page_size']} posts a page; {_processes(data)}; "
        f"{_dates(data)}, details in `bench/README.md`):",
        "",
        f"| what | {head} | target |",
        "| --- | " + " | ".join("---" for _ in order) + " | --- |",
    ]
    conns = sorted({c for run in runs.values() for c in run["baseline"]}, key=int)
    for name in FEEDS:
        for c in conns:
            cells = []
            for b in order:
                f = runs[b]["feeds"][name][c]
                ratio = runs[b]["ratios"][name][c]
                cells.append(
                    f"{f['rps']:.0f} req/s ({ratio:.1%} of bare ASGI), p50 {f['p50_ms']:.0f} ms, "
                    f"p99 {f['p99_ms']:.0f} ms"
                )
            target = f"≥ 20% of baseline{', p99 ≤ 50 ms' if c == conns[0] else ''}"
            lines.append(
                f"| {name.capitalize()}, {c} connections | {' | '.join(cells)} | {target} |"
            )
    cells = []
    for b in order:
        parts = [
            f"{name} {runs[b]['deep'][name].get('p99_vs_page1', float('nan')):.2f}×"
            for name in FEEDS
        ]
        cells.append(", ".join(parts))
    lines.append(
        f"| page {deep_page} p99 / page 1 p99, {conns[0]} connections | {' | '.join(cells)} "
        f"| ≤ {TARGET_DEEP}× |"
    )
    cells = [
        " / ".join(f"{runs[b]['baseline'][c]['rps']:.0f}" for c in conns) + " req/s" for b in order
    ]
    label = f"bare ASGI JSON route, {' / '.join(conns)} connections"
    lines.append(f"| {label} | {' | '.join(cells)} | baseline |")
    if all("app_healthz" in runs[b] for b in order):
        cells = [
            " / ".join(
                f"{runs[b]['app_healthz'][c]['rps']:.0f} "
                f"({runs[b]['app_healthz'][c]['rps'] / runs[b]['baseline'][c]['rps']:.1%})"
                for c in conns
            )
            + " req/s"
            for b in order
        ]
        label = f"the app's GET /healthz (no database), {' / '.join(conns)} connections"
        lines.append(f"| {label} | {' | '.join(cells)} | — |")
    if all("bare_query" in runs[b] for b in order):
        cells = []
        for b in order:
            f = runs[b]["bare_query"][conns[0]]
            ratio = f["rps"] / runs[b]["baseline"][conns[0]]["rps"]
            cells.append(f"{f['rps']:.0f} req/s ({ratio:.1%}), p99 {f['p99_ms']:.0f} ms")
        label = f"bare ASGI + one `SELECT 1` through the driver, {conns[0]} connections"
        lines.append(f"| {label} | {' | '.join(cells)} | the floor of a database read |")
    if all(conns[0] in runs[b].get("unkept", {}) for b in order):
        for name in FEEDS:
            cells = []
            for b in order:
                by_page = runs[b]["unkept"][conns[0]][name]
                first = by_page["page 1"]
                ratio = first["rps"] / runs[b]["baseline"][conns[0]]["rps"]
                deep = by_page.get(f"page {deep_page}")
                cells.append(
                    f"{first['rps']:.0f} req/s ({ratio:.1%}), p99 {first['p99_ms']:.0f} ms"
                    + (
                        f"; page {deep_page} p99 {deep['p99_ms'] / first['p99_ms']:.2f}×"
                        if deep
                        else ""
                    )
                )
            label = f"{name.capitalize()}, no page kept (each request reads), {conns[0]} conns"
            lines.append(f"| {label} | {' | '.join(cells)} | — |")
    return "\n".join(lines)


def replace_between(path: Path, begin: str, end: str, block: str) -> None:
    """Put ``block`` between the markers in ``path`` (which must hold them)."""
    text = path.read_text()
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise SystemExit(f"{path} lacks the markers {begin!r} … {end!r}")
    path.write_text(text[: start + len(begin)] + "\n" + block + "\n" + text[stop:])


def write_readmes(data: dict[str, Any]) -> None:
    replace_between(ROOT / "bench" / "README.md", BEGIN, END, figures_markdown(data))
    replace_between(ROOT / "README.md", SUMMARY_BEGIN, SUMMARY_END, summary_markdown(data))


# --- main -------------------------------------------------------------------------------


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-bare":
        serve_bare(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", nargs="+", choices=["postgres", "sqlite"], default=["postgres", "sqlite"]
    )
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--sqlite-url", default=SQLITE_URL)
    parser.add_argument("--duration", type=float, default=20, help="seconds per timing")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="server worker processes (the app's and the bare one's)",
    )
    parser.add_argument("--warmup", type=float, default=3, help="untimed seconds before each")
    parser.add_argument("--connections", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--pool", type=int, default=200, help="signed-in accounts to pick from")
    parser.add_argument("--deep-page", type=int, default=500)
    parser.add_argument("--deep-users", type=int, default=8, help="accounts that walk to it")
    parser.add_argument("--quiet-wait", type=float, default=180, help="max wait for quiet, s")
    parser.add_argument(
        "--max-other", type=float, default=0.25, help="other work (cores) that voids a timing"
    )
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--regenerate", action="store_true", help="new data even if present")
    parser.add_argument("--no-readme", action="store_true", help="only write the JSON")
    parser.add_argument("--readme-only", action="store_true", help="README from the last JSON")
    parser.add_argument("--tmp", type=Path, help="where the servers' var dirs go")
    parser.add_argument(
        "--keep-others",
        action="store_true",
        help="keep the last JSON's runs of the backends not timed now (each run keeps its date)",
    )
    datagen.add_size_options(parser)
    args = parser.parse_args()
    if args.readme_only:
        write_readmes(json.loads((report.RESULTS / "feed.json").read_text()))
        return 0

    # Stopped from outside, still stop the servers (the finally blocks) on the way out.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    loadavg = os.getloadavg()
    urls = {"postgres": args.pg_url, "sqlite": args.sqlite_url}
    try:
        import uvloop

        new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:
        new_loop = asyncio.new_event_loop
    runs = []
    for backend in args.backends:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runs.append(runner.run(run_backend(backend, urls[backend], args)))
            runs[-1]["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.keep_others:
        previous = json.loads((report.RESULTS / "feed.json").read_text())
        for run in previous["runs"]:
            if run["backend"] not in args.backends:
                run.setdefault("date", previous["machine"]["date"][:10])
                runs.append(run)
    runs.sort(key=lambda run: list(NAMES).index(run["backend"]))
    verdict = judge(runs)
    data = {
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "pool": args.pool,
            "page_size": PAGE,
            "deep_page": args.deep_page,
            "max_other_cores": args.max_other,
            "retries": args.retries,
            "server": uvicorn_flavour(),
            "workers": args.workers,
            "client": "raw asyncio HTTP/1.1, keep-alive, one connection per worker",
        },
        "loadavg_start": [round(x, 2) for x in loadavg],
        "runs": runs,
        **verdict,
    }
    path = report.write("feed", data)
    data = json.loads(path.read_text())
    print(figures_markdown(data))
    if not args.no_readme:
        write_readmes(data)
    print(f"\nwritten to {path}")
    return 0 if verdict["targets_met"] and verdict["failed_requests"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
