"""Demo data for ``make run``: a handful of makers and viewers who follow each other."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import tempfile
from pathlib import Path

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
    from craftreel.shop import shipping

    # Each shop's default profile: an estimate, and an express option for buyers to pick.
    small_parcel = shop_schemas.ShippingProfileIn(
        name="Small parcel",
        methods=[
            shop_schemas.ShippingMethodIn(
                name="Standard",
                min_days=3,
                max_days=5,
                rates={"GB": 395, "*": 1200},
                free_over=5000,
            ),
            shop_schemas.ShippingMethodIn(
                name="Express", min_days=1, max_days=2, rates={"GB": 850, "IE": 1500}
            ),
        ],
    )
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
            (default,) = await shipping.my_profiles(uow, owner)
            await shipping.update_profile(uow, owner, default.id, small_parcel)
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


# (maker, ffmpeg lavfi picture, caption, chapters, materials, listing to tag on chapter 2)
DemoPost = tuple[str, str, str, list[tuple[float, str]], list[str], str | None]
POSTS: list[DemoPost] = [
    (
        "wool_and_wood",
        "gradients=s=540x960:c0=0xb5523b:c1=0xf2e8cf:c2=0x2f6690:speed=0.04:r=24",
        "Casting on a Lopi yoke, the long-tail way. #knitting #lopi #wip",
        [(0, "Cast on"), (3, "Join in the round"), (6, "First rib row")],
        ["Léttlopi wool, 4 colours", "4.5 mm circular needles", "Stitch markers"],
        "Lopi sweater pattern (PDF)",
    ),
    (
        "kiln_kid",
        "mandelbrot=s=540x960:r=24",
        "Trimming a mug foot. Slow and steady wins. #pottery #wheelthrown",
        [(0, "Centre the mug"), (4, "Trim the foot ring")],
        ["Stoneware clay", "Loop trimming tool", "Sponge"],
        "Speckled stoneware mug",
    ),
    (
        "paper_fox",
        "life=s=540x960:mold=10:r=24:ratio=0.1:death_color=#c99a2e:life_color=#f7f1e3",
        "Marbling paper with a drop of ox gall. Every sheet is different. #marbling #paper",
        [(0, "Float the colours"), (5, "Lay the sheet")],
        ["Carrageenan size", "Acrylic inks", "Ox gall"],
        None,
    ),
    (
        "stitch_witch",
        "cellauto=s=540x960:rule=110:r=24",
        "Visible mending: a sashiko patch on old jeans. @wool_and_wood taught me this. "
        "#mending #sashiko",
        [(0, "Pin the patch"), (4, "Running stitch")],
        ["Sashiko thread", "Sashiko needle", "Denim scrap"],
        None,
    ),
    (
        "oakandiron",
        "gradients=s=540x960:c0=0x7a5230:c1=0xe0c097:speed=0.02:r=24",
        "Sanding a walnut board to 400 grit, then oil. #woodwork #walnut",
        [(0, "120 grit"), (3, "240 grit"), (6, "Oil")],
        ["Walnut offcut", "Sandpaper 120/240/400", "Hard wax oil"],
        None,
    ),
    (
        "wool_and_wood",
        "gradients=s=540x960:c0=0x3d6b5a:c1=0xf2e8cf:speed=0.05:r=24",
        "Carving a birch spoon from a green log. #spooncarving #woodwork",
        [(0, "Split the blank"), (4, "Hollow the bowl")],
        ["Green birch", "Sloyd knife", "Hook knife"],
        "Birch eating spoon",
    ),
]


def _demo_clip(ffmpeg: str, picture: str, out: Path, seconds: int = 8) -> None:
    """A short vertical clip with a tone, synthesised (nothing downloaded)."""
    subprocess.run(  # noqa: S603 - fixed arguments, our own ffmpeg
        [
            ffmpeg, "-hide_banner", "-v", "error", "-y",
            "-f", "lavfi", "-i", picture,
            "-f", "lavfi", "-i", f"sine=frequency={220 + len(picture) % 200}:sample_rate=44100",
            "-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast",
            "-c:a", "aac", "-shortest", str(out),
        ],
        check=True,
    )  # fmt: skip


async def _seed_posts(ctx: AppContext) -> int:
    """A published video post per demo post above, processed by the real pipeline, with
    chapters, materials and a product tag; skipped when there are posts already."""
    from sqlalchemy import func, select

    from craftreel.core.jobs import InProcessRunner
    from craftreel.media import uploads
    from craftreel.media.models import MediaKind
    from craftreel.media.processing import ffmpeg_path
    from craftreel.posts import schemas as post_schemas
    from craftreel.posts import service as posts
    from craftreel.posts.models import Post
    from craftreel.runtime import register_job_handlers
    from craftreel.shop import tags
    from craftreel.shop.models import Listing

    register_job_handlers(ctx)
    ffmpeg = ffmpeg_path(ctx.settings.ffmpeg_path)
    made = 0
    async with ctx.uow() as uow:
        if await uow.session.scalar(select(func.count()).select_from(Post)):
            return 0  # seeded before
    with tempfile.TemporaryDirectory() as folder:
        for n, (handle, picture, caption, chapters, materials, tag) in enumerate(POSTS):
            async with ctx.uow() as uow:
                owner = await accounts_repo.user_by_handle(uow.session, handle)
            if owner is None:
                continue
            clip = Path(folder) / f"demo-{n}.mp4"
            await asyncio.to_thread(_demo_clip, ffmpeg, picture, clip)
            media_id = await uploads.import_file(ctx, owner.id, clip, MediaKind.VIDEO, "video/mp4")
            async with ctx.uow() as uow:
                post = await posts.create_draft(
                    ctx,
                    uow,
                    owner,
                    post_schemas.PostCreate(
                        media_ids=[media_id],
                        caption=caption,
                        chapters=[post_schemas.Chapter(at=at, title=t) for at, t in chapters],
                        materials=materials,
                    ),
                )
                await posts.publish(ctx, uow, owner, post.id, post_schemas.Publish(when_ready=True))
                listing = (
                    await uow.session.scalars(select(Listing).where(Listing.title == tag))
                ).first()
                if listing is not None:
                    await tags.add_tag(
                        ctx,
                        uow,
                        owner,
                        post.id,
                        tags.TagIn(listing_id=listing.id, chapter_index=1),
                    )
            made += 1
    if made:
        runner = InProcessRunner(ctx.jobs, concurrency=2, sweep_seconds=0.5)
        runner.start()
        try:
            await runner.drain()
        finally:
            await runner.stop()
    return made


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
        made = await _seed_posts(ctx)
        print(
            f"demo data: {created} people, {shops} shops and {made} posts added; sign in as "
            f"wool.and.wood@demo.craftreel.app / {DEMO_PASSWORD}"
        )
    finally:
        await ctx.close()
