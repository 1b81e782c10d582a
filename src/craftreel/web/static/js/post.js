// The post page (/p/{id}): Craftreel's player in place of the browser's own, muted autoplay
// with a "Tap for sound" button, and the steps list seeking the video.

import { mountPlayer } from "/static/js/player.js";
import { showLocalTimes, showPendingToast } from "/static/js/composer.js";

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

showPendingToast();
showLocalTimes();
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start, { once: true });
} else {
  start();
}
