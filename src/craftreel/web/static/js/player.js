// Craftreel's video player: HLS played by the browser itself, a poster, and a scrub bar that
// shows the thumbnail for the moment under the finger or the pointer.
//
//   import { mountPlayer } from "/static/js/player.js";
//   const player = mountPlayer(container, media, { refresh });
//   player.update(media);   // a newer copy of the media JSON (poster or thumbnails arrived)
//
// `media` is the JSON of GET /api/v1/media/{id}: playback_url (an HLS master playlist),
// poster_url, thumbnails_url (WebVTT whose cues are "sprite.jpg#xywh=x,y,w,h", relative to
// the VTT), duration_s, width, height. `refresh` (optional) returns a fresh copy when the
// signed URLs have lapsed. The markup comes from <template id="player-template">
// (media/_player.html). HLS plays natively where the browser can, else through hls.js
// (stream.js); where neither works, the player says so.

import { attachStream, canStream } from "/static/js/stream.js";

const HLS_TYPE = "application/vnd.apple.mpegurl";
const PREVIEW_MAX_WIDTH = 176;
const PREVIEW_MAX_HEIGHT = 132;
const REFRESH_GAP_MS = 20_000;

/** Whether this browser plays HLS by itself (Safari, Chrome and Edge on recent versions). */
export function canPlayHls(element = document.createElement("video")) {
  return element.canPlayType(HLS_TYPE) !== "";
}

/** "1:05", or "1:02:05" past an hour. */
export function formatTime(seconds) {
  const total = Math.max(0, Math.floor(Number.isFinite(seconds) ? seconds : 0));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function parseVttTime(text) {
  const parts = text.trim().split(":").map(Number);
  if (parts.some(Number.isNaN)) return NaN;
  return parts.reduce((total, part) => total * 60 + part, 0);
}

/**
 * Thumbnail cues from a WebVTT sprite map: [{start, end, image, x, y, w, h}], where image is
 * the sprite's absolute URL (resolved against the VTT's own URL, so signed paths carry over).
 */
export function parseThumbnailVtt(text, vttUrl) {
  const cues = [];
  for (const block of text.replace(/\r\n?/g, "\n").split(/\n{2,}/)) {
    const lines = block.split("\n").map((line) => line.trim()).filter(Boolean);
    const timing = lines.findIndex((line) => line.includes("-->"));
    if (timing === -1 || !lines[timing + 1]) continue;
    const [from, to] = lines[timing].split("-->");
    const start = parseVttTime(from);
    const end = parseVttTime(to.trim().split(/\s+/)[0]);
    const target = new URL(lines[timing + 1], vttUrl);
    const match = /^#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(target.hash);
    if (!match || Number.isNaN(start) || Number.isNaN(end)) continue;
    target.hash = "";
    const [x, y, w, h] = match.slice(1).map(Number);
    cues.push({ start, end, image: target.href, x, y, w, h });
  }
  return cues;
}

function cueAt(cues, time) {
  if (!cues.length) return null;
  return cues.find((cue) => time >= cue.start && time < cue.end) ?? cues[cues.length - 1];
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`could not load ${url}`));
    image.src = url;
  });
}

function fallbackMarkup() {
  const wrapper = document.createElement("div");
  wrapper.className = "player";
  wrapper.innerHTML =
    '<video class="player-video" controls playsinline muted autoplay preload="metadata"></video>';
  return wrapper;
}

/** Put a player for `media` into `container`; returns {element, video, update, destroy}. */
export function mountPlayer(container, media, { refresh } = {}) {
  const template = document.getElementById("player-template");
  const root = template ? template.content.firstElementChild.cloneNode(true) : fallbackMarkup();
  const $ = (name) => root.querySelector(`[data-player-${name}]`);
  const video = root.querySelector("video");
  const range = $("range");
  const preview = $("preview");
  const previewImage = $("preview-image");
  const previewTime = $("preview-time");
  const timeLabel = $("time");
  const durationLabel = $("duration");
  const message = $("message");
  const toggle = $("toggle");
  const mute = $("mute");
  const fullscreen = $("fullscreen");

  let current = media;
  let cues = [];
  let thumbnails = "none"; // none | loading | ready
  let spriteSizes = new Map(); // sprite URL → [naturalWidth, naturalHeight]
  let dragging = false;
  let hovering = false;
  let hideTimer = 0;
  let releaseTimer = 0;
  let lastRefresh = 0;
  const abort = new AbortController();
  const on = (target, type, handler, options = {}) =>
    target?.addEventListener(type, handler, { ...options, signal: abort.signal });

  const aspect = media.aspect || (media.width && media.height ? media.width / media.height : 0);
  if (aspect) root.style.setProperty("--player-aspect", String(aspect));
  if (media.poster_url) video.poster = media.poster_url;
  container.replaceChildren(root);

  function say(text) {
    if (!message) return;
    message.textContent = text;
    message.hidden = !text;
  }

  function duration() {
    if (Number.isFinite(video.duration) && video.duration > 0) return video.duration;
    return current.duration_s || 0;
  }

  function showTimes() {
    const total = duration();
    const now = dragging && range ? Number(range.value) : video.currentTime;
    if (timeLabel) timeLabel.textContent = formatTime(now);
    if (durationLabel) durationLabel.textContent = formatTime(total);
    if (!range) return;
    range.max = String(total || 0);
    if (!dragging) range.value = String(video.currentTime);
    const fraction = total ? Number(range.value) / total : 0;
    range.style.setProperty("--fill", `${(fraction * 100).toFixed(2)}%`);
    range.setAttribute("aria-valuetext", `${formatTime(Number(range.value))} of ${formatTime(total)}`);
  }

  function showState() {
    root.dataset.state = video.paused || video.ended ? "paused" : "playing";
    root.dataset.muted = String(video.muted);
    toggle?.setAttribute("aria-label", video.paused || video.ended ? "Play" : "Pause");
    mute?.setAttribute("aria-label", video.muted ? "Turn sound on" : "Turn sound off");
  }

  // --- the thumbnail preview -----------------------------------------------------------

  function thumbWidth() {
    return 16; // the range thumb's width in _create_styles.html
  }

  function fractionAtX(clientX) {
    const box = range.getBoundingClientRect();
    const usable = box.width - thumbWidth();
    if (usable <= 0) return 0;
    return Math.min(1, Math.max(0, (clientX - box.left - thumbWidth() / 2) / usable));
  }

  function xOfValue(value) {
    const box = range.getBoundingClientRect();
    const total = duration();
    const fraction = total ? value / total : 0;
    return box.left + thumbWidth() / 2 + fraction * (box.width - thumbWidth());
  }

  function showPreview(time, clientX) {
    if (!preview) return;
    clearTimeout(hideTimer);
    const cue = cueAt(cues, time);
    if (cue && previewImage) {
      const [sheetWidth, sheetHeight] = spriteSizes.get(cue.image) ?? [0, 0];
      // Tall (portrait) tiles are shrunk to fit; that needs the whole sheet's size.
      const s = sheetWidth ? Math.min(1, PREVIEW_MAX_WIDTH / cue.w, PREVIEW_MAX_HEIGHT / cue.h) : 1;
      Object.assign(previewImage.style, {
        width: `${Math.round(cue.w * s)}px`,
        height: `${Math.round(cue.h * s)}px`,
        backgroundImage: `url("${cue.image}")`,
        backgroundPosition: `-${Math.round(cue.x * s)}px -${Math.round(cue.y * s)}px`,
        backgroundSize: sheetWidth ? `${Math.round(sheetWidth * s)}px ${Math.round(sheetHeight * s)}px` : "auto",
      });
    }
    if (previewTime) previewTime.textContent = formatTime(time);
    preview.hidden = false;
    const stage = preview.offsetParent ?? root;
    const box = stage.getBoundingClientRect();
    const half = preview.offsetWidth / 2;
    const x = Math.min(box.width - half - 4, Math.max(half + 4, clientX - box.left));
    preview.style.left = `${x}px`;
  }

  function hidePreview(delay = 0) {
    clearTimeout(hideTimer);
    hideTimer = setTimeout(() => {
      if (!dragging && !hovering && preview) preview.hidden = true;
    }, delay);
  }

  async function loadThumbnails(url) {
    if (!url || thumbnails !== "none") return;
    thumbnails = "loading";
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`thumbnails: ${response.status}`);
      const parsed = parseThumbnailVtt(await response.text(), response.url || url);
      // Load each sprite sheet once: it warms the cache and tells us its size for scaling.
      const sheets = [...new Set(parsed.map((cue) => cue.image))];
      const loaded = await Promise.all(sheets.map((sheet) => loadImage(sheet)));
      spriteSizes = new Map(sheets.map((sheet, i) => [sheet, [loaded[i].naturalWidth, loaded[i].naturalHeight]]));
      cues = parsed;
      thumbnails = "ready";
      root.dataset.thumbnails = "ready";
    } catch {
      thumbnails = "none"; // try again with the next copy of the media
    }
  }

  // --- playback ------------------------------------------------------------------------

  let stream = null;

  async function start(src, at = 0, resume = true) {
    stream?.destroy();
    stream = await attachStream(video, src);
    if (!stream) {
      say("This browser can’t play streaming video (HLS). Try Safari, Chrome, Edge or Firefox.");
      return;
    }
    if (at) video.currentTime = at;
    video.muted = true; // muted autoplay is allowed everywhere; the sound button turns it on
    if (resume) video.play().catch(() => showState());
  }

  async function recover() {
    // Signed URLs last minutes: when segments start failing, fetch fresh ones and carry on.
    if (!refresh || Date.now() - lastRefresh < REFRESH_GAP_MS) {
      say("The video stopped loading. Check your connection and press play to try again.");
      return;
    }
    lastRefresh = Date.now();
    const at = video.currentTime;
    const wasPlaying = !video.paused;
    try {
      const fresh = await refresh();
      if (fresh?.playback_url) {
        current = fresh;
        say("");
        start(fresh.playback_url, at, wasPlaying);
        loadThumbnails(fresh.thumbnails_url);
      }
    } catch {
      say("The video stopped loading. Check your connection and press play to try again.");
    }
  }

  if (!canStream(video)) {
    say(
      "This browser can’t play streaming video (HLS), which Craftreel uses. " +
        "It plays in Safari, Chrome, Edge and Firefox.",
    );
    root.dataset.unsupported = "true";
    root.querySelector(".player-bar")?.setAttribute("hidden", "");
  } else if (media.playback_url) {
    start(media.playback_url);
  }

  on(video, "timeupdate", showTimes);
  on(video, "durationchange", showTimes);
  on(video, "loadedmetadata", showTimes);
  for (const type of ["play", "pause", "ended", "volumechange"]) on(video, type, showState);
  on(video, "playing", () => say(""));
  on(video, "error", recover);
  on(video, "click", () => (video.paused ? video.play().catch(() => {}) : video.pause()));
  on(toggle, "click", () => (video.paused || video.ended ? video.play().catch(() => {}) : video.pause()));
  on(mute, "click", () => {
    video.muted = !video.muted;
    if (!video.muted && video.volume === 0) video.volume = 1;
  });
  on(fullscreen, "click", () => {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else if (root.requestFullscreen) root.requestFullscreen().catch(() => {});
    else video.webkitEnterFullscreen?.(); // iPhone: only the video itself goes full screen
  });

  if (range) {
    on(range, "pointerenter", () => (hovering = true));
    on(range, "pointerleave", () => {
      hovering = false;
      hidePreview(dragging ? 0 : 150);
    });
    on(range, "pointermove", (event) => {
      if (dragging) return; // the input event follows the drag
      showPreview(fractionAtX(event.clientX) * duration(), event.clientX);
    });
    on(range, "pointerdown", () => {
      clearTimeout(releaseTimer);
      dragging = true;
    });
    on(range, "input", () => {
      clearTimeout(releaseTimer);
      dragging = true;
      const value = Number(range.value);
      showPreview(value, xOfValue(value));
      showTimes();
    });
    on(range, "change", () => {
      clearTimeout(releaseTimer);
      video.currentTime = Number(range.value);
      dragging = false;
      showTimes();
      hidePreview(hovering ? 0 : 700);
    });
    // A press that moved nothing sends no change event; until one is due, the range keeps
    // the dragged value (a timeupdate in between must not overwrite it).
    const release = () => {
      clearTimeout(releaseTimer);
      releaseTimer = setTimeout(() => {
        dragging = false;
        hidePreview(hovering ? 0 : 700);
      }, 250);
    };
    on(range, "pointerup", release);
    on(range, "pointercancel", release);
    on(range, "blur", release);
  }

  showState();
  showTimes();
  loadThumbnails(media.thumbnails_url);

  return {
    element: root,
    video,
    /** A newer copy of the media JSON: picks up the poster and thumbnails when they arrive. */
    update(next) {
      current = { ...current, ...next };
      if (next.poster_url && !video.poster) video.poster = next.poster_url;
      loadThumbnails(next.thumbnails_url);
      showTimes();
    },
    destroy() {
      abort.abort();
      clearTimeout(hideTimer);
      clearTimeout(releaseTimer);
      video.removeAttribute("src");
      video.load();
      root.remove();
    },
  };
}
