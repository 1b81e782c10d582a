// The post page (/p/{id}): Craftreel's player in place of the browser's own, muted autoplay
// with a "Tap for sound" button, and the steps list seeking the video. Like, comment, save
// and share work as in the feed (interactions.js, with the feed's sheets); a double tap on
// the video likes it, and the view beacon counts a view after 3 s of playback.

import { mountPlayer } from "/static/js/player.js";
import { showLocalTimes, showPendingToast } from "/static/js/composer.js";
import { showToast } from "/static/js/app.js";
import {
  api,
  CommentsSheet,
  heartBurst,
  LIKE,
  PressToggle,
  SAVE,
  ShareSheet,
  ViewBeacon,
} from "/static/js/interactions.js";
import { formatPrice, mountProductChips, setCartCount } from "/static/js/products.js";

const DOUBLE_TAP_MS = 280;

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
  if (page.dataset.published === "true") {
    const like = mountActions(page);
    if (video) {
      mountDoubleTap(page, holder, video, like);
      mountViews(page, video, media);
    }
  }

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

/** Like, comment, save and share: the buttons under the author. Returns the like toggle. */
function mountActions(page) {
  const signedIn = page.dataset.signedIn === "true";
  const like = new PressToggle(page, LIKE, { signedIn });
  const save = new PressToggle(page, SAVE, { signedIn });
  const comments = new CommentsSheet({ signedIn });
  const share = new ShareSheet();
  page.querySelector("[data-post-actions]")?.addEventListener("click", (event) => {
    const target = event.target;
    if (target.closest("[data-like]")) like.toggle();
    else if (target.closest("[data-save]")) save.toggle();
    else if (target.closest("[data-open-comments]")) comments.open(page);
    else if (target.closest("[data-share]")) share.open(page);
    else return; // the sign-in links
    event.preventDefault();
  });
  // The counts under the caption ("3 likes") follow the buttons.
  page.addEventListener("craftreel:count", (event) => {
    const { name, count } = event.detail;
    const item = page.querySelector(`[data-post-count="${name}"]`);
    if (!item) return;
    const number = document.createElement("strong");
    number.textContent = count.toLocaleString("en");
    item.replaceChildren(number, ` ${count === 1 ? item.dataset.one : name}`);
  });
  // A link to the comments (/p/{id}#comments) opens them.
  if (location.hash === "#comments") comments.open(page);
  return like;
}

/** Two quick taps on the video like the post, with a heart; one tap plays or pauses. */
function mountDoubleTap(page, holder, video, like) {
  const stage = page.querySelector("[data-post-media]");
  let lastTap = 0;
  let timer = 0;
  // Caught on the way down, so the player's own click (play / pause) waits for a second tap.
  holder?.addEventListener(
    "click",
    (event) => {
      if (event.target !== video) return;
      event.stopPropagation();
      const now = performance.now();
      if (timer && now - lastTap < DOUBLE_TAP_MS) {
        clearTimeout(timer);
        timer = 0;
        heartBurst(stage, event, page.querySelector(".post-heart")?.innerHTML);
        if (page.dataset.signedIn !== "true") {
          showToast("Sign in to like posts.", "info");
          return;
        }
        if (!like.on) like.set(true);
        return;
      }
      lastTap = now;
      clearTimeout(timer);
      timer = setTimeout(() => {
        timer = 0;
        if (video.paused || video.ended) video.play().catch(() => {});
        else video.pause();
      }, DOUBLE_TAP_MS);
    },
    true,
  );
}

/** The view beacon, as in the feed: a view after 3 s of playback, completion at 90%. */
function mountViews(page, video, media) {
  const duration = () =>
    Number.isFinite(video.duration) && video.duration > 0 ? video.duration : media?.duration_s || 0;
  const views = new ViewBeacon(page.dataset.postId, video, duration);
  video.addEventListener("timeupdate", () => views.tick());
  video.addEventListener("play", () => views.resetClock());
  video.addEventListener("pause", () => views.resetClock());
  video.addEventListener("ended", () => views.complete());
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) views.report({ keepalive: true });
  });
  window.addEventListener("pagehide", () => views.report({ keepalive: true }));
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
      const response = await api(
        "POST",
        `/api/v1/posts/${encodeURIComponent(button.dataset.postId)}/kit/cart`,
      );
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
