"""Demo data for ``make run``: a handful of makers and viewers who follow each other."""

from __future__ import annotations

import io
import logging

from PIL import Image, ImageDraw

from craftreel.accounts import repository as accounts_repo
from craftreel.accounts import schemas
from craftreel.accounts import service as accounts
from craftreel.config import Settings
from craftreel.context import AppContext, build_context
from craftreel.core.clock import utcnow
from craftreel.core.mail import Mail
from craftreel.shop.models import ListingStatus

log = logging.getLogger(__name__)

DEMO_PASSWORD = "craft-demo-2026"  # noqa: S105 - printed in the README; demo accounts only

PEOPLE = [
    (
        "wool_and_wood",
        "Mara Lindqvist",
        "Knitting patterns and spoon carving from a cabin in Dalarna.",
        True,
        "#b5523b",
    ),
    (
        "kiln_kid",
        "Tomás Herrera",
        "Wheel-thrown stoneware. Glaze nerd. Seconds sale every Friday.",
        True,
        "#3d6b5a",
    ),
    ("paper_fox", "Aiko Tanaka", "Origami, bookbinding and marbled paper.", True, "#c99a2e"),
    ("stitch_witch", "Priya Raman", "Visible mending and embroidery tutorials.", True, "#6a4c93"),
    (
        "oakandiron",
        "Ben Okafor",
        "Small woodwork: boxes, boards and a lot of sawdust.",
        True,
        "#7a5230",
    ),
    (
        "curious_cat",
        "Lea Martin",
        "Learning to knit one dropped stitch at a time.",
        False,
        "#2f6690",
    ),
]


def _avatar(colour: str, letter: str) -> bytes:
    image = Image.new("RGB", (256, 256), colour)
    draw = ImageDraw.Draw(image)
    draw.ellipse((48, 48, 208, 208), outline="white", width=10)
    draw.text((112, 104), letter.upper(), fill="white", font_size=48)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


DemoListing = tuple[str, str, list[tuple[str, int, int | None]]]
SHOPS: list[tuple[str, str, list[DemoListing]]] = [
    (
        "kiln_kid",
        "Kiln Kid Ceramics",
        [
            (
                "Speckled stoneware mug",
                "pottery",
                [("Oatmeal", 2800, 6), ("Midnight blue", 3000, 2)],
            ),
            ("Seconds bowl", "pottery", [("Small", 1400, 10)]),
        ],
    ),
    (
        "wool_and_wood",
        "Wool & Wood",
        [
            ("Birch eating spoon", "woodwork", [("Standard", 3500, 4)]),
            ("Lopi sweater pattern (PDF)", "knitting", [("Pattern", 700, None)]),
        ],
    ),
]


async def _seed_shops(ctx: AppContext) -> int:
    """Two makers' shops with active listings; skipped for makers who already have one."""
    from craftreel.shop import repository as shop_repo
    from craftreel.shop import schemas as shop_schemas
    from craftreel.shop import service as shop

    opened = 0
    for handle, name, listings in SHOPS:
        async with ctx.uow() as uow:
            owner = await accounts_repo.user_by_handle(uow.session, handle)
            if owner is None or await shop_repo.shop_of_owner(uow.session, owner.id):
                continue
            await shop.open_shop(
                uow,
                owner,
                shop_schemas.ShopCreate(
                    name=name,
                    handle=handle.replace("_", "-"),
                    shipping_rates={"GB": 395, "*": 1200},
                    free_shipping_over=5000,
                    shipping_policy="Sent within 3 working days, well wrapped.",
                    returns_policy="Returns accepted within 14 days of delivery.",
                ),
            )
            for title, category, variants in listings:
                digital = all(stock is None for _, _, stock in variants)
                made = await shop.create_listing(
                    uow,
                    owner,
                    shop_schemas.ListingCreate(
                        title=title,
                        category=category,
                        kind="digital" if digital else "physical",
                        variants=[
                            shop_schemas.VariantIn(name=v, price_minor=price, stock=stock)
                            for v, price, stock in variants
                        ],
                    ),
                )
                await shop.set_listing_status(uow, owner, made.id, ListingStatus.ACTIVE)
            opened += 1
    return opened


class _SilentMailer:
    async def send(self, mail: Mail) -> None:
        log.debug("demo mail suppressed", extra={"to": mail.to})


async def seed_demo(settings: Settings) -> None:
    """Create the demo people and follows; running it again changes nothing."""
    ctx = build_context(settings)
    ctx.outbox.mailer = _SilentMailer()
    created = 0
    try:
        for handle, name, bio, maker, colour in PEOPLE:
            async with ctx.uow() as uow:
                if await accounts_repo.user_by_handle(uow.session, handle) is not None:
                    continue
                user = await accounts.sign_up(
                    ctx,
                    uow,
                    schemas.SignUp(
                        email=f"{handle.replace('_', '.')}@demo.craftreel.app",
                        handle=handle,
                        password=DEMO_PASSWORD,
                        display_name=name,
                    ),
                    accounts.Client(ip=f"seed-{handle}", device="seed-demo"),
                )
                user.email_verified_at = utcnow()
                await accounts.update_profile(
                    ctx, uow, user, schemas.ProfileUpdate(bio=bio, is_maker=maker)
                )
                await accounts.set_avatar(ctx, uow, user, _avatar(colour, name[0]))
                created += 1
        async with ctx.uow() as uow:
            viewer = await accounts_repo.user_by_handle(uow.session, "curious_cat")
            if viewer is not None:
                for handle, *_ in PEOPLE[:4]:
                    await accounts.follow(uow, viewer, handle)
        shops = await _seed_shops(ctx)
        print(
            f"demo data: {created} people and {shops} shops added; sign in as "
            f"wool.and.wood@demo.craftreel.app / {DEMO_PASSWORD}"
        )
    finally:
        await ctx.close()
