// Craftreel's feed: full-screen posts that snap one per screen, play muted as they come into
// view (tap for sound; the choice lasts the session), preload the next one, keep at most
// three videos attached, and page on before the end. Double tap likes; the buttons open the
// comments, share and steps sheets. Also: Follow buttons on feed and search pages.
//
// The page works without this module: posters, links to the post page, plain forms. Markup:
// feed/_post_card.html (one [data-reel] per post) and the sheets in feed/templates/feed/.

import { closeSheet, openSheet, showToast } from "/static/js/app.js";
import { canPlayHls, formatTime } from "/static/js/player.js";
import { mountProductChips } from "/static/js/products.js";

const SOUND_KEY = "craftreel:feed-sound";
const PLAY_RATIO = 0.6; // a post plays once this much of it shows
const DOUBLE_TAP_MS = 280;
const VIEW_AFTER_MS = 3000; // a view counts after 3 s of playback
const COMPLETE_RATIO = 0.9;
const NEIGHBOURS = 1; // attached either side of the post on screen: at most 3 videos
const REFRESH_GAP_MS = 20_000;

// --- small helpers ------------------------------------------------------------------------

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

/** A call to our JSON API as the signed-in browser (session cookie + CSRF header). */
async function api(method, url, body, { keepalive = false } = {}) {
  const headers = { Accept: "application/json", "X-CSRF-Token": csrfToken() };
  const init = { method, headers, credentials: "same-origin", keepalive };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(url, init);
}

async function problem(response, fallback) {
  if (response.status === 401) return "Sign in first.";
  if (response.status === 429) return "Slow down a little — try again in a moment.";
  try {
    const body = await response.json();
    if (body?.error?.message) return body.error.message;
  } catch {
    // not JSON: keep the general message
  }
  return fallback;
}

function signInUrl() {
  return `/signin?next=${encodeURIComponent(location.pathname + location.search)}`;
}

/** "999", "1.2K", "12K", "3.4M" — as the server's count macro writes them. */
export function compactCount(n) {
  if (n >= 1_000_000) return `${(n / 1_000_000).toFixed(1).replace(/\.0$/, "")}M`;
  if (n >= 10_000) return `${Math.floor(n / 1000)}K`;
  if (n >= 1000) return `${(n / 1000).toFixed(1).replace(/\.0$/, "")}K`;
  return String(n);
}

/** "now", "5m", "3h", "2d", then a date. */
export function timeAgo(iso, now = Date.now()) {
  const then = new Date(iso).getTime();
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  if (seconds < 60) return "now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  if (seconds < 7 * 86400) return `${Math.floor(seconds / 86400)}d`;
  return new Date(iso).toLocaleDateString(undefined, { day: "numeric", month: "short" });
}

/** The avatar macro (macros.html) in script: a photo, or initials on the person's colour. */
function avatar(person, size = "sm") {
  const span = document.createElement("span");
  span.className = `avatar avatar-${size}`;
  if (person.avatar_url) {
    const img = document.createElement("img");
    img.src = person.avatar_url;
    img.alt = "";
    img.loading = "lazy";
    span.append(img);
    return span;
  }
  const name = person.display_name || person.handle || "?";
  const initials = name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0]).join("");
  const fill = (parseInt(String(person.id).slice(-1), 16) || 0) % 6;
  span.classList.add(`avatar-fill-${fill}`);
  span.setAttribute("aria-hidden", "true");
  const text = document.createElement("span");
  text.className = "avatar-initials";
  text.textContent = initials.toUpperCase();
  span.append(text);
  return span;
}

function typing(target) {
  return target instanceof HTMLElement && target.closest("input, textarea, select, [contenteditable]");
}

// --- Follow buttons (feed cards, search rows) ----------------------------------------------

document.addEventListener("submit", async (event) => {
  const form = event.target.closest?.("form[data-follow-form]");
  if (!form) return;
  event.preventDefault();
  const button = form.querySelector("button");
  button.disabled = true;
  button.classList.add("is-busy");
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { "HX-Request": "true", "X-CSRF-Token": csrfToken() },
    });
    if (!response.ok) throw new Error(await problem(response, "Couldn’t follow. Try again."));
    let toast = null;
    try {
      toast = JSON.parse(response.headers.get("HX-Trigger") || "{}")["craftreel:toast"] ?? null;
    } catch {
      toast = null;
    }
    const pending = /^Request sent/.test(toast?.message ?? "");
    const action = form.getAttribute("action");
    // The same maker may have several cards on the page: all of them change.
    for (const other of document.querySelectorAll("form[data-follow-form]")) {
      if (other.getAttribute("action") !== action) continue;
      const classes = [...other.querySelector("button").classList].filter((c) => !c.startsWith("btn"));
      const state = document.createElement("span");
      state.className = ["follow-state", ...classes.filter((c) => c !== "follow-btn" && c !== "is-busy")].join(" ");
      state.textContent = pending ? "Requested" : "Following";
      other.replaceWith(state);
    }
    if (toast?.message) showToast(toast.message, toast.kind);
  } catch (error) {
    button.disabled = false;
    button.classList.remove("is-busy");
    showToast(error instanceof Error ? error.message : "Couldn’t follow. Try again.", "error");
  }
});

// --- The feed ----------------------------------------------------------------------------

class Feed {
  constructor(root) {
    this.root = root;
    this.scroller = root.querySelector("[data-feed-scroller]");
    this.signedIn = root.dataset.signedIn === "true";
    this.viewer = root.dataset.viewer ?? null;
    this.hls = canPlayHls();
    this.sound = sessionStorage.getItem(SOUND_KEY) === "on";
    this.active = null;
    this.states = new WeakMap();
    this.loadingMore = false;
    this.comments = new CommentsSheet(this);
    this.chapters = new ChaptersSheet(this);
    this.share = new ShareSheet(this);

    this.visibility = new IntersectionObserver((entries) => this.onVisibility(entries), {
      root: this.scroller,
      threshold: [0, PLAY_RATIO, 1],
    });
    // The next page is asked for while two screens of posts are still left.
    this.nearEnd = new IntersectionObserver(
      (entries) => entries.some((e) => e.isIntersecting) && this.loadMore(),
      { root: this.scroller, rootMargin: "0px 0px 200% 0px" },
    );

    this.reels().forEach((reel) => this.adopt(reel));
    this.watchMore();
    this.bind();
  }

  reels() {
    return [...this.scroller.querySelectorAll("[data-reel]")];
  }

  state(reel) {
    let s = this.states.get(reel);
    if (!s) {
      s = {
        video: reel.querySelector("[data-reel-video]"),
        attached: false,
        watchedMs: 0,
        lastTick: 0,
        viewSent: false,
        completeSent: false,
        reportedMs: 0,
        tapTimer: 0,
        lastTap: 0,
        liked: reel.querySelector("[data-like]")?.getAttribute("aria-pressed") === "true",
        likeServer: null,
        liking: false,
        lastRefresh: 0,
        seekTo: null,
        chapters: JSON.parse(reel.dataset.chapters || "[]"),
      };
      s.likeServer = s.liked;
      this.states.set(reel, s);
    }
    return s;
  }

  /** Wire one card (from the page or a later page). */
  adopt(reel) {
    const s = this.state(reel);
    this.visibility.observe(reel);
    this.showSound(reel);
    const video = s.video;
    if (video) {
      video.addEventListener("timeupdate", () => this.onTime(reel));
      video.addEventListener("play", () => this.onPlayState(reel));
      video.addEventListener("pause", () => this.onPlayState(reel));
      video.addEventListener("ended", () => this.complete(reel));
      video.addEventListener("volumechange", () => this.showSound(reel));
      video.addEventListener("error", () => this.recover(reel));
      video.addEventListener("loadedmetadata", () => {
        if (s.seekTo !== null) {
          video.currentTime = s.seekTo;
          s.seekTo = null;
        }
        const range = reel.querySelector("[data-reel-range]");
        if (range && Number.isFinite(video.duration)) range.max = String(video.duration);
      });
    }
    const products = reel.querySelector("[data-reel-products]");
    if (video && products) {
      try {
        mountProductChips(video, products, reel.dataset.postId, JSON.parse(products.dataset.products || "[]"));
      } catch {
        // a broken list shows no chips; the video plays on
      }
    }
    const range = reel.querySelector("[data-reel-range]");
    range?.addEventListener("input", () => {
      if (!video) return;
      this.attach(reel, "auto");
      video.currentTime = Number(range.value);
      this.paint(reel);
    });
    const photos = reel.querySelector("[data-reel-photos]");
    photos?.addEventListener(
      "scroll",
      () => {
        const index = Math.round(photos.scrollLeft / Math.max(1, photos.clientWidth));
        reel.querySelectorAll(".reel-dot").forEach((dot, i) => dot.classList.toggle("is-current", i === index));
      },
      { passive: true },
    );
    if (video && !this.hls && reel.querySelector("[data-reel-video][data-src]")) {
      this.say(
        reel,
        "This browser can’t play streaming video (HLS). It plays in Safari, and in recent Chrome and Edge.",
      );
    }
  }

  bind() {
    this.scroller.addEventListener("click", (event) => this.onClick(event));
    document.addEventListener("keydown", (event) => this.onKey(event));
    document.addEventListener("visibilitychange", () => {
      if (!this.active) return;
      if (document.hidden) {
        this.report(this.active, { keepalive: true });
        this.state(this.active).video?.pause();
      } else {
        this.play(this.active);
      }
    });
    window.addEventListener("pagehide", () => {
      if (this.active) this.report(this.active, { keepalive: true });
    });
  }

  // --- which post is on screen ---------------------------------------------------------

  onVisibility(entries) {
    for (const entry of entries) {
      const reel = entry.target;
      if (entry.intersectionRatio >= PLAY_RATIO) {
        if (reel !== this.active) this.activate(reel);
      } else if (reel === this.active) {
        this.pause(reel);
      }
    }
  }

  activate(reel) {
    if (this.active && this.active !== reel) this.pause(this.active);
    this.active = reel;
    reel.dataset.active = "true";
    this.manageAttachments();
    this.play(reel);
  }

  manageAttachments() {
    const reels = this.reels();
    const index = reels.indexOf(this.active);
    reels.forEach((reel, i) => {
      const distance = i - index;
      if (distance === 0 || distance === 1) this.attach(reel, "auto"); // the next one preloads
      else if (Math.abs(distance) <= NEIGHBOURS) this.attach(reel, "metadata");
      else this.detach(reel);
    });
  }

  attach(reel, preload) {
    const s = this.state(reel);
    const video = s.video;
    if (!video || !video.dataset.src || !this.hls) return;
    if (video.preload !== preload && !(video.preload === "auto" && s.attached)) video.preload = preload;
    if (s.attached) return;
    s.attached = true;
    reel.dataset.attached = "true";
    video.src = video.dataset.src;
  }

  detach(reel) {
    const s = this.state(reel);
    if (!s.attached || !s.video) return;
    this.report(reel);
    s.attached = false;
    delete reel.dataset.attached;
    s.video.pause();
    s.video.removeAttribute("src");
    s.video.load(); // lets the browser drop the decoder and buffers
  }

  play(reel) {
    const s = this.state(reel);
    const video = s.video;
    if (!video || !s.attached) return;
    delete reel.dataset.pausedBy;
    video.muted = !this.sound;
    if (this.sound && video.volume === 0) video.volume = 1;
    s.lastTick = 0;
    video.play().catch(() => {
      // Sound without a fresh tap can be refused: play muted, and offer the sound button.
      if (!video.muted) {
        video.muted = true;
        video.play().catch(() => {});
      }
    });
  }

  pause(reel) {
    const s = this.state(reel);
    delete reel.dataset.active;
    if (!s.video) return;
    s.video.pause();
    this.report(reel);
  }

  onPlayState(reel) {
    const video = this.state(reel).video;
    reel.dataset.state = video.paused ? "paused" : "playing";
    this.state(reel).lastTick = 0;
  }

  // --- sound -------------------------------------------------------------------------

  setSound(on) {
    this.sound = on;
    sessionStorage.setItem(SOUND_KEY, on ? "on" : "off");
    if (this.active) {
      const video = this.state(this.active).video;
      if (video) {
        video.muted = !on;
        if (on && video.volume === 0) video.volume = 1;
        if (on && video.paused && !this.active.dataset.pausedBy) this.play(this.active);
      }
    }
    this.reels().forEach((reel) => this.showSound(reel));
  }

  showSound(reel) {
    const button = reel.querySelector("[data-reel-sound]");
    if (!button) return;
    const video = this.state(reel).video;
    const on = video && reel === this.active ? !video.muted : this.sound;
    button.setAttribute("aria-pressed", String(on));
    button.setAttribute("aria-label", on ? "Sound on. Turn sound off" : "Sound off. Turn sound on");
  }

  // --- taps and keys -------------------------------------------------------------------

  onClick(event) {
    const target = event.target;
    const reel = target.closest("[data-reel]");
    if (!reel) return;
    if (target.closest("[data-reel-sound]")) {
      const video = this.state(reel).video;
      if (reel !== this.active) this.activate(reel);
      this.setSound(video ? video.muted : !this.sound);
      return;
    }
    if (target.closest("[data-like]")) {
      event.preventDefault();
      this.like(reel, !this.state(reel).liked);
      return;
    }
    if (target.closest("[data-open-comments]")) {
      event.preventDefault();
      this.comments.open(reel);
      return;
    }
    if (target.closest("[data-open-chapters]")) {
      event.preventDefault();
      this.chapters.open(reel);
      return;
    }
    if (target.closest("[data-share]")) {
      event.preventDefault();
      this.share.open(reel);
      return;
    }
    const caption = target.closest("[data-reel-caption]");
    if (caption && !target.closest("a")) {
      caption.classList.toggle("is-open");
      return;
    }
    if (target.closest("[data-reel-tap], [data-reel-photos]")) this.onTap(reel, event);
  }

  /** One tap: sound on (if off), else pause / play. Two quick taps: like, with a heart. */
  onTap(reel, event) {
    const s = this.state(reel);
    const now = performance.now();
    if (s.tapTimer && now - s.lastTap < DOUBLE_TAP_MS) {
      clearTimeout(s.tapTimer);
      s.tapTimer = 0;
      this.burst(reel, event);
      if (!this.signedIn) {
        showToast("Sign in to like posts.", "info");
        return;
      }
      if (!s.liked) this.like(reel, true);
      return;
    }
    s.lastTap = now;
    clearTimeout(s.tapTimer);
    s.tapTimer = setTimeout(() => {
      s.tapTimer = 0;
      this.singleTap(reel);
    }, DOUBLE_TAP_MS);
  }

  singleTap(reel) {
    const video = this.state(reel).video;
    if (!video) return; // photos: a single tap does nothing
    if (reel !== this.active) this.activate(reel);
    if (video.muted) {
      this.setSound(true);
      return;
    }
    this.togglePlay(reel);
  }

  togglePlay(reel) {
    const video = this.state(reel).video;
    if (!video) return;
    if (video.paused) {
      this.attach(reel, "auto");
      this.play(reel);
    } else {
      video.pause();
      reel.dataset.pausedBy = "viewer";
    }
  }

  burst(reel, event) {
    const box = reel.getBoundingClientRect();
    const heart = document.createElement("span");
    heart.className = "reel-heart-burst";
    heart.setAttribute("aria-hidden", "true");
    heart.innerHTML = reel.querySelector(".reel-heart")?.innerHTML ?? "";
    const x = event?.clientX ? event.clientX - box.left : box.width / 2;
    const y = event?.clientY ? event.clientY - box.top : box.height / 2;
    heart.style.left = `${x}px`;
    heart.style.top = `${y}px`;
    reel.append(heart);
    heart.addEventListener("animationend", () => heart.remove(), { once: true });
    setTimeout(() => heart.remove(), 1200);
  }

  onKey(event) {
    if (event.defaultPrevented || event.metaKey || event.ctrlKey || event.altKey) return;
    if (typing(event.target) || document.querySelector("dialog[open]")) return;
    const onControl = event.target instanceof HTMLElement && event.target.closest("button, a, input");
    // Every screen the feed snaps to: the posts, the next page's marker, the end.
    const screens = [
      ...this.scroller.querySelectorAll("[data-reel], [data-feed-more], [data-feed-end]:not([hidden])"),
    ];
    const top = this.scroller.scrollTop;
    const index = screens.reduce(
      (best, el, i) => (Math.abs(el.offsetTop - top) < Math.abs(screens[best].offsetTop - top) ? i : best),
      0,
    );
    const go = (to) => {
      const screen = screens[Math.max(0, Math.min(screens.length - 1, to))];
      if (!screen) return;
      event.preventDefault();
      this.scroller.scrollTo({ top: screen.offsetTop, behavior: "smooth" });
    };
    switch (event.key) {
      case "ArrowDown":
      case "PageDown":
      case "j":
        go(index + 1);
        break;
      case "ArrowUp":
      case "PageUp":
      case "k":
        go(index - 1);
        break;
      case " ":
        if (onControl || !this.active) return;
        event.preventDefault();
        this.togglePlay(this.active);
        break;
      case "m":
        if (this.active) this.setSound(!this.sound || Boolean(this.state(this.active).video?.muted));
        break;
      case "l":
        if (this.active && this.signedIn) this.like(this.active, !this.state(this.active).liked);
        break;
      case "c":
        if (this.active) this.comments.open(this.active);
        break;
      default:
    }
  }

  // --- likes --------------------------------------------------------------------------

  showLike(reel, liked, count) {
    const button = reel.querySelector("[data-like]");
    if (!button) return;
    button.setAttribute("aria-pressed", String(liked));
    const label = button.querySelector("[data-like-count]");
    label.dataset.count = String(count);
    label.textContent = compactCount(count);
  }

  /** Like or unlike at once on screen; the server's answer settles the count. */
  async like(reel, wanted) {
    const s = this.state(reel);
    if (!this.signedIn) {
      location.assign(signInUrl());
      return;
    }
    const button = reel.querySelector("[data-like]");
    const shown = Number(button?.querySelector("[data-like-count]")?.dataset.count ?? 0);
    if (wanted !== s.liked) {
      s.liked = wanted;
      this.showLike(reel, wanted, Math.max(0, shown + (wanted ? 1 : -1)));
      if (wanted) {
        button?.classList.remove("is-popping");
        void button?.offsetWidth;
        button?.classList.add("is-popping");
      }
    }
    if (s.liking) return; // the loop below sends the latest wish when the first answer is in
    s.liking = true;
    try {
      while (s.likeServer !== s.liked) {
        const sending = s.liked;
        const response = await api(sending ? "PUT" : "DELETE", `/api/v1/posts/${reel.dataset.postId}/like`);
        if (!response.ok) throw new Error(await problem(response, "That like didn’t go through. Try again."));
        const body = await response.json();
        s.likeServer = body.liked;
        if (s.liked === body.liked) this.showLike(reel, body.liked, body.likes);
      }
    } catch (error) {
      s.liked = s.likeServer;
      const count = Number(button?.querySelector("[data-like-count]")?.dataset.count ?? 0);
      this.showLike(reel, s.liked, Math.max(0, count + (s.liked ? 1 : -1)));
      showToast(error instanceof Error ? error.message : "That like didn’t go through.", "error");
    } finally {
      s.liking = false;
    }
  }

  // --- progress, steps, views ----------------------------------------------------------

  onTime(reel) {
    const s = this.state(reel);
    const video = s.video;
    if (!video.paused && !video.seeking) {
      const now = performance.now();
      // Wall-clock time between ticks while playing (ticks come every ~250 ms).
      if (s.lastTick) s.watchedMs += Math.min(1000, now - s.lastTick);
      s.lastTick = now;
    }
    this.paint(reel);
    if (!s.viewSent && s.watchedMs >= VIEW_AFTER_MS) {
      s.viewSent = true;
      this.report(reel);
    }
    const duration = this.duration(reel);
    if (duration && !s.completeSent && s.watchedMs >= duration * 1000 * COMPLETE_RATIO) {
      this.complete(reel);
    }
  }

  duration(reel) {
    const video = this.state(reel).video;
    if (video && Number.isFinite(video.duration) && video.duration > 0) return video.duration;
    return Number(reel.dataset.duration) || 0;
  }

  paint(reel) {
    const s = this.state(reel);
    const video = s.video;
    const duration = this.duration(reel);
    const time = video.currentTime;
    const fill = reel.querySelector("[data-reel-fill]");
    if (fill && duration) fill.style.setProperty("--progress", `${Math.min(100, (time / duration) * 100)}%`);
    const range = reel.querySelector("[data-reel-range]");
    if (range && document.activeElement !== range) range.value = String(time);
    range?.setAttribute("aria-valuetext", `${formatTime(time)} of ${formatTime(duration)}`);
    if (s.chapters.length) {
      const index = this.chapterAt(s.chapters, time);
      const label = reel.querySelector("[data-reel-chapter-label]");
      const text = `Step ${index + 1}/${s.chapters.length} · ${s.chapters[index].title}`;
      if (label && label.textContent !== text) label.textContent = text;
      if (reel === this.chapters.reel) this.chapters.mark(index);
    }
  }

  chapterAt(chapters, time) {
    let index = 0;
    chapters.forEach((chapter, i) => {
      if (time + 0.05 >= chapter.at) index = i;
    });
    return index;
  }

  /** Play from `at` seconds (attaching the video first if it was let go). */
  seek(reel, at) {
    const s = this.state(reel);
    if (!s.video) return;
    if (reel !== this.active) reel.scrollIntoView({ block: "start" });
    this.attach(reel, "auto");
    if (s.video.readyState >= 1) s.video.currentTime = at;
    else s.seekTo = at;
    this.play(reel);
    this.paint(reel);
  }

  complete(reel) {
    const s = this.state(reel);
    if (s.completeSent || s.watchedMs < VIEW_AFTER_MS) return;
    s.completeSent = true;
    this.report(reel, { completed: true });
  }

  /** The view beacon: time watched so far (the server keeps the longest), once past 3 s. */
  report(reel, { completed = false, keepalive = false } = {}) {
    const s = this.state(reel);
    if (!s.video || s.watchedMs < VIEW_AFTER_MS) return;
    const watched = Math.round(s.watchedMs);
    if (!completed && watched <= s.reportedMs) return;
    s.reportedMs = watched;
    const body = { watched_ms: watched, position_s: s.video.currentTime || 0, completed };
    api("POST", `/api/v1/posts/${reel.dataset.postId}/views`, body, { keepalive }).catch(() => {
      // A lost beacon loses one view's count, never anything the person sees.
    });
  }

  // --- trouble -----------------------------------------------------------------------

  say(reel, text) {
    const message = reel.querySelector("[data-reel-message]");
    if (!message) return;
    message.textContent = text;
    message.hidden = !text;
  }

  /** Media links are signed for minutes: when one lapses, fetch the post again and go on. */
  async recover(reel) {
    const s = this.state(reel);
    if (!s.attached || !s.video.getAttribute("src")) return;
    if (Date.now() - s.lastRefresh < REFRESH_GAP_MS) {
      this.say(reel, "The video stopped loading. Check your connection, then tap to try again.");
      return;
    }
    s.lastRefresh = Date.now();
    const at = s.video.currentTime;
    try {
      const response = await api("GET", `/api/v1/posts/${reel.dataset.postId}`);
      if (!response.ok) throw new Error(String(response.status));
      const post = await response.json();
      const fresh = post.media?.[0]?.playback_url;
      if (!fresh) throw new Error("no playback url");
      s.video.dataset.src = fresh;
      s.attached = false;
      s.seekTo = at;
      this.attach(reel, "auto");
      this.say(reel, "");
      if (reel === this.active) this.play(reel);
    } catch {
      this.say(reel, "The video stopped loading. Check your connection, then tap to try again.");
    }
  }

  // --- more pages ----------------------------------------------------------------------

  watchMore() {
    const marker = this.scroller.querySelector("[data-feed-more]");
    if (marker) this.nearEnd.observe(marker);
  }

  async loadMore() {
    const marker = this.scroller.querySelector("[data-feed-more]");
    if (!marker || this.loadingMore) return;
    this.loadingMore = true;
    marker.classList.add("is-loading");
    try {
      const response = await fetch(marker.dataset.feedMore, {
        credentials: "same-origin",
        headers: { "HX-Request": "true" },
      });
      if (!response.ok) throw new Error(String(response.status));
      if (response.redirected) {
        location.assign(response.url); // signed out meanwhile: the sign-in page
        return;
      }
      const template = document.createElement("template");
      template.innerHTML = await response.text();
      const added = [...template.content.querySelectorAll("[data-reel]")];
      this.nearEnd.unobserve(marker);
      marker.replaceWith(template.content);
      added.forEach((reel) => this.adopt(reel));
      if (!this.scroller.querySelector("[data-feed-more]")) {
        this.scroller.querySelector("[data-feed-end]")?.removeAttribute("hidden");
      }
      this.watchMore();
      if (this.active) this.manageAttachments();
    } catch {
      marker.classList.remove("is-loading");
      showToast("More posts didn’t load. Check your connection and scroll again.", "error");
    } finally {
      this.loadingMore = false;
    }
  }
}

// --- the comments sheet ------------------------------------------------------------------

class CommentsSheet {
  constructor(feed) {
    this.feed = feed;
    this.sheet = document.getElementById("comments-sheet");
    if (!this.sheet) return;
    const $ = (name) => this.sheet.querySelector(`[data-${name}]`);
    this.title = document.getElementById("comments-sheet-title");
    this.list = $("comment-list");
    this.off = $("comments-off");
    this.empty = $("comments-empty");
    this.error = $("comments-error");
    this.loading = $("comments-loading");
    this.more = $("comments-more");
    this.form = $("comment-form");
    this.field = this.form?.querySelector("textarea[name=body]") ?? null;
    this.signin = $("comment-signin");
    this.replying = $("replying");
    this.template = document.getElementById("comment-template");
    this.reel = null;
    this.cursor = null;
    this.parent = null;
    this.more.addEventListener("click", () => this.load());
    this.list.addEventListener("click", (event) => this.onListClick(event));
    this.form?.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.field?.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.form.requestSubmit();
      }
    });
    $("reply-cancel")?.addEventListener("click", () => this.replyTo(null));
  }

  count() {
    return Number(this.reel?.dataset.commentCount ?? 0);
  }

  setCount(n) {
    if (!this.reel) return;
    this.reel.dataset.commentCount = String(n);
    const label = this.reel.querySelector("[data-comment-count]");
    if (label && this.reel.dataset.commentsEnabled === "true") label.textContent = compactCount(n);
    if (n === 0) this.title.textContent = "Comments";
    else this.title.textContent = n === 1 ? "1 comment" : `${n.toLocaleString()} comments`;
  }

  open(reel) {
    if (!this.sheet) return;
    this.reel = reel;
    this.cursor = null;
    this.list.replaceChildren();
    this.replyTo(null);
    const enabled = reel.dataset.commentsEnabled === "true";
    this.off.hidden = enabled;
    this.empty.hidden = true;
    this.error.hidden = true;
    this.more.hidden = true;
    if (this.form) this.form.hidden = !enabled;
    if (this.signin) {
      this.signin.hidden = !enabled;
      this.signin.querySelector("a").href = signInUrl();
    }
    this.title.textContent = "Comments";
    openSheet("comments-sheet");
    if (enabled) {
      this.setCount(this.count());
      this.load();
    }
  }

  async load() {
    const reel = this.reel;
    this.loading.hidden = false;
    this.more.hidden = true;
    this.error.hidden = true;
    const query = this.cursor ? `?cursor=${encodeURIComponent(this.cursor)}` : "";
    try {
      const response = await api("GET", `/api/v1/posts/${reel.dataset.postId}/comments${query}`);
      if (!response.ok) throw new Error(String(response.status));
      const page = await response.json();
      if (reel !== this.reel) return;
      page.items.forEach((comment) => this.list.append(this.render(comment)));
      this.cursor = page.next_cursor;
      this.more.hidden = !page.next_cursor;
      this.empty.hidden = this.list.children.length > 0;
    } catch {
      if (reel === this.reel) this.error.hidden = false;
    } finally {
      if (reel === this.reel) this.loading.hidden = true;
    }
  }

  render(comment) {
    const item = this.template.content.firstElementChild.cloneNode(true);
    const $ = (name) => item.querySelector(`[data-${name}]`);
    item.dataset.commentId = comment.id;
    item.dataset.replyCount = String(comment.reply_count);
    item.dataset.handle = comment.author.handle;
    $("comment-avatar").append(avatar(comment.author));
    const author = $("comment-author");
    author.href = `/@${comment.author.handle}`;
    author.textContent = `@${comment.author.handle}`;
    const time = $("comment-time");
    time.dateTime = comment.created_at;
    time.textContent = timeAgo(comment.created_at);
    time.title = new Date(comment.created_at).toLocaleString();
    $("comment-text").textContent = comment.body;
    const reply = $("comment-reply");
    reply.setAttribute("aria-label", `Reply to @${comment.author.handle}`);
    if (!this.feed.signedIn) reply.hidden = true;
    const remove = $("comment-delete");
    remove.hidden = !comment.can_delete;
    remove.setAttribute("aria-label", `Delete the comment by @${comment.author.handle}`);
    const replies = $("comment-replies");
    if (comment.parent_id) {
      item.dataset.parentId = comment.parent_id;
      $("comment-reply-list").remove();
      replies.remove();
    } else if (comment.reply_count > 0) {
      replies.hidden = false;
      replies.textContent = comment.reply_count === 1 ? "View 1 reply" : `View ${comment.reply_count} replies`;
      replies.setAttribute("aria-expanded", "false");
    }
    return item;
  }

  async onListClick(event) {
    const item = event.target.closest("[data-comment]");
    if (!item) return;
    if (event.target.closest("[data-comment-reply]")) {
      // A reply to a reply joins the top-level comment's thread.
      const top = item.dataset.parentId
        ? this.list.querySelector(`[data-comment-id="${item.dataset.parentId}"]`)
        : item;
      this.replyTo(top, item.dataset.handle);
    } else if (event.target.closest("[data-comment-delete]")) {
      await this.remove(item);
    } else if (event.target.closest("[data-comment-replies]")) {
      await this.loadReplies(item, event.target.closest("[data-comment-replies]"));
    }
  }

  async loadReplies(item, toggle) {
    const list = item.querySelector("[data-comment-reply-list]");
    const cursor = toggle.dataset.cursor;
    toggle.disabled = true;
    try {
      const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
      const response = await api("GET", `/api/v1/comments/${item.dataset.commentId}/replies${query}`);
      if (!response.ok) throw new Error(String(response.status));
      const page = await response.json();
      const shown = new Set([...list.children].map((li) => li.dataset.commentId));
      page.items.filter((reply) => !shown.has(reply.id)).forEach((reply) => list.append(this.render(reply)));
      toggle.setAttribute("aria-expanded", "true");
      if (page.next_cursor) {
        toggle.dataset.cursor = page.next_cursor;
        toggle.textContent = "More replies";
      } else {
        toggle.hidden = true;
      }
    } catch {
      showToast("The replies didn’t load. Try again.", "error");
    } finally {
      toggle.disabled = false;
    }
  }

  replyTo(item, handle = null) {
    this.parent = item;
    if (!this.form || !this.replying) return;
    this.replying.hidden = !item;
    if (item) {
      const who = handle ?? item.dataset.handle;
      this.replying.querySelector("[data-replying-to]").textContent = `Replying to @${who}`;
      const field = this.field;
      if (handle && handle !== item.dataset.handle && !field.value) field.value = `@${handle} `;
      field.focus();
    }
  }

  async send() {
    const field = this.field;
    const text = field.value.trim();
    if (!text) {
      field.focus();
      return;
    }
    const button = this.form.querySelector("button[type=submit]");
    button.disabled = true;
    button.classList.add("is-busy");
    const reel = this.reel;
    const parent = this.parent;
    try {
      const body = { body: text };
      if (parent) body.parent_id = parent.dataset.commentId;
      const response = await api("POST", `/api/v1/posts/${reel.dataset.postId}/comments`, body);
      if (!response.ok) throw new Error(await problem(response, "Your comment didn’t go through. Try again."));
      const comment = await response.json();
      const item = this.render(comment);
      item.classList.add("is-new");
      if (parent) {
        parent.querySelector("[data-comment-reply-list]").append(item);
        parent.dataset.replyCount = String(Number(parent.dataset.replyCount) + 1);
      } else {
        this.list.prepend(item);
      }
      this.empty.hidden = true;
      field.value = "";
      this.replyTo(null);
      this.setCount(this.count() + 1);
      item.scrollIntoView({ block: "nearest" });
    } catch (error) {
      showToast(error instanceof Error ? error.message : "Your comment didn’t go through.", "error");
    } finally {
      button.disabled = false;
      button.classList.remove("is-busy");
    }
  }

  async remove(item) {
    if (!window.confirm("Delete this comment? Its replies go too.")) return;
    try {
      const response = await api("DELETE", `/api/v1/comments/${item.dataset.commentId}`);
      if (!response.ok && response.status !== 404) {
        throw new Error(await problem(response, "That comment couldn’t be deleted."));
      }
      const gone = 1 + (item.dataset.parentId ? 0 : Number(item.dataset.replyCount || 0));
      if (item.dataset.parentId) {
        const top = this.list.querySelector(`[data-comment-id="${item.dataset.parentId}"]`);
        if (top) top.dataset.replyCount = String(Math.max(0, Number(top.dataset.replyCount) - 1));
      }
      if (this.parent === item) this.replyTo(null);
      item.remove();
      this.setCount(Math.max(0, this.count() - gone));
      this.empty.hidden = this.list.children.length > 0;
      showToast("Comment deleted.", "success");
    } catch (error) {
      showToast(error instanceof Error ? error.message : "That comment couldn’t be deleted.", "error");
    }
  }
}

// --- the steps sheet ---------------------------------------------------------------------

class ChaptersSheet {
  constructor(feed) {
    this.feed = feed;
    this.sheet = document.getElementById("chapters-sheet");
    this.list = this.sheet?.querySelector("[data-chapter-list]");
    this.template = document.getElementById("chapter-template");
    this.reel = null;
    this.list?.addEventListener("click", (event) => {
      const row = event.target.closest("[data-chapter]");
      if (!row || !this.reel) return;
      this.feed.seek(this.reel, Number(row.dataset.at));
      closeSheet(this.sheet);
    });
    this.sheet?.addEventListener("close", () => (this.reel = null));
  }

  open(reel) {
    if (!this.sheet) return;
    const { chapters, video } = this.feed.state(reel);
    this.reel = reel;
    this.list.replaceChildren(
      ...chapters.map((chapter, i) => {
        const item = this.template.content.firstElementChild.cloneNode(true);
        const row = item.querySelector("[data-chapter]");
        row.dataset.at = String(chapter.at);
        row.setAttribute("aria-label", `Step ${i + 1}: ${chapter.title}, at ${chapter.label}`);
        item.querySelector("[data-chapter-number]").textContent = String(i + 1);
        item.querySelector("[data-chapter-title]").textContent = chapter.title;
        item.querySelector("[data-chapter-time]").textContent = chapter.label;
        return item;
      }),
    );
    this.mark(this.feed.chapterAt(chapters, video?.currentTime ?? 0));
    openSheet("chapters-sheet");
  }

  mark(index) {
    this.list?.querySelectorAll("[data-chapter]").forEach((row, i) => {
      if (i === index) row.setAttribute("aria-current", "step");
      else row.removeAttribute("aria-current");
    });
  }
}

// --- sharing -----------------------------------------------------------------------------

class ShareSheet {
  constructor(feed) {
    this.feed = feed;
    this.sheet = document.getElementById("share-sheet");
    this.reel = null;
    if (!this.sheet) return;
    this.url = this.sheet.querySelector("[data-share-url]");
    this.status = this.sheet.querySelector("[data-share-status]");
    this.openLink = this.sheet.querySelector("[data-share-open]");
    this.sheet.querySelector("[data-share-copy]").addEventListener("click", () => this.copy());
    this.url.addEventListener("focus", () => this.url.select());
  }

  async open(reel) {
    const url = reel.dataset.shareUrl;
    this.reel = reel;
    if (navigator.share) {
      try {
        await navigator.share({ title: `A post by @${reel.dataset.author} on Craftreel`, url });
        this.record(reel, "web_share");
      } catch (error) {
        if (error?.name !== "AbortError") this.showSheet(reel, url);
      }
      return;
    }
    this.showSheet(reel, url);
  }

  showSheet(reel, url) {
    if (!this.sheet) return;
    this.url.value = url;
    this.openLink.href = url;
    this.status.textContent = "";
    openSheet("share-sheet");
  }

  async copy() {
    const reel = this.reel;
    const url = this.url.value;
    let copied = false;
    try {
      await navigator.clipboard.writeText(url);
      copied = true;
    } catch {
      this.url.focus();
      this.url.select();
      copied = document.execCommand?.("copy") ?? false;
    }
    this.status.textContent = copied ? "Link copied." : "Select the link and copy it.";
    if (copied && reel) this.record(reel, "link");
  }

  async record(reel, channel) {
    try {
      const response = await api("POST", `/api/v1/posts/${reel.dataset.postId}/shares`, { channel });
      if (!response.ok) return;
      const body = await response.json();
      const label = reel.querySelector("[data-share-count]");
      if (label) {
        label.dataset.count = String(body.shares);
        label.textContent = compactCount(body.shares);
      }
    } catch {
      // The link was shared all the same; only the count missed it.
    }
  }
}

// --- start -------------------------------------------------------------------------------

function start() {
  const root = document.querySelector("[data-feed]");
  if (root?.querySelector("[data-feed-scroller]")) window.craftreelFeed = new Feed(root);
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start, { once: true });
} else {
  start();
}
