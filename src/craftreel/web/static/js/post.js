// The post page (/p/{id}): Craftreel's player in place of the browser's own, muted autoplay
// with a "Tap for sound" button, and the steps list seeking the video.

import { mountPlayer } from "/static/js/player.js";
import { showLocalTimes, showPendingToast } from "/static/js/composer.js";
import { showToast } from "/static/js/app.js";
import { formatPrice, mountProductChips, setCartCount } from "/static/js/products.js";

function start() {
  const page = document.querySelector("[data-post-page]");
  if (!page) return;
  const holder = page.querySelector("[data-post-player]");
  const unmute = page.querySelector("[data-post-unmute]");
  let media = null;
  try {
    media = JSON.parse(document.getElementById("post-media")?.textContent ?? "null");
  } catch {
    media = null;
  }

  let video = holder?.querySelector("video") ?? null;
  if (holder && media?.playback_url) {
    const player = mountPlayer(holder, media, {
      refresh: async () => {
        const response = await fetch(`/api/v1/media/${encodeURIComponent(media.id)}`, {
          credentials: "same-origin",
        });
        return response.ok ? response.json() : null;
      },
    });
    video = player.video;
    video.loop = true;
  }

  if (video && unmute) {
    const show = () => {
      unmute.hidden = !video.muted;
    };
    video.addEventListener("volumechange", show);
    video.addEventListener("playing", show, { once: true });
    unmute.addEventListener("click", () => {
      video.muted = false;
      if (video.volume === 0) video.volume = 1;
      if (video.paused) video.play().catch(() => {});
      unmute.hidden = true;
    });
  }

  let products = [];
  try {
    products = JSON.parse(document.getElementById("post-products")?.textContent ?? "[]");
  } catch {
    products = [];
  }
  mountProductChips(video, page.querySelector("[data-post-products]"), page.dataset.postId, products);
  mountKit(page);

  page.querySelector("[data-post-chapters]")?.addEventListener("click", (event) => {
    const step = event.target.closest("[data-seek]");
    if (!step || !video) return;
    video.currentTime = Number(step.dataset.seek);
    video.play().catch(() => {});
    page.querySelectorAll("[data-seek][aria-current]").forEach((el) => el.removeAttribute("aria-current"));
    step.setAttribute("aria-current", "step");
    holder?.scrollIntoView({ block: "nearest", behavior: "smooth" });
  });
}

/** "Get the kit": every available item into the cart at once, without leaving the video. */
function mountKit(page) {
  page.querySelectorAll("[data-price]").forEach((el) => {
    el.textContent = formatPrice(Number(el.dataset.price), el.dataset.currency);
  });
  const button = page.querySelector("[data-kit-add]");
  button?.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const response = await fetch(`/api/v1/posts/${encodeURIComponent(button.dataset.postId)}/kit/cart`, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          Accept: "application/json",
          "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]')?.content ?? "",
        },
      });
      if (response.status === 401) {
        location.href = `/signin?next=${encodeURIComponent(location.pathname)}`;
        return;
      }
      const body = await response.json().catch(() => null);
      if (!response.ok || !body) {
        showToast(body?.error?.message ?? "The kit could not be added. Try again.", "error");
        return;
      }
      const added = body.added.length;
      const skipped = body.skipped.length;
      const message =
        added === 0
          ? "Everything in this kit is sold out right now."
          : `${added} item${added === 1 ? "" : "s"} added to your cart` +
            (skipped ? `; ${skipped} sold out.` : ".");
      showToast(message, added ? "success" : "info");
      const count = body.cart.lines.reduce((n, line) => n + line.quantity, 0);
      setCartCount(count);
    } catch {
      showToast("You seem to be offline. Try again in a moment.", "error");
    } finally {
      button.disabled = false;
    }
  });
}

showPendingToast();
showLocalTimes();
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start, { once: true });
} else {
  start();
}
