// What a viewer does with a post, shared by the feed (feed.js) and the post page (post.js):
// the API helper, the like and save toggles, the comments sheet, the share sheet, the
// double-tap heart and the view beacon — and, after a save, "Add to a collection".
//
// Each piece works on a "post element": a feed card ([data-reel]) or the post page's
// [data-post-page]. It carries the post's data attributes — data-post-id, data-author,
// data-share-url, data-comments-enabled, data-comment-count — and holds the buttons
// ([data-like] with [data-like-count], [data-save] with [data-save-count], [data-share-count],
// [data-comment-count]). When a count changes, the post element gets a `craftreel:count`
// event ({name: "likes" | "saves" | "comments" | "shares", count}) for any other place on the
// page that shows it. The sheets' markup: feed/_comments_sheet.html and feed/_share_sheet.html.

import { closeSheet, openSheet, showToast } from "/static/js/app.js";

export const VIEW_AFTER_MS = 3000; // a view counts after 3 s of playback
const COMPLETE_RATIO = 0.9;

// --- the API ------------------------------------------------------------------------------

export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

/** A call to our JSON API as the signed-in browser (session cookie + CSRF header). */
export async function api(method, url, body, { keepalive = false } = {}) {
  const headers = { Accept: "application/json", "X-CSRF-Token": csrfToken() };
  const init = { method, headers, credentials: "same-origin", keepalive };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(url, init);
}

/** What to tell the person about a failed call: the server's message, or `fallback`. */
export async function problem(response, fallback) {
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

/** The sign-in page, coming back here afterwards. */
export function signInUrl() {
  return `/signin?next=${encodeURIComponent(location.pathname + location.search)}`;
}

// --- small helpers ------------------------------------------------------------------------

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
export function avatar(person, size = "sm") {
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

/** Tell the page a post's count changed (see the top of this file). */
function announceCount(post, name, count) {
  post?.dispatchEvent(new CustomEvent("craftreel:count", { detail: { name, count } }));
}

/** A big heart rising where the post was double-tapped; `host` must be positioned. */
export function heartBurst(host, event, iconHtml) {
  const box = host.getBoundingClientRect();
  const heart = document.createElement("span");
  heart.className = "reel-heart-burst";
  heart.setAttribute("aria-hidden", "true");
  heart.innerHTML = iconHtml ?? "";
  const x = event?.clientX ? event.clientX - box.left : box.width / 2;
  const y = event?.clientY ? event.clientY - box.top : box.height / 2;
  heart.style.left = `${x}px`;
  heart.style.top = `${y}px`;
  host.append(heart);
  heart.addEventListener("animationend", () => heart.remove(), { once: true });
  setTimeout(() => heart.remove(), 1200);
}

// --- like and save ------------------------------------------------------------------------

export const LIKE = {
  button: "[data-like]",
  count: "[data-like-count]",
  path: "like",
  state: "liked",
  total: "likes",
  pop: true,
  failure: "That like didn’t go through. Try again.",
};

export const SAVE = {
  button: "[data-save]",
  count: "[data-save-count]",
  path: "save",
  state: "saved",
  total: "saves",
  pop: false,
  failure: "That save didn’t go through. Try again.",
  // Once a save lands: offer to put it in a collection (see the end of this file).
  afterOn: (post, body) => offerCollections(post, body.collection_id),
};

/**
 * A pressed / not pressed button backed by PUT / DELETE /api/v1/posts/{id}/<path> — like
 * (LIKE) or save (SAVE). It changes on screen at once; the server's answer settles the count.
 * Presses made while a request is out are folded into one more request for the latest wish.
 */
export class PressToggle {
  constructor(post, kind, { signedIn }) {
    this.post = post;
    this.kind = kind;
    this.signedIn = signedIn;
    this.on = this.button()?.getAttribute("aria-pressed") === "true";
    this.server = this.on;
    this.busy = false;
  }

  button() {
    return this.post.querySelector(this.kind.button);
  }

  shownCount() {
    return Number(this.button()?.querySelector(this.kind.count)?.dataset.count ?? 0);
  }

  show(on, count) {
    const button = this.button();
    if (!button) return;
    button.setAttribute("aria-pressed", String(on));
    const label = button.querySelector(this.kind.count);
    label.dataset.count = String(count);
    label.textContent = compactCount(count);
    announceCount(this.post, this.kind.total, count);
  }

  toggle() {
    return this.set(!this.on);
  }

  async set(wanted) {
    if (!this.signedIn) {
      location.assign(signInUrl());
      return;
    }
    const button = this.button();
    if (wanted !== this.on) {
      this.on = wanted;
      this.show(wanted, Math.max(0, this.shownCount() + (wanted ? 1 : -1)));
      if (wanted && this.kind.pop) {
        button?.classList.remove("is-popping");
        void button?.offsetWidth;
        button?.classList.add("is-popping");
      }
    }
    if (this.busy) return; // the loop below sends the latest wish when the first answer is in
    this.busy = true;
    try {
      while (this.server !== this.on) {
        const sending = this.on;
        const url = `/api/v1/posts/${this.post.dataset.postId}/${this.kind.path}`;
        const response = await api(sending ? "PUT" : "DELETE", url);
        if (!response.ok) throw new Error(await problem(response, this.kind.failure));
        const body = await response.json();
        this.server = body[this.kind.state];
        if (this.on === this.server) this.show(this.server, body[this.kind.total]);
        if (sending && this.server && this.on) this.kind.afterOn?.(this.post, body);
      }
    } catch (error) {
      this.on = this.server;
      this.show(this.on, Math.max(0, this.shownCount() + (this.on ? 1 : -1)));
      showToast(error instanceof Error ? error.message : this.kind.failure, "error");
    } finally {
      this.busy = false;
    }
  }
}

// --- the comments sheet ------------------------------------------------------------------

export class CommentsSheet {
  constructor({ signedIn }) {
    this.signedIn = signedIn;
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
    this.post = null;
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
    return Number(this.post?.dataset.commentCount ?? 0);
  }

  setCount(n) {
    if (!this.post) return;
    this.post.dataset.commentCount = String(n);
    const label = this.post.querySelector("[data-comment-count]");
    if (label && this.post.dataset.commentsEnabled === "true") label.textContent = compactCount(n);
    if (n === 0) this.title.textContent = "Comments";
    else this.title.textContent = n === 1 ? "1 comment" : `${n.toLocaleString()} comments`;
    announceCount(this.post, "comments", n);
  }

  /** Open the sheet on `post`'s comments (or on the note that they are off). */
  open(post) {
    if (!this.sheet) return;
    this.post = post;
    this.cursor = null;
    this.list.replaceChildren();
    this.replyTo(null);
    const enabled = post.dataset.commentsEnabled === "true";
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
    const post = this.post;
    this.loading.hidden = false;
    this.more.hidden = true;
    this.error.hidden = true;
    const query = this.cursor ? `?cursor=${encodeURIComponent(this.cursor)}` : "";
    try {
      const response = await api("GET", `/api/v1/posts/${post.dataset.postId}/comments${query}`);
      if (!response.ok) throw new Error(String(response.status));
      const page = await response.json();
      if (post !== this.post) return;
      page.items.forEach((comment) => this.list.append(this.render(comment)));
      this.cursor = page.next_cursor;
      this.more.hidden = !page.next_cursor;
      this.empty.hidden = this.list.children.length > 0;
    } catch {
      if (post === this.post) this.error.hidden = false;
    } finally {
      if (post === this.post) this.loading.hidden = true;
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
    if (!this.signedIn) reply.hidden = true;
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
    const post = this.post;
    const parent = this.parent;
    try {
      const body = { body: text };
      if (parent) body.parent_id = parent.dataset.commentId;
      const response = await api("POST", `/api/v1/posts/${post.dataset.postId}/comments`, body);
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

// --- sharing -----------------------------------------------------------------------------

/** Share: the Web Share API where there is one, else the sheet with the link to copy. */
export class ShareSheet {
  constructor() {
    this.sheet = document.getElementById("share-sheet");
    this.post = null;
    if (!this.sheet) return;
    this.url = this.sheet.querySelector("[data-share-url]");
    this.status = this.sheet.querySelector("[data-share-status]");
    this.openLink = this.sheet.querySelector("[data-share-open]");
    this.sheet.querySelector("[data-share-copy]").addEventListener("click", () => this.copy());
    this.url.addEventListener("focus", () => this.url.select());
  }

  async open(post) {
    const url = post.dataset.shareUrl;
    this.post = post;
    if (navigator.share) {
      try {
        await navigator.share({ title: `A post by @${post.dataset.author} on Craftreel`, url });
        this.record(post, "web_share");
      } catch (error) {
        if (error?.name !== "AbortError") this.showSheet(post, url);
      }
      return;
    }
    this.showSheet(post, url);
  }

  showSheet(post, url) {
    if (!this.sheet) return;
    this.url.value = url;
    if (this.openLink) this.openLink.href = url; // not on the post page itself
    this.status.textContent = "";
    openSheet("share-sheet");
  }

  async copy() {
    const post = this.post;
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
    if (copied && post) this.record(post, "link");
  }

  async record(post, channel) {
    try {
      const response = await api("POST", `/api/v1/posts/${post.dataset.postId}/shares`, { channel });
      if (!response.ok) return;
      const body = await response.json();
      const label = post.querySelector("[data-share-count]");
      if (label) {
        label.dataset.count = String(body.shares);
        label.textContent = compactCount(body.shares);
      }
      announceCount(post, "shares", body.shares);
    } catch {
      // The link was shared all the same; only the count missed it.
    }
  }
}

// --- views -------------------------------------------------------------------------------

/**
 * The view beacon of one post's video: wall-clock time watched while it plays (the caller
 * feeds `tick()` from timeupdate and `resetClock()` on play / pause), sent once past 3 s and
 * again with `completed` once 90% of the duration has played. The server keeps the longest.
 */
export class ViewBeacon {
  constructor(postId, video, duration) {
    this.postId = postId;
    this.video = video;
    this.duration = duration; // () => seconds, 0 when not known
    this.watchedMs = 0;
    this.lastTick = 0;
    this.viewSent = false;
    this.completeSent = false;
    this.reportedMs = 0;
  }

  resetClock() {
    this.lastTick = 0;
  }

  tick() {
    const video = this.video;
    if (!video) return;
    if (!video.paused && !video.seeking) {
      const now = performance.now();
      // Wall-clock time between ticks while playing (ticks come every ~250 ms).
      if (this.lastTick) this.watchedMs += Math.min(1000, now - this.lastTick);
      this.lastTick = now;
    }
    if (!this.viewSent && this.watchedMs >= VIEW_AFTER_MS) {
      this.viewSent = true;
      this.report();
    }
    const duration = this.duration();
    if (duration && !this.completeSent && this.watchedMs >= duration * 1000 * COMPLETE_RATIO) {
      this.complete();
    }
  }

  complete() {
    if (this.completeSent || this.watchedMs < VIEW_AFTER_MS) return;
    this.completeSent = true;
    this.report({ completed: true });
  }

  /** Send the time watched so far (once past 3 s, and only when it grew). */
  report({ completed = false, keepalive = false } = {}) {
    if (!this.video || this.watchedMs < VIEW_AFTER_MS) return;
    const watched = Math.round(this.watchedMs);
    if (!completed && watched <= this.reportedMs) return;
    this.reportedMs = watched;
    const body = { watched_ms: watched, position_s: this.video.currentTime || 0, completed };
    api("POST", `/api/v1/posts/${this.postId}/views`, body, { keepalive }).catch(() => {
      // A lost beacon loses one view's count, never anything the person sees.
    });
  }
}

// --- collections: "Add to a collection" after a save ----------------------------------------

const CLOSE_ICON =
  '<svg class="icon" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" ' +
  'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">' +
  '<path d="M6 6l12 12M18 6 6 18"/></svg>';
const MAX_COLLECTION_NAME = 60;
const COLLECTION_PAGES = 10; // 50 a page: more collections than anyone keeps

/** After a save: a toast saying so, with a button that opens the collections sheet. */
export function offerCollections(post, collectionId = null) {
  const toast = showToast("Saved.", "success");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "toast-action";
  button.dataset.collectionOffer = "";
  button.textContent = "Add to a collection";
  button.addEventListener("click", () => {
    toast.querySelector("[data-toast-close]")?.click();
    CollectionSheet.shared().open(post, collectionId);
  });
  toast.querySelector(".toast-message")?.after(button);
  return toast;
}

/**
 * The sheet listing my collections (GET /api/v1/collections) and a "New collection" field:
 * choosing one files the post there (PUT /api/v1/posts/{id}/save {collection_id}). Built on
 * first use, with the markup of the sheet macro in macros.html.
 */
export class CollectionSheet {
  static shared() {
    CollectionSheet.instance ??= new CollectionSheet();
    return CollectionSheet.instance;
  }

  constructor() {
    const sheet = document.createElement("dialog");
    sheet.className = "sheet collection-sheet";
    sheet.id = "collection-sheet";
    sheet.setAttribute("aria-labelledby", "collection-sheet-title");
    sheet.innerHTML = `
      <div class="sheet-handle" aria-hidden="true"></div>
      <header class="sheet-header">
        <h2 class="sheet-title" id="collection-sheet-title">Add to a collection</h2>
        <form method="dialog">
          <button class="btn-icon" type="submit" data-sheet-close aria-label="Close">${CLOSE_ICON}</button>
        </form>
      </header>
      <div class="sheet-body">
        <p class="collection-status" data-collection-status role="status"></p>
        <ul class="collection-list" role="list" data-collection-list></ul>
        <form class="collection-new" data-collection-new novalidate>
          <label class="field-label" for="collection-new-name">New collection</label>
          <div class="collection-new-row">
            <input class="input" id="collection-new-name" name="name" maxlength="${MAX_COLLECTION_NAME}"
              autocomplete="off" placeholder="e.g. Glaze ideas" aria-describedby="collection-new-error">
            <button class="btn btn-primary" type="submit"><span class="spinner" aria-hidden="true"></span>Create</button>
          </div>
          <p class="field-error" id="collection-new-error" data-collection-error hidden></p>
        </form>
        <a class="btn btn-ghost btn-block" href="/saved">See everything you saved</a>
      </div>`;
    document.body.append(sheet);
    this.sheet = sheet;
    this.status = sheet.querySelector("[data-collection-status]");
    this.list = sheet.querySelector("[data-collection-list]");
    this.form = sheet.querySelector("[data-collection-new]");
    this.field = this.form.querySelector("input[name=name]");
    this.error = sheet.querySelector("[data-collection-error]");
    this.post = null;
    this.current = null;
    this.busy = false;
    this.list.addEventListener("click", (event) => {
      const choice = event.target.closest("[data-collection-id]");
      if (choice) this.choose(choice.dataset.collectionId, choice.dataset.name);
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.create();
    });
    this.field.addEventListener("input", () => this.showError(""));
  }

  async open(post, collectionId = null) {
    this.post = post;
    this.current = collectionId;
    this.field.value = "";
    this.showError("");
    this.list.replaceChildren();
    this.status.textContent = "Loading your collections…";
    openSheet(this.sheet.id);
    try {
      const collections = await this.load();
      if (post !== this.post) return;
      collections.forEach((c) => this.list.append(this.row(c)));
      this.status.textContent = collections.length ? "" : "No collections yet. Make one below.";
    } catch {
      if (post === this.post) this.status.textContent = "Your collections didn’t load. Try again.";
    }
  }

  async load() {
    const found = [];
    let cursor = null;
    for (let page = 0; page < COLLECTION_PAGES; page += 1) {
      const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
      const response = await api("GET", `/api/v1/collections?limit=50${query}`);
      if (!response.ok) throw new Error(String(response.status));
      const body = await response.json();
      found.push(...body.items);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return found;
  }

  row(collection) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "collection-choice";
    button.dataset.collectionId = collection.id;
    button.dataset.name = collection.name;
    button.setAttribute("aria-pressed", String(collection.id === this.current));
    const name = document.createElement("span");
    name.className = "collection-choice-name";
    name.textContent = collection.name;
    const count = document.createElement("span");
    count.className = "collection-choice-count";
    count.textContent = collection.saves === 1 ? "1 post" : `${compactCount(collection.saves)} posts`;
    button.append(name, count);
    item.append(button);
    return item;
  }

  showError(message) {
    this.error.textContent = message;
    this.error.hidden = !message;
    if (message) this.field.setAttribute("aria-invalid", "true");
    else this.field.removeAttribute("aria-invalid");
  }

  async create() {
    const name = this.field.value.split(/\s+/).filter(Boolean).join(" ");
    if (!name) {
      this.showError("Give the collection a name.");
      this.field.focus();
      return;
    }
    if (this.busy) return;
    this.busy = true;
    const button = this.form.querySelector("button[type=submit]");
    button.disabled = true;
    button.classList.add("is-busy");
    try {
      const response = await api("POST", "/api/v1/collections", { name });
      if (!response.ok) {
        this.showError(await problem(response, "That collection couldn’t be made. Try again."));
        this.field.focus();
        return;
      }
      const made = await response.json();
      this.showError("");
      await this.file(made.id, made.name);
    } catch {
      this.showError("You seem to be offline. Try again in a moment.");
    } finally {
      this.busy = false;
      button.disabled = false;
      button.classList.remove("is-busy");
    }
  }

  async choose(collectionId, name) {
    if (this.busy) return;
    this.busy = true;
    try {
      await this.file(collectionId, name);
    } finally {
      this.busy = false;
    }
  }

  /** Put the post in the collection, then close the sheet and say so. */
  async file(collectionId, name) {
    const post = this.post;
    try {
      const response = await api("PUT", `/api/v1/posts/${post.dataset.postId}/save`, {
        collection_id: collectionId,
      });
      if (!response.ok) throw new Error(await problem(response, "That didn’t go through. Try again."));
      this.current = collectionId;
      closeSheet(this.sheet);
      showToast(`Saved to “${name}”.`, "success");
    } catch (error) {
      this.status.textContent = error instanceof Error ? error.message : "That didn’t go through.";
    }
  }
}
