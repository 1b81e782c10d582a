"""Buying and selling on a phone, in Chromium at 390×844, against a real server.

A maker opens a shop, lists a mug with two glazes and two photos, and adds an Express
delivery method to the shop's shipping profile → a buyer opens the shop (the first photo in
its grid) and the listing (a gallery that swipes, with dots and arrow keys), adds it to the
cart (htmx, a toast; the cart shows the photo), checks out with Express delivery (htmx
recomputes the totals): a declined test card first, then 4242 4242 4242 4242 → the
confirmation page waits for the provider's webhook and shows the order paid, sent by Express
→ the maker (another browser) marks it shipped → the test marks it delivered through the
API → the buyer reviews it with stars, words and a photo → the maker replies. A second test
pays with the card that asks for a confirm step.
Each step is saved to tests/e2e/screenshots/shop-*.png, some of them in dark mode too.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import PHONE, Server

pytestmark = pytest.mark.e2e

PAID_TIMEOUT_MS = 30_000
ORDER_URL = re.compile(r"/orders/([0-9a-f-]{36})$")


def _snap(page: Page, folder: Path, step: str, *, at: Locator | None = None) -> None:
    """Save what the phone shows now — scrolled to ``at``'s top when given (the app bar's
    height is left for it); nothing may stick out sideways at 390 px."""
    if at is not None:
        at.evaluate("el => el.scrollIntoView({block: 'start', behavior: 'instant'})")
    page.screenshot(path=str(folder / f"shop-{step}.png"), animations="disabled")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"{step}: page is {width}px wide"


def _sign_up(server: Server, handle: str, name: str, address: str) -> str:
    """An account made through the JSON API (from an address of its own, since sign-ups are
    limited per address); its email."""
    email = f"{handle}@example.org"
    with httpx.Client(base_url=server.base_url, headers={"X-Forwarded-For": address}) as api:
        signup = api.post(
            "/api/v1/auth/signup",
            json={"email": email, "handle": handle, "password": PASSWORD, "display_name": name},
        )
        assert signup.status_code == 201, signup.text
    return email


def _api_token(server: Server, email: str) -> str:
    with httpx.Client(base_url=server.base_url) as api:
        tokens = api.post("/api/v1/auth/signin", json={"email": email, "password": PASSWORD})
        assert tokens.status_code == 200, tokens.text
        return str(tokens.json()["access_token"])


def _signed_in(
    browser: Browser, server: Server, email: str, start: str, **options: Any
) -> tuple[BrowserContext, Page]:
    """A phone signed in through the /signin form, landing on ``start``."""
    context = browser.new_context(**PHONE, base_url=server.base_url, **options)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"/signin?next={start}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{server.base_url}{start}")
    return context, page


def _mug_photo() -> bytes:
    """A 1200×900 JPEG of a mug on a table."""
    image = Image.new("RGB", (1200, 900), (233, 220, 201))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 620, 1200, 900), fill=(150, 108, 76))
    draw.rounded_rectangle((420, 260, 760, 700), radius=60, fill=(58, 92, 120))
    draw.ellipse((730, 360, 880, 560), outline=(58, 92, 120), width=34)
    for x, y in ((480, 330), (600, 420), (700, 520), (520, 600), (650, 300)):
        draw.ellipse((x, y, x + 14, y + 14), fill=(230, 230, 220))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)
    return out.getvalue()


def _mug_from_above() -> bytes:
    """A 900×1200 JPEG: the same mug seen from above, on a linen cloth."""
    image = Image.new("RGB", (900, 1200), (214, 204, 186))
    draw = ImageDraw.Draw(image)
    for y in range(0, 1200, 40):
        draw.line((0, y, 900, y), fill=(200, 190, 171), width=3)
    draw.ellipse((200, 350, 700, 850), fill=(58, 92, 120))
    draw.ellipse((250, 400, 650, 800), fill=(120, 78, 52))
    draw.rounded_rectangle((680, 540, 800, 660), radius=40, outline=(58, 92, 120), width=30)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)
    return out.getvalue()


@pytest.fixture(scope="module")
def people(server: Server) -> dict[str, str]:
    """The maker and the buyers, each with an account; their emails by role."""
    return {
        "maker": _sign_up(server, "ember_ada", "Ada Ember", "203.0.113.101"),
        "buyer": _sign_up(server, "juniper_reads", "Juniper Hale", "203.0.113.102"),
        "careful": _sign_up(server, "careful_cam", "Cam Oduya", "203.0.113.103"),
    }


@pytest.fixture(scope="module")
def maker_phone(server: Server, browser: Browser, people: dict[str, str]) -> Iterator[Page]:
    context, page = _signed_in(browser, server, people["maker"], "/sell")
    try:
        yield page
    finally:
        context.close()


def test_a_maker_lists_a_mug_a_buyer_pays_the_maker_ships_the_buyer_reviews(
    server: Server,
    browser: Browser,
    screenshots: Path,
    people: dict[str, str],
    maker_phone: Page,
) -> None:
    base = server.base_url

    # The maker opens a shop from /sell.
    maker = maker_phone
    expect(maker.get_by_role("heading", name="Open your shop")).to_be_visible()
    maker.get_by_label("Shop name").fill("Ash & Ember Pottery")
    maker.get_by_label("Shop address").fill("ash-and-ember")
    maker.get_by_label("In your country").fill("3.95")
    maker.get_by_label("Everywhere else").fill("12")
    maker.get_by_label("Free shipping on orders over (optional)").fill("60")
    maker.get_by_label("Shipping policy").fill("Wrapped in recycled paper, sent within 3 days.")
    maker.get_by_label("Returns policy").fill("Returns within 30 days, unused.")
    _snap(maker, screenshots, "01-open-shop")
    maker.get_by_role("button", name="Open my shop").click()
    expect(maker.get_by_text("Your shop is open. Add your first listing.")).to_be_visible()
    expect(maker.get_by_role("heading", name="Ash & Ember Pottery")).to_be_visible()
    _snap(maker, screenshots, "02-new-shop-dashboard")

    # …and lists a mug in two glazes.
    maker.get_by_role("link", name="New listing").first.click()
    expect(maker.get_by_role("heading", name="New listing")).to_be_visible()
    maker.get_by_label("Title").fill("Speckled stoneware mug")
    maker.get_by_label("Category").select_option("pottery")
    maker.get_by_label("Option", exact=True).fill("Sea blue")
    maker.get_by_label("Price", exact=True).fill("24")
    maker.get_by_label("Stock", exact=True).fill("4")
    maker.get_by_label("Option 2", exact=True).fill("Oat white")
    maker.get_by_label("Price of option 2").fill("22.50")
    maker.get_by_label("Stock of option 2").fill("1")
    maker.get_by_label("Description").fill(
        "Wheel-thrown stoneware with iron speckles, glazed by hand.\nHolds 350 ml."
    )
    # Two photos, chosen at once; the form names them.
    maker.get_by_label("Add photos").set_input_files(
        [
            {"name": "mug-side.jpg", "mimeType": "image/jpeg", "buffer": _mug_photo()},
            {"name": "mug-top.jpg", "mimeType": "image/jpeg", "buffer": _mug_from_above()},
        ]
    )
    expect(maker.get_by_text("2 photos to add: mug-side.jpg, mug-top.jpg")).to_be_visible()
    _snap(maker, screenshots, "03-listing-form")
    _snap(
        maker, screenshots, "03a-listing-form-photos", at=maker.locator("fieldset.listing-photos")
    )
    _snap(maker, screenshots, "03b-listing-form-options", at=maker.locator("fieldset.variants"))
    maker.get_by_role("button", name="Publish").click()
    expect(maker.get_by_text("“Speckled stoneware mug” is live in your shop.")).to_be_visible()
    seller_row = maker.locator(".seller-listing", has_text="Speckled stoneware mug")
    expect(seller_row).to_be_visible()
    expect(seller_row.locator("img.seller-listing-thumb")).to_be_visible()
    _snap(maker, screenshots, "04-dashboard-with-listing", at=maker.locator("#listings"))
    # The edit form shows the two photos in order, to move or remove.
    seller_row.get_by_role("link", name=re.compile("Edit")).click()
    tiles = maker.locator("[data-photo-tile]")
    expect(tiles).to_have_count(2)
    expect(maker.get_by_role("button", name="Move photo 1 earlier")).to_be_disabled()
    _snap(
        maker, screenshots, "04b-edit-listing-photos", at=maker.locator("fieldset.listing-photos")
    )
    maker.goto("/sell")

    # The shop's shipping profile (made from the rates above) gets an estimate and an
    # Express method, for the UK only.
    shipping = maker.locator("#shipping")
    expect(shipping).to_contain_text("United Kingdom £3.95, everywhere else £12.00")
    shipping.get_by_role("link", name="Edit Default").click()
    expect(maker.get_by_role("heading", name="Edit shipping profile")).to_be_visible()
    maker.locator("#m0-min").fill("2")
    maker.locator("#m0-max").fill("4")
    maker.locator("#m1-name").fill("Express")
    maker.locator("#m1-min").fill("1")
    maker.locator("#m1-max").fill("1")
    maker.locator("#m1-region-0").select_option("GB")
    maker.locator("#m1-rate-0").fill("8.50")
    _snap(maker, screenshots, "04c-shipping-express", at=maker.locator("#method-1"))
    maker.get_by_role("button", name="Save profile").click()
    expect(maker.get_by_text("“Default” is saved.")).to_be_visible()
    expect(maker.locator("#shipping")).to_contain_text("Express · 1 day")
    _snap(maker, screenshots, "04d-dashboard-shipping", at=maker.locator("#shipping"))

    # A buyer finds the shop and the listing.
    buyer_context, buyer = _signed_in(browser, server, people["buyer"], "/shop/ash-and-ember")
    expect(buyer.get_by_role("heading", name="Ash & Ember Pottery")).to_be_visible()
    card_photo = buyer.locator(".listing-card img.listing-card-img").first
    expect(card_photo).to_be_visible()
    assert card_photo.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    _snap(buyer, screenshots, "05-shop-page")
    buyer.get_by_role("link", name=re.compile("Speckled stoneware mug")).click()
    expect(buyer.get_by_role("heading", name="Speckled stoneware mug")).to_be_visible()
    expect(buyer.get_by_text("From £22.50")).to_be_visible()
    expect(buyer.get_by_text("Only 1 left")).to_be_visible()

    # The gallery: both photos, the first showing; the arrow keys and the dots move it.
    gallery = buyer.get_by_role("region", name=re.compile("^Photos of Speckled stoneware mug"))
    expect(gallery.locator("img")).to_have_count(2)
    first_photo = gallery.locator("img").first
    assert first_photo.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    counter = buyer.locator("[data-gallery-count]")
    expect(counter).to_have_text("1 / 2")
    expect(buyer.get_by_role("button", name="Show photo 1")).to_have_attribute(
        "aria-current", "true"
    )
    _snap(buyer, screenshots, "06-listing")
    gallery.focus()
    buyer.keyboard.press("ArrowRight")
    expect(counter).to_have_text("2 / 2")
    expect(buyer.get_by_role("button", name="Show photo 2")).to_have_attribute(
        "aria-current", "true"
    )
    second_photo = gallery.locator("img").nth(1)
    assert second_photo.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    expect(second_photo).to_be_in_viewport(ratio=0.9)
    _snap(buyer, screenshots, "06a-listing-second-photo")
    buyer.get_by_role("button", name="Show photo 1").click()
    expect(counter).to_have_text("1 / 2")
    expect(first_photo).to_be_in_viewport(ratio=0.9)
    listing_url = buyer.url

    # Adds the blue one, twice, without leaving the page: a toast, and the cart counts 2.
    buyer.get_by_label(re.compile("Sea blue")).check()
    buyer.get_by_label("Quantity").fill("2")
    buyer.get_by_role("button", name="Add to cart").click()
    expect(buyer.get_by_text("Added to your cart.")).to_be_visible()
    expect(buyer.get_by_role("link", name="Cart, 2 items")).to_be_visible()
    assert buyer.url == listing_url
    _snap(buyer, screenshots, "07-added-to-cart")

    # Every page now shows the count, not just the one the item was added on.
    buyer.goto("/orders")
    expect(buyer.get_by_role("link", name="Cart, 2 items")).to_be_visible()
    buyer.get_by_role("link", name="Cart, 2 items").click()
    expect(buyer.get_by_role("heading", name="Your cart")).to_be_visible()
    expect(buyer.get_by_text("£48.00").first).to_be_visible()
    expect(buyer.locator(".cart-line-thumb img")).to_be_visible()
    _snap(buyer, screenshots, "08-cart")

    # Checkout: the address, then the totals for the shop, then a card that is declined.
    buyer.get_by_role("link", name="Check out").click()
    expect(buyer.get_by_role("heading", name="Checkout")).to_be_visible()
    buyer.get_by_label("Full name").fill("Juniper Hale")
    buyer.get_by_label(re.compile(r"^Address")).fill("12 Kiln Row")
    buyer.get_by_label("Town or city").fill("Stoke-on-Trent")
    buyer.get_by_label("Postcode").fill("ST1 4AB")
    # Standard is picked (the cheapest); Express costs more, and the totals follow the choice.
    standard = buyer.get_by_role("radio", name=re.compile("^Standard"))
    express = buyer.get_by_role("radio", name=re.compile("^Express"))
    expect(standard).to_be_checked()
    expect(buyer.locator("#checkout-totals")).to_contain_text(re.compile(r"Total\s*£62\.34"))
    express.check()
    expect(buyer.get_by_role("button", name="Pay £67.80")).to_be_visible()
    expect(buyer.locator("#checkout-totals")).to_contain_text(re.compile(r"Delivery\s*£8\.50"))
    expect(buyer.get_by_role("radio", name=re.compile("^Express"))).to_be_checked()
    _snap(buyer, screenshots, "09a-checkout-delivery", at=buyer.locator("#checkout-totals"))
    buyer.get_by_text("Test cards: no real money moves").click()
    buyer.get_by_role("button", name="Use 4000 0000 0000 0002").click()
    expect(buyer.get_by_label("Card number")).to_have_value("4000 0000 0000 0002")
    _snap(buyer, screenshots, "09-checkout-address", at=buyer.locator("main"))
    _snap(buyer, screenshots, "09b-checkout-totals", at=buyer.locator("#checkout-totals"))
    _snap(buyer, screenshots, "09c-checkout-card", at=buyer.locator("label[for=field-card_number]"))
    buyer.get_by_role("button", name="Pay £67.80").click()

    expect(buyer.get_by_text("Payment failed.")).to_be_visible()
    expect(buyer.get_by_text("Your card was declined. Nothing was charged")).to_be_visible()
    _snap(buyer, screenshots, "10-card-declined")

    # The right card pays; the confirmation waits for the provider's webhook, then shows it.
    buyer.get_by_text("Test cards: no real money moves").click()
    buyer.get_by_role("button", name="Use 4242 4242 4242 4242").click()
    buyer.get_by_role("button", name="Pay £67.80").click()
    expect(buyer).to_have_url(ORDER_URL)
    expect(buyer.get_by_text("Thank you! Your order is placed.")).to_be_visible()
    found = ORDER_URL.search(buyer.url)
    assert found
    order_id = found.group(1)
    current = buyer.locator(".timeline-step.is-current")
    expect(current).to_contain_text("Paid", timeout=PAID_TIMEOUT_MS)
    expect(buyer.get_by_text("Confirming your payment")).to_have_count(0)
    expect(buyer.locator(".delivery-chosen")).to_contain_text("Express · 1 day")
    _snap(buyer, screenshots, "11-order-paid")
    _snap(buyer, screenshots, "11b-order-paid-items", at=buyer.locator("#items-title"))
    _snap(buyer, screenshots, "11c-order-delivery", at=buyer.locator("#address-title"))

    # The maker ships it from the dashboard.
    maker.goto("/sell")
    expect(maker.locator("#to-ship")).to_contain_text(order_id.replace("-", "")[-8:].upper())
    _snap(maker, screenshots, "12-dashboard-to-ship")
    maker.locator("#to-ship").get_by_role("link").first.click()
    expect(maker.get_by_role("heading", name="Ship this order")).to_be_visible()
    expect(maker.get_by_text("by Express (1 day), as the buyer chose")).to_be_visible()
    maker.get_by_label("Carrier").fill("Royal Mail")
    maker.get_by_label("Tracking number").fill("RM482913577GB")
    _snap(maker, screenshots, "13-ship-form")
    maker.get_by_role("button", name="Mark as shipped").click()
    expect(
        maker.get_by_text("Marked as shipped. The buyer has been emailed the tracking number.")
    ).to_be_visible()
    expect(maker.locator(".timeline-step.is-current")).to_contain_text("Shipped")
    _snap(maker, screenshots, "14-shipped")

    # The parcel arrives (the test says so through the API, as the carrier's app would).
    with httpx.Client(base_url=base) as api:
        token = _api_token(server, people["buyer"])
        delivered = api.post(
            f"/api/v1/orders/{order_id}/delivered", headers={"Authorization": f"Bearer {token}"}
        )
        assert delivered.status_code == 200, delivered.text

    # The buyer reviews it: five stars, a few words, a photo.
    buyer.reload()
    expect(buyer.locator(".timeline-step.is-current")).to_contain_text("Delivered")
    expect(buyer.get_by_text("RM482913577GB")).to_be_visible()
    buyer.locator("label.star-choice", has_text="5 stars").click()
    buyer.get_by_label("Your review").fill("Heavier than it looks, glaze is gorgeous in daylight.")
    buyer.get_by_label("A photo (optional)").set_input_files(
        {"name": "mug.jpg", "mimeType": "image/jpeg", "buffer": _mug_photo()}
    )
    _snap(buyer, screenshots, "15-review-form", at=buyer.locator(".review-form"))
    buyer.get_by_role("button", name="Post review").click()
    expect(buyer.get_by_text("Thank you for your review!")).to_be_visible()
    review = buyer.locator(".review", has_text="glaze is gorgeous")
    expect(review).to_be_visible()
    photo = review.locator("img.review-photo")
    expect(photo).to_be_visible()
    photo.scroll_into_view_if_needed()
    # decode() settles once the (lazy) picture has loaded: it is a real, readable image.
    assert photo.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    _snap(buyer, screenshots, "16-reviewed", at=review)

    # The maker replies from the dashboard.
    maker.goto("/sell#reviews")
    maker.get_by_label("Reply to Juniper Hale").fill("Thank you, Juniper! Enjoy your tea.")
    _snap(maker, screenshots, "17-reply-form", at=maker.locator("#reviews"))
    maker.get_by_role("button", name="Post reply").click()
    expect(maker.get_by_text("Your reply is posted.")).to_be_visible()
    expect(maker.get_by_text("Thank you, Juniper! Enjoy your tea.")).to_be_visible()

    # Everyone sees the review, the photo and the reply on the listing.
    buyer.goto(listing_url)
    expect(buyer.locator(".review-reply")).to_contain_text("Thank you, Juniper! Enjoy your tea.")
    expect(buyer.get_by_text("5.0").first).to_be_visible()
    _snap(buyer, screenshots, "18-listing-with-review", at=buyer.locator("#reviews-title"))

    # And, happy with it, the buyer completes the order.
    buyer.goto(f"/orders/{order_id}")
    buyer.get_by_role("button", name="All good: complete the order").click()
    expect(buyer.get_by_text("Order completed. Thank you!")).to_be_visible()
    expect(buyer.locator(".timeline-step.is-current")).to_contain_text("Completed")
    _snap(buyer, screenshots, "18b-order-completed")
    buyer_context.close()

    # The same pages in dark mode.
    dark_context, dark = _signed_in(
        browser, server, people["buyer"], "/orders", color_scheme="dark"
    )
    _snap(dark, screenshots, "19-dark-orders")
    dark.goto(listing_url)
    _snap(dark, screenshots, "20-dark-listing")
    _snap(dark, screenshots, "20b-dark-listing-reviews", at=dark.locator("#reviews-title"))
    dark.goto(f"/orders/{order_id}")
    _snap(dark, screenshots, "21-dark-order")
    maker_dark = dark_context.new_page()
    maker_dark.goto("/shop/ash-and-ember")
    _snap(maker_dark, screenshots, "22-dark-shop")
    dark_context.close()


def test_a_card_that_asks_to_confirm_shows_the_step_and_pays_once_confirmed(
    server: Server,
    browser: Browser,
    screenshots: Path,
    people: dict[str, str],
    maker_phone: Page,
) -> None:
    context, page = _signed_in(
        browser, server, people["careful"], "/shop/ash-and-ember", color_scheme="dark"
    )
    page.get_by_role("link", name=re.compile("Speckled stoneware mug")).click()
    page.get_by_label(re.compile("Oat white")).check()
    page.get_by_role("button", name="Add to cart").click()
    expect(page.get_by_text("Added to your cart.")).to_be_visible()
    page.goto("/checkout")
    page.get_by_label("Full name").fill("Cam Oduya")
    page.get_by_label(re.compile(r"^Address")).fill("3 Rue des Potiers")
    page.get_by_label("Town or city").fill("Lyon")
    page.get_by_label("Postcode").fill("69001")
    page.get_by_label("Country").select_option("FR")
    # France: the rest-of-world rate and the French tax rate, swapped in by htmx.
    expect(page.locator("#checkout-totals")).to_contain_text("£12.00")
    expect(page.get_by_role("button", name="Pay £41.40")).to_be_visible()
    page.get_by_label("Card number").fill("4000 0000 0000 3220")
    _snap(page, screenshots, "23-dark-checkout-abroad", at=page.locator("#checkout-totals"))
    page.get_by_role("button", name="Pay £41.40").click()

    expect(page.get_by_role("heading", name="Confirm this payment")).to_be_visible()
    _snap(page, screenshots, "24-dark-confirm-step")
    page.get_by_role("button", name="Confirm payment").click()
    expect(page).to_have_url(ORDER_URL)
    expect(page.get_by_text("Payment confirmed. Thank you! Your order is placed.")).to_be_visible()
    expect(page.locator(".timeline-step.is-current")).to_contain_text(
        "Paid", timeout=PAID_TIMEOUT_MS
    )
    _snap(page, screenshots, "25-dark-paid-after-confirm")

    # Cam changes their mind before it ships: a sheet asks first, then the refund is shown.
    page.get_by_role("button", name="Cancel this order").click()
    sheet = page.get_by_role("dialog", name="Cancel this order?")
    expect(sheet).to_be_visible()
    _snap(page, screenshots, "26-dark-cancel-sheet")
    sheet.get_by_role("button", name="Keep my order").click()
    expect(sheet).to_be_hidden()
    page.get_by_role("button", name="Cancel this order").click()
    page.get_by_role("button", name="Cancel and refund £41.40").click()
    expect(page.get_by_text("Order cancelled. £41.40 is refunded to your card.")).to_be_visible()
    expect(page.locator(".notice-box", has_text="Cancelled.")).to_contain_text(
        "£41.40 is refunded to your card."
    )
    expect(page.get_by_role("button", name="Cancel this order")).to_have_count(0)
    _snap(page, screenshots, "27-dark-cancelled-refunded")
    context.close()
