"""Checkout: throughput and p99 with 32 concurrent buyers, and the oversell run.

Starts a real ``craftreel serve`` (demo mode, generous sign-up and sign-in limits) on a fresh
PostgreSQL database ``craftreel_bench_checkout`` on 127.0.0.1:5432 (user postgres, trust
auth), and optionally on SQLite too. Through the API: a seller with a listing of large stock,
and 32 buyers (signed up and signed in).

1. Throughput: each buyer loops for ``--duration`` seconds: add one unit to the cart, then
   POST /api/v1/checkouts with a fresh Idempotency-Key. Only the checkout request is timed.
2. Oversell: a fresh listing with stock 1; 50 buyers put it in their cart, then all POST a
   checkout at once. Exactly one must be sold (201) and the stock left must be 0.

Issue 5 ("Benchmark"). The exit status is 0 when no run oversold, 1 otherwise.

    .venv/bin/python bench/checkout.py                        # PostgreSQL, then SQLite
    .venv/bin/python bench/checkout.py --backends postgres --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

import report
from upload_memory import Server

PASSWORD = "correct horse battery staple"  # noqa: S105 - throwaway accounts
PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "craftreel_bench_checkout"
PG_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_DB}"
POOL = 64
THROUGHPUT_BUYERS = 32
RACE_BUYERS = 50
ADDRESS = {
    "name": "Lea Martin",
    "line1": "1 Loom Lane",
    "city": "Leeds",
    "postcode": "LS1 1AA",
    "country": "GB",
}
LIMITS = {
    "CRAFTREEL_RATE_LIMIT_SIGNUP": "100000/60",
    "CRAFTREEL_RATE_LIMIT_SIGNIN": "100000/60",
    "CRAFTREEL_RATE_LIMIT_SIGNIN_IP": "100000/60",
}


async def fresh_pg_database() -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=10)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {PG_DB}")
    finally:
        await conn.close()


async def drop_pg_database() -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=10)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
    finally:
        await conn.close()


def expect(response: httpx.Response, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


async def person(client: httpx.AsyncClient, handle: str) -> dict[str, str]:
    """Sign up and sign in; the bearer header."""
    email = f"{handle}@example.org"
    body = {"email": email, "handle": handle, "password": PASSWORD}
    expect(await client.post("/api/v1/auth/signup", json=body), 201)
    tokens = expect(
        await client.post("/api/v1/auth/signin", json={"email": email, "password": PASSWORD}),
        200,
    )
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def people(client: httpx.AsyncClient, prefix: str, count: int) -> list[dict[str, str]]:
    """`count` buyers, a few at a time (argon2 makes each sign-in ~0.1 s)."""
    auths: list[dict[str, str]] = []
    for start in range(0, count, 8):
        batch = range(start, min(start + 8, count))
        auths += await asyncio.gather(*(person(client, f"{prefix}{n}") for n in batch))
    return auths


async def listing(client: httpx.AsyncClient, seller: dict[str, str], stock: int) -> dict[str, Any]:
    """A published listing with one variant of `stock` units."""
    created = expect(
        await client.post(
            "/api/v1/listings",
            headers=seller,
            json={
                "title": "Speckled mug",
                "category": "pottery",
                "variants": [{"name": "Blue", "price_minor": 1250, "stock": stock}],
            },
        ),
        201,
    )
    published = await client.post(f"/api/v1/listings/{created['id']}/publish", headers=seller)
    return expect(published, 200)


async def add_to_cart(client: httpx.AsyncClient, buyer: dict[str, str], variant_id: str) -> None:
    expect(
        await client.post("/api/v1/cart/lines", headers=buyer, json={"variant_id": variant_id}),
        200,
    )


async def checkout(client: httpx.AsyncClient, buyer: dict[str, str]) -> httpx.Response:
    return await client.post(
        "/api/v1/checkouts",
        headers={**buyer, "Idempotency-Key": uuid.uuid4().hex},
        json={"shipping_address": ADDRESS},
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def throughput(
    client: httpx.AsyncClient, buyers: list[dict[str, str]], variant_id: str, duration: float
) -> dict[str, Any]:
    latencies: list[float] = []
    failures: dict[str, int] = {}
    stop_at = time.monotonic() + duration

    async def buyer_loop(buyer: dict[str, str]) -> None:
        while time.monotonic() < stop_at:
            await add_to_cart(client, buyer, variant_id)
            began = time.perf_counter()
            response = await checkout(client, buyer)
            elapsed = time.perf_counter() - began
            if response.status_code == 201:
                latencies.append(elapsed)
            else:
                key = str(response.status_code)
                failures[key] = failures.get(key, 0) + 1

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*map(buyer_loop, buyers)), duration + 120)
    wall = time.perf_counter() - started
    return {
        "buyers": len(buyers),
        "duration_s": round(wall, 2),
        "checkouts": len(latencies),
        "failures": failures,
        "checkouts_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }


async def oversell(
    client: httpx.AsyncClient, seller: dict[str, str], buyers: list[dict[str, str]]
) -> dict[str, Any]:
    last = await listing(client, seller, stock=1)
    variant_id = last["variants"][0]["id"]
    for buyer in buyers:
        await add_to_cart(client, buyer, variant_id)
    responses = await asyncio.wait_for(
        asyncio.gather(*(checkout(client, buyer) for buyer in buyers)), 120
    )
    codes: dict[str, int] = {}
    for response in responses:
        codes[str(response.status_code)] = codes.get(str(response.status_code), 0) + 1
    after = expect(await client.get(f"/api/v1/listings/{last['id']}"), 200)
    sold = codes.get("201", 0)
    left = after["variants"][0]["stock"]
    return {
        "buyers": len(buyers),
        "stock": 1,
        "sold": sold,
        "stock_left": left,
        "status_codes": codes,
        "correct": sold == 1 and left == 0,
    }


async def run_backend(backend: str, duration: float, tmp: Path | None) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"craftreel-bench-checkout-{backend}-", dir=tmp))
    server = Server(root / "var", None)
    server.env.update(LIMITS)
    if backend == "postgres":
        await fresh_pg_database()
        server.env["CRAFTREEL_DATABASE_URL"] = PG_URL
    try:
        await asyncio.to_thread(server.start)
        limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
        timeout = httpx.Timeout(60, connect=10)
        async with httpx.AsyncClient(
            base_url=server.base, limits=limits, timeout=timeout
        ) as client:
            seller = await person(client, "seller")
            expect(
                await client.post(
                    "/api/v1/shops",
                    headers=seller,
                    json={
                        "name": "Bench studio",
                        "handle": "bench-studio",
                        "currency": "GBP",
                        "shipping_rates": {"GB": 395, "*": 1200},
                        "free_shipping_over": 5000,
                    },
                ),
                201,
            )
            big = await listing(client, seller, stock=1_000_000)
            buyers = await people(client, "buyer", THROUGHPUT_BUYERS)
            print(f"[{backend}] {len(buyers)} buyers ready; {duration:.0f} s run", file=sys.stderr)
            tp = await throughput(client, buyers, big["variants"][0]["id"], duration)
            buyers += await people(client, "racer", RACE_BUYERS - THROUGHPUT_BUYERS)
            race = await oversell(client, seller, buyers)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        if backend == "postgres":
            await drop_pg_database()
    return {"backend": backend, "throughput": tp, "oversell": race}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", nargs="+", choices=["postgres", "sqlite"], default=["postgres", "sqlite"]
    )
    parser.add_argument("--duration", type=float, default=20, help="seconds of checkouts")
    parser.add_argument("--tmp", type=Path, help="where the server's var dir goes")
    args = parser.parse_args()

    runs = [asyncio.run(run_backend(b, args.duration, args.tmp)) for b in args.backends]
    correct = all(run["oversell"]["correct"] for run in runs)
    path = report.write(
        "checkout",
        {
            "settings": {
                "throughput_buyers": THROUGHPUT_BUYERS,
                "race_buyers": RACE_BUYERS,
                "duration_s": args.duration,
                "client_pool": POOL,
            },
            "runs": runs,
            "oversell_correct": correct,
        },
    )
    print(
        report.table(
            ["backend", "checkouts", "per s", "p50 ms", "p99 ms", "failed", "sold/stock", "left"],
            [
                [
                    run["backend"],
                    run["throughput"]["checkouts"],
                    run["throughput"]["checkouts_per_s"],
                    run["throughput"]["p50_ms"],
                    run["throughput"]["p99_ms"],
                    sum(run["throughput"]["failures"].values()),
                    f"{run['oversell']['sold']}/{run['oversell']['stock']}",
                    run["oversell"]["stock_left"],
                ]
                for run in runs
            ],
        )
    )
    print(f"\noversell: {'exactly one sold, none left' if correct else 'WRONG'}")
    print(f"written to {path}")
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
