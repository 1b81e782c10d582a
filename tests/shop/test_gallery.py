"""A listing's photos: added through the JSON API and the listing form, cleaned of EXIF/GPS,
ordered, removed, limited to eight, public exactly while buyers can see the listing, and
shown in the gallery, the shop's grid, the cart and the product chip of a video."""

from __future__ import annotations

import io
import re
from typing import Any
from uuid import UUID

import httpx
from PIL import Image
from sqlalchemy import func, select

from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.media.models import MediaObject
from craftreel.shop.models import Listing
from tests.factories import Person, sign_up
from tests.posts.factories import make_post
from tests.shop.test_checkout import seller_with_listing
from tests.shop.test_payments import run_jobs
from tests.shop.test_views import BrowserFactory, api, browsers, shop_app, text_of, web_person


def picture(
    width: int = 900, height: int = 600, colour: tuple[int, int, int] = (79, 111, 88)
) -> bytes:
    """A JPEG carrying EXIF with the camera's make and a GPS position."""
    image = Image.new("RGB", (width, height), colour)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (53.0, 48.0, 0.0), 3: "W", 4: (1.0, 32.0, 0.0)}  # GPS
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def png(width: int = 500, height: int = 500) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, format="PNG")
    return out.getvalue()


async def add_photo(
    client: httpx.AsyncClient, person: Person, listing_id: str, data: bytes, name: str = "p.jpg"
) -> httpx.Response:
    return await client.post(
        f"/api/v1/listings/{listing_id}/photos",
        headers=person.auth,
        files={"photo": (name, data, "application/octet-stream")},
    )


async def media_rows(ctx: AppContext) -> int:
    async with ctx.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(MediaObject)) or 0)


def stored_folders(settings: Settings) -> set[str]:
    """The media folders in storage (``media/<id>``), to tell what a request left behind."""
    root = settings.media_dir / "media"
    return {p.name for p in root.iterdir()} if root.exists() else set()


async def public_flags(ctx: AppContext, ids: list[str]) -> list[bool]:
    async with ctx.sessions() as session:
        rows = {
            m.id: m.is_public
            for m in await session.scalars(
                select(MediaObject).where(MediaObject.id.in_([UUID(i) for i in ids]))
            )
        }
    return [rows[UUID(i)] for i in ids]


def served_image(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


async def test_photos_through_the_api_are_clean_ordered_removed_and_shown_everywhere(
    api: httpx.AsyncClient, ctx: AppContext, settings: Settings
) -> None:
    seller, mug = await seller_with_listing(api, "photopotter")
    first = await add_photo(api, seller, mug["id"], picture())
    assert first.status_code == 201, first.text
    (photo,) = first.json()["photos"]
    assert (photo["width"], photo["height"]) == (900, 600)
    assert photo["url"].endswith("/900.webp") and photo["thumb_url"].endswith("/320.webp")
    assert photo["blurhash"]
    # The listing is on sale: its photos are public, with no trace of the camera or place.
    large = served_image(await api.get(photo["url"]))
    assert (large.format, large.size) == ("WEBP", (900, 600))
    assert not large.getexif() and "exif" not in large.info
    jpeg = served_image(await api.get(photo["url"].replace(".webp", ".jpg")))
    assert jpeg.format == "JPEG" and not jpeg.getexif()
    assert b"PhoneMaker" not in (await api.get(photo["url"])).content

    second = await add_photo(api, seller, mug["id"], png(), "detail.png")
    assert second.status_code == 201, second.text
    ids = [p["id"] for p in second.json()["photos"]]
    assert ids[0] == photo["id"] and len(ids) == 2

    # Reordered: the second leads; an order that leaves one out, or names a stranger, is refused.
    for wrong in ([ids[1]], [ids[1], ids[0], ids[0]], [ids[1], str(UUID(int=7))]):
        refused = await api.put(
            f"/api/v1/listings/{mug['id']}/photos", headers=seller.auth, json={"ids": wrong}
        )
        assert refused.status_code == 400 and refused.json()["error"]["code"] == (
            "photo_order_invalid"
        )
    reordered = await api.put(
        f"/api/v1/listings/{mug['id']}/photos", headers=seller.auth, json={"ids": ids[::-1]}
    )
    assert [p["id"] for p in reordered.json()["photos"]] == ids[::-1]
    assert (await api.get(f"/api/v1/listings/{mug['id']}")).json()["photos"] == reordered.json()[
        "photos"
    ]

    # The first photo is the listing's picture in the cart and on a video's product chip.
    buyer = await sign_up(api, "photobuyer")
    await api.post(
        "/api/v1/cart/lines", headers=buyer.auth, json={"variant_id": mug["variants"][0]["id"]}
    )
    cart = (await api.get("/api/v1/cart", headers=buyer.auth)).json()
    assert cart["lines"][0]["thumb_url"] == reordered.json()["photos"][0]["thumb_url"]
    post = await make_post(api, ctx, seller, caption="Glazing the mug")
    tagged = await api.post(
        f"/api/v1/posts/{post['id']}/products",
        json={"listing_id": mug["id"], "start_s": 0},
        headers=seller.auth,
    )
    assert tagged.status_code == 201, tagged.text
    assert tagged.json()["image_url"] == reordered.json()["photos"][0]["thumb_url"]

    # Removed: off the listing at once; its files and row go with the media delete job.
    removed = await api.delete(f"/api/v1/listings/{mug['id']}/photos/{ids[0]}", headers=seller.auth)
    assert removed.status_code == 200, removed.text
    assert [p["id"] for p in removed.json()["photos"]] == [ids[1]]
    again = await api.delete(f"/api/v1/listings/{mug['id']}/photos/{ids[0]}", headers=seller.auth)
    assert again.status_code == 404 and again.json()["error"]["code"] == "listing_photo_not_found"
    assert "media.delete" in await run_jobs(ctx)
    assert ids[0] not in {str(i) for i in [m.id for m in await _all_media(ctx)]}
    assert ids[0] not in stored_folders(settings)
    assert (await api.get(photo["url"])).status_code == 404

    # Nobody else may touch them.
    rival, _ = await seller_with_listing(api, "photothief")
    assert (await add_photo(api, rival, mug["id"], png())).status_code == 404
    assert (
        await api.delete(f"/api/v1/listings/{mug['id']}/photos/{ids[1]}", headers=rival.auth)
    ).status_code == 404
    assert (
        await api.put(
            f"/api/v1/listings/{mug['id']}/photos", headers=rival.auth, json={"ids": [ids[1]]}
        )
    ).status_code == 404
    assert [p["id"] for p in (await api.get(f"/api/v1/listings/{mug['id']}")).json()["photos"]] == [
        ids[1]
    ]


async def _all_media(ctx: AppContext) -> list[MediaObject]:
    async with ctx.sessions() as session:
        return list((await session.scalars(select(MediaObject))).all())


async def test_at_most_eight_photos_and_a_bad_one_leaves_nothing_behind(
    api: httpx.AsyncClient, ctx: AppContext, settings: Settings
) -> None:
    seller, mug = await seller_with_listing(api, "eightphotos")
    for n in range(8):
        added = await add_photo(api, seller, mug["id"], png(200 + n, 200))
        assert added.status_code == 201, added.text
    rows, folders = await media_rows(ctx), stored_folders(settings)
    ninth = await add_photo(api, seller, mug["id"], png())
    assert ninth.status_code == 409 and ninth.json()["error"]["code"] == "too_many_photos"
    assert (await media_rows(ctx), stored_folders(settings)) == (rows, folders)

    other_seller, bowl = await seller_with_listing(api, "badphoto")
    before = (await api.get(f"/api/v1/listings/{bowl['id']}")).json()
    for data in (b"not a picture at all", b"", png()[:200]):
        refused = await add_photo(api, other_seller, bowl["id"], data)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "listing_photo_invalid"
    too_big = await add_photo(
        api, other_seller, bowl["id"], b"\xff" * (settings.upload_max_image_bytes + 1)
    )
    assert too_big.status_code == 413
    assert (await api.get(f"/api/v1/listings/{bowl['id']}")).json() == before
    assert (await media_rows(ctx), stored_folders(settings)) == (rows, folders)


async def test_photos_are_public_only_while_the_listing_is_for_sale(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    seller = await sign_up(api, "draftphotos")
    await api.post(
        "/api/v1/shops", headers=seller.auth, json={"name": "Drafts", "handle": "draft-photos"}
    )
    draft = (
        await api.post(
            "/api/v1/listings",
            headers=seller.auth,
            json={
                "title": "Bowl",
                "category": "pottery",
                "variants": [{"name": "One", "price_minor": 900, "stock": 1}],
            },
        )
    ).json()
    added = (await add_photo(api, seller, draft["id"], picture())).json()
    photo_id = added["photos"][0]["id"]
    # A draft's photos are the seller's alone: short-lived signed links, not public ones.
    assert added["photos"][0]["url"].startswith("/media/_s/")
    assert await public_flags(ctx, [photo_id]) == [False]
    assert (await api.get(f"/media/media/{photo_id}/r1/320.webp")).status_code == 404
    assert (await api.get(added["photos"][0]["url"])).status_code == 200

    published = await api.post(f"/api/v1/listings/{draft['id']}/publish", headers=seller.auth)
    assert published.json()["photos"][0]["url"] == f"/media/media/{photo_id}/r1/900.webp"
    assert await public_flags(ctx, [photo_id]) == [True]
    second = (await add_photo(api, seller, draft["id"], png())).json()["photos"][1]["id"]
    assert await public_flags(ctx, [photo_id, second]) == [True, True]

    await api.post(f"/api/v1/listings/{draft['id']}/archive", headers=seller.auth)
    assert await public_flags(ctx, [photo_id, second]) == [False, False]


# --- the listing form -------------------------------------------------------------------


def photo_file(data: bytes, name: str) -> tuple[str, tuple[str, bytes, str]]:
    return ("photos", (name, data, "image/jpeg"))


async def listing_row(ctx: AppContext) -> Listing:
    async with ctx.sessions() as session:
        return (await session.scalars(select(Listing))).one()


async def test_the_listing_form_adds_orders_and_removes_photos_all_or_nothing(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext, settings: Settings
) -> None:
    seller, _ = await web_person(api, browsers, "formphotos", "198.51.100.41")
    await seller.post("/sell/shop", {"name": "Form photos", "handle": "form-photos"})
    form: dict[str, Any] = {
        "title": "Striped tote",
        "category": "sewing",
        "kind": "physical",
        "variant_name": "Natural",
        "variant_price": "18",
        "variant_stock": "3",
        "action": "publish",
    }

    # One bad photo among good ones: no listing, no photo rows, no files.
    refused = await seller.post(
        "/sell/listings",
        form,
        files=[photo_file(picture(), "a.jpg"), photo_file(b"%PDF-1.4 nope", "b.jpg")],
    )
    assert refused.status_code == 400
    assert 'id="photos-error"' in refused.text, text_of(refused)
    assert await media_rows(ctx) == 0 and stored_folders(settings) == set()
    async with ctx.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Listing)) == 0

    # More than eight at once is refused before any is processed.
    crowd = [photo_file(png(100 + n, 100), f"{n}.png") for n in range(9)]
    too_many = await seller.post("/sell/listings", form, files=crowd)
    assert too_many.status_code == 409 and "up to 8 photos" in text_of(too_many)
    assert await media_rows(ctx) == 0

    made = await seller.post(
        "/sell/listings",
        form,
        files=[photo_file(picture(), "front.jpg"), photo_file(png(), "back.png")],
    )
    assert made.status_code == 303, made.text
    listing = await listing_row(ctx)
    front, back = listing.photo_media_ids
    assert await public_flags(ctx, [front, back]) == [True, True]

    # Buyers see a gallery of both, in order, and the first photo in the shop's grid.
    page = await api.get(f"/listings/{listing.id}")
    assert page.text.count("data-gallery-slide") == 2
    assert page.text.count("data-gallery-dot=") == 2
    assert page.text.index(f"/media/media/{front}/") < page.text.index(f"/media/media/{back}/")
    assert "listing-art" not in page.text.split('class="listing-summary"')[0]
    shop_page = await api.get("/shop/form-photos")
    assert f'src="/media/media/{front}/r1/320.webp"' in shop_page.text

    # The edit form: the back photo first, the front one removed, a new one added after.
    edit = await seller.get(f"/sell/listings/{listing.id}/edit")
    assert edit.text.count("data-photo-tile") == 2
    variant_id = re.search(r'name="variant_id" value="([^"]+)"', edit.text)
    assert variant_id
    changes = {
        **form,
        "variant_id": variant_id.group(1),
        "variant_stock_was": "3",
        "photo_id": [back, front],
        "photo_remove": [front],
    }
    changes.pop("action")
    saved = await seller.post(
        f"/sell/listings/{listing.id}", changes, files=[photo_file(picture(640, 640), "c.jpg")]
    )
    assert saved.status_code == 303, saved.text
    listing = await listing_row(ctx)
    assert listing.photo_media_ids[0] == back and len(listing.photo_media_ids) == 2
    added = listing.photo_media_ids[1]
    assert front not in listing.photo_media_ids
    await run_jobs(ctx)
    assert front not in stored_folders(settings)

    # A failed edit changes nothing: not the text, not the photos, and leaves no files.
    folders = stored_folders(settings)
    failed = await seller.post(
        f"/sell/listings/{listing.id}",
        {**changes, "title": "Renamed", "photo_id": [added, back], "photo_remove": []},
        files=[photo_file(b"GIF89a broken", "d.gif")],
    )
    assert failed.status_code == 400
    listing = await listing_row(ctx)
    assert (listing.title, listing.photo_media_ids) == ("Striped tote", [back, added])
    assert stored_folders(settings) == folders


# --- the app bar's cart count -----------------------------------------------------------


async def test_the_cart_count_shows_in_the_app_bar_on_every_page(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    _, mug = await seller_with_listing(api, "countpotter")
    buyer, person = await web_person(api, browsers, "countbuyer", "198.51.100.42")
    empty = await buyer.get("/shop/countpotter-studio")
    assert 'aria-label="Cart"' in empty.text and "badge-dot" not in empty.text
    await api.post(
        "/api/v1/cart/lines",
        headers=person.auth,
        json={"variant_id": mug["variants"][0]["id"], "quantity": 3},
    )
    for path in ("/shop/countpotter-studio", f"/listings/{mug['id']}", "/orders", "/@countpotter"):
        shown = await buyer.get(path)
        assert shown.status_code == 200, (path, shown.status_code)
        assert 'aria-label="Cart, 3 items"' in shown.text, path
    # A page that puts its own actions in the app bar still renders (without the cart).
    own_profile = await buyer.get("/@countbuyer")
    assert own_profile.status_code == 200 and 'href="/settings"' in own_profile.text
    # Signed out: no cart, no count.
    visitor = browsers("198.51.100.43")
    assert "appbar-cart" not in (await visitor.get("/shop/countpotter-studio")).text


__all__ = ["api", "browsers", "shop_app"]  # fixtures, imported for these tests
