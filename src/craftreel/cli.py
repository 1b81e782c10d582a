"""The ``craftreel`` command: serve · worker · migrate · create-admin · seed-demo · payments."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from craftreel.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[2]


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        print("Craftreel cannot start: a setting is missing or not valid.\n", file=sys.stderr)
        for err in exc.errors():
            name = "CRAFTREEL_" + "_".join(str(p) for p in err["loc"]).upper()
            print(f"  {name or 'CRAFTREEL_*'}: {err['msg']}", file=sys.stderr)
        print("\nSee docs/settings.md for every setting.", file=sys.stderr)
        raise SystemExit(2) from None


def alembic_config(settings: Settings):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini")) if (ROOT / "alembic.ini").exists() else Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = settings.effective_database_url
    return config


def migrate(settings: Settings, revision: str = "head") -> None:
    """Bring the database schema up to ``revision``."""
    from alembic import command

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from craftreel.app import create_app

    settings = load_settings()
    if args.migrate:
        migrate(settings)
    if args.seed_demo:
        from craftreel.demo import seed_demo

        asyncio.run(seed_demo(settings))
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "proxy_headers": True,
        "log_config": None,
        "access_log": False,
    }
    if args.workers > 1:
        from craftreel.serving import run_workers

        # Each worker process builds its own app (and engine, caches, job runner) from the
        # environment, and accepts on its own socket (craftreel.serving says why).
        run_workers("craftreel.cli:app_from_environment", args.workers, factory=True, **options)
    else:
        uvicorn.run(create_app(settings, freeze_gc=True), **options)


def app_from_environment() -> FastAPI:
    """The app a ``serve --workers N`` worker process runs, configured from the environment."""
    from craftreel.app import create_app

    return create_app(load_settings(), freeze_gc=True)


def cmd_worker(args: argparse.Namespace) -> None:
    """Run background jobs until SIGTERM/SIGINT: from Redis (arq) or by sweeping the table."""
    import signal

    from craftreel.context import build_context
    from craftreel.core.logging import configure_logging
    from craftreel.runtime import start_background

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)

    async def run() -> None:
        ctx = build_context(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        background = await start_background(ctx, run_jobs=True)
        worker = None
        try:
            if settings.jobs_backend == "redis":
                from craftreel.core.jobs_arq import build_worker

                assert settings.redis_url is not None
                worker = build_worker(ctx.jobs, settings.redis_url, settings.job_concurrency)
                worker_task = asyncio.create_task(worker.async_run())
                await asyncio.wait(
                    [worker_task, asyncio.create_task(stop.wait())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                worker_task.cancel()
                await asyncio.gather(worker_task, return_exceptions=True)
            else:
                print(
                    "craftreel worker: running jobs from the database (jobs backend: inprocess)",
                    file=sys.stderr,
                )
                await stop.wait()
        finally:
            if worker is not None:
                await worker.close()
            await background.stop()
            await ctx.close()

    asyncio.run(run())


def cmd_migrate(args: argparse.Namespace) -> None:
    migrate(load_settings(), args.revision)
    print(f"database at {args.revision}")


def cmd_create_admin(args: argparse.Namespace) -> None:
    from craftreel.accounts import service
    from craftreel.context import build_context

    settings = load_settings()
    password = os.environ.get("CRAFTREEL_ADMIN_PASSWORD") or getpass.getpass("Password: ")

    async def run() -> None:
        ctx = build_context(settings)
        try:
            async with ctx.uow() as uow:
                user = await service.create_admin(ctx, uow, args.email, args.handle, password)
            print(f"admin @{user.handle} created")
        finally:
            await ctx.close()

    from craftreel.core.errors import DomainError

    try:
        asyncio.run(run())
    except DomainError as exc:
        print(f"error: {exc.detail_message} ({exc.code})", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_retry_transfer(args: argparse.Namespace) -> None:
    """Send a failed transfer (or reversal) to a seller's connected account again."""
    from uuid import UUID

    from craftreel.context import build_context
    from craftreel.core.errors import DomainError
    from craftreel.shop import payments
    from craftreel.shop.prices import format_price

    settings = load_settings()
    try:
        transfer_id = UUID(args.transfer_id)
    except ValueError:
        print(f"error: {args.transfer_id!r} is not a transfer id", file=sys.stderr)
        raise SystemExit(2) from None

    async def run() -> int:
        ctx = build_context(settings)
        try:
            status = await payments.retry_transfer(ctx, transfer_id)
            async with ctx.uow() as uow:
                row = await uow.session.get(payments.PaymentTransfer, transfer_id)
                assert row is not None
                amount = format_price(row.amount, row.currency)
                what = f"{row.kind} {transfer_id}"
                if row.kind == payments.TransferKind.REVERSAL:
                    done = f"taken back ({amount} from {row.destination}, {row.provider_ref})"
                else:
                    done = f"sent ({amount} to {row.destination}, {row.provider_ref})"
                if status == payments.TransferStatus.SUCCEEDED:
                    print(f"{what}: {done}")
                    return 0
                if status == payments.TransferStatus.PENDING:
                    print(
                        f"{what}: Stripe did not answer; "
                        "a worker keeps trying (`craftreel worker`, or `serve`)"
                    )
                    return 0
                print(
                    f"{what}: refused again ({row.failure_code}: "
                    f"{payments.failure_text(row.failure_code, row.kind)})",
                    file=sys.stderr,
                )
                return 1
        finally:
            await ctx.close()

    try:
        code = asyncio.run(run())
    except DomainError as exc:
        print(f"error: {exc.detail_message} ({exc.code})", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code)


def cmd_seed_demo(args: argparse.Namespace) -> None:
    from craftreel.demo import seed_demo

    asyncio.run(seed_demo(load_settings()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="craftreel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--migrate", action="store_true", help="apply migrations first")
    serve.add_argument("--seed-demo", action="store_true", help="load demo data first")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes, each with its own socket"
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run background jobs (media processing, cleanup)")
    worker.set_defaults(func=cmd_worker)

    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("revision", nargs="?", default="head")
    mig.set_defaults(func=cmd_migrate)

    admin = sub.add_parser("create-admin", help="create an administrator account")
    admin.add_argument("--email", required=True)
    admin.add_argument("--handle", required=True)
    admin.set_defaults(func=cmd_create_admin)

    seed = sub.add_parser("seed-demo", help="load demo people (idempotent)")
    seed.set_defaults(func=cmd_seed_demo)

    money = sub.add_parser("payments", help="operator commands for payments")
    money_sub = money.add_subparsers(dest="payments_command", required=True)
    retry = money_sub.add_parser(
        "retry-transfer",
        help="send a failed transfer to a seller's Stripe account again, once its cause is fixed",
    )
    retry.add_argument("transfer_id", help="the transfer's id (from the alert mail or the log)")
    retry.set_defaults(func=cmd_retry_transfer)

    args = parser.parse_args(argv)
    args.func(args)
