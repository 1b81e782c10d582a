// Craftreel's feed: full-screen posts that snap one per screen, play muted as they come into
// view (tap for sound; the choice lasts the session), preload the next one, keep at most
// three videos attached, and page on before the end. Double tap likes; the buttons open the
// comments, share and steps sheets. Also: Follow buttons on feed and search pages.
//
// The page works without this module: posters, links to the post page, plain forms. Markup:
// feed/_post_card.html (one [data-reel] per post) and the sheets in feed/templates/feed/.
// Likes, the comments and share sheets and the view beacon come from interactions.js, which
// the post page shares.

import { closeSheet, openSheet, showToast } from "/static/js/app.js";
import {
  api,
  CommentsSheet,
  csrfToken,
  heartBurst,
  LIKE,
  PressToggle,
  problem,
  ShareSheet,
  ViewBeacon,
} from "/static/js/interactions.js";
import { formatTime } from "/static/js/player.js";
import { attachStream, canStream } from "/static/js/stream.js";
import { mountProductChips } from "/static/js/products.js";

const SOUND_KEY = "craftreel:feed-sound";
const PLAY_RATIO = 0.6; // a post plays once this much of it shows
const DOUBLE_TAP_MS = 280;
const NEIGHBOURS = 1; // attached either side of the post on screen: at most 3 videos
const REFRESH_GAP_MS = 20_000;

// --- small helpers ------------------------------------------------------------------------

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
    this.hls = canStream();
    this.sound = sessionStorage.getItem(SOUND_KEY) === "on";
    this.active = null;
    this.states = new WeakMap();
    this.loadingMore = false;
    this.comments = new CommentsSheet({ signedIn: this.signedIn });
    this.chapters = new ChaptersSheet(this);
    this.share = new ShareSheet();

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
      const video = reel.querySelector("[data-reel-video]");
      s = {
        video,
        attached: false,
        views: new ViewBeacon(reel.dataset.postId, video, () => this.duration(reel)),
        tapTimer: 0,
        lastTap: 0,
        like: new PressToggle(reel, LIKE, { signedIn: this.signedIn }),
        lastRefresh: 0,
        seekTo: null,
        chapters: JSON.parse(reel.dataset.chapters || "[]"),
      };
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
        "This browser can’t play streaming video (HLS). It plays in Safari, Chrome, Edge and Firefox.",
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
    s.stream?.destroy();
    s.stream = null;
    const url = video.dataset.src;
    // Natively the source is set at once; through hls.js once the module has loaded.
    attachStream(video, url).then((stream) => {
      if (!s.attached || video.dataset.src !== url) {
        stream?.destroy();
        return;
      }
      s.stream = stream;
      if (!stream) this.say(reel, "This browser can’t play streaming video (HLS).");
      else if (video.dataset.stream && reel === this.active) this.play(reel);
    });
  }

  detach(reel) {
    const s = this.state(reel);
    if (!s.attached || !s.video) return;
    this.report(reel);
    s.attached = false;
    delete reel.dataset.attached;
    s.video.pause();
    s.stream?.destroy(); // lets the browser drop the decoder and buffers
    s.stream = null;
  }

  play(reel) {
    const s = this.state(reel);
    const video = s.video;
    if (!video || !s.attached) return;
    delete reel.dataset.pausedBy;
    video.muted = !this.sound;
    if (this.sound && video.volume === 0) video.volume = 1;
    s.views.resetClock();
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
    this.state(reel).views.resetClock();
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
      this.state(reel).like.toggle();
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
      if (!s.like.on) s.like.set(true);
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
    heartBurst(reel, event, reel.querySelector(".reel-heart")?.innerHTML);
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
        if (this.active && this.signedIn) this.state(this.active).like.toggle();
        break;
      case "c":
        if (this.active) this.comments.open(this.active);
        break;
      default:
    }
  }

  // --- progress, steps, views ----------------------------------------------------------

  onTime(reel) {
    this.paint(reel);
    this.state(reel).views.tick(); // the view beacon counts the time watched
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
    this.state(reel).views.complete();
  }

  /** The view beacon: time watched so far (the server keeps the longest), once past 3 s. */
  report(reel, options) {
    this.state(reel).views.report(options);
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
