// The composer (/compose) and the drafts list (/drafts).
//
// The composer is a plain form that works without JavaScript. This module turns it into an
// editor that never loses typing:
// - a new post's draft is made at once (POST /api/v1/posts) and the address becomes
//   /compose/{id};
// - every edit is autosaved about a second later (PATCH /api/v1/posts/{id}); the app bar says
//   "Saving…", "Saved" or "Offline — will retry", and a failed save is retried (with growing
//   pauses, and as soon as the browser is online again);
// - until the server has acknowledged them, the edits are also kept in localStorage under the
//   post's id, and put back if the page is opened again;
// - steps (chapters) are added at the preview player's current time, typed as "1:42", edited,
//   removed and kept in time order; materials are added and removed a line at a time;
// - Publish, "Publish when ready" and Schedule call the JSON API after a last save.
// Requests carry the session cookie and the page's CSRF token (X-CSRF-Token).

import { showToast } from "/static/js/app.js";
import { formatTime, mountPlayer } from "/static/js/player.js";

const SAVE_DELAY_MS = 1000;
const RETRY_DELAYS_MS = [2000, 4000, 8000, 15000, 30000];
const POLL_MS = 2000;
const SLOW_POLL_MS = 6000;
const SLOW_AFTER_MS = 3 * 60 * 1000;
const LOCAL_PREFIX = "craftreel:compose:";
const NEXT_TOAST_KEY = "craftreel:next-toast";
// uploader.js lists finished uploads under this key; one that became a post leaves the list.
const FINISHED_UPLOADS_KEY = "craftreel:finished-uploads";

const SAVE_WORDS = {
  idle: "",
  dirty: "Unsaved changes",
  saving: "Saving…",
  saved: "Saved",
  offline: "Offline — will retry",
  error: "Not saved",
  signedout: "Signed out — not saved",
};

// --- small helpers ---------------------------------------------------------------------

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

/** A JSON API call: {ok, status, data, error} or {offline: true} when nothing answered. */
async function api(method, url, body, { keepalive = false } = {}) {
  let response;
  try {
    response = await fetch(url, {
      method,
      credentials: "same-origin",
      cache: "no-store",
      keepalive,
      headers: {
        Accept: "application/json",
        "Content-Type": "application/json",
        "X-CSRF-Token": csrfToken(),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    return { offline: true };
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  return { ok: response.ok, status: response.status, data, error: data?.error ?? null };
}

function retryable(result) {
  return result.offline || result.status >= 500 || result.status === 429 || result.status === 408;
}

/** "1:42" → 102, "1:02:03" → 3723, "95" → 95, "1:42.5" → 102.5; NaN for anything else. */
export function parseTime(text) {
  const parts = String(text).trim().split(":");
  if (parts.length < 1 || parts.length > 3) return NaN;
  if (parts.some((p) => !/^\d+(\.\d+)?$/.test(p))) return NaN;
  const last = Number(parts[parts.length - 1]);
  const whole = parts.slice(0, -1);
  if (whole.some((p) => p.includes("."))) return NaN;
  if (parts.length > 1 && last >= 60) return NaN;
  if (parts.length === 3 && Number(parts[1]) >= 60) return NaN;
  return whole.reduce((total, part, i) => total + Number(part) * 60 ** (whole.length - i), last);
}

/** A datetime-local value ("2025-06-01T09:30") as ISO 8601 with this browser's offset. */
export function isoWithOffset(localValue) {
  const date = new Date(localValue);
  if (!localValue || Number.isNaN(date.getTime())) return null;
  const minutes = -date.getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const pad = (n) => String(Math.floor(n)).padStart(2, "0");
  const seconds = localValue.length === 16 ? `${localValue}:00` : localValue;
  return `${seconds}${sign}${pad(Math.abs(minutes) / 60)}:${pad(Math.abs(minutes) % 60)}`;
}

function localDateTimeValue(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

const LONG_TIME = { weekday: "short", day: "numeric", month: "short", hour: "numeric", minute: "2-digit" };

/** Server-rendered UTC times (<time data-local-time>) in this browser's time zone. */
export function showLocalTimes(root = document) {
  for (const el of root.querySelectorAll("time[data-local-time]")) {
    const date = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    const options =
      el.dataset.localStyle === "date" ? { day: "numeric", month: "short", year: "numeric" } : LONG_TIME;
    el.textContent = new Intl.DateTimeFormat(undefined, options).format(date);
    el.title = date.toString();
  }
}

/** A toast for the next page (a navigation follows). */
function toastAfterNavigation(message, kind = "success") {
  try {
    sessionStorage.setItem(NEXT_TOAST_KEY, JSON.stringify({ message, kind }));
  } catch {
    // storage refused: the next page still says what happened in its own way
  }
}

/** The toast a previous page left for this one. */
export function showPendingToast() {
  try {
    const raw = sessionStorage.getItem(NEXT_TOAST_KEY);
    if (!raw) return;
    sessionStorage.removeItem(NEXT_TOAST_KEY);
    const { message, kind } = JSON.parse(raw);
    if (message) showToast(message, kind);
  } catch {
    // nothing to show
  }
}

const local = {
  get(key) {
    try {
      return JSON.parse(localStorage.getItem(LOCAL_PREFIX + key) ?? "null");
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(LOCAL_PREFIX + key, JSON.stringify({ ...value, at: Date.now() }));
    } catch {
      // full or refused storage: autosave still runs, a reload just can't restore
    }
  },
  remove(key) {
    try {
      localStorage.removeItem(LOCAL_PREFIX + key);
    } catch {
      // nothing kept
    }
  },
};

function forgetFinishedUploads(mediaIds) {
  try {
    const entries = JSON.parse(localStorage.getItem(FINISHED_UPLOADS_KEY) ?? "[]");
    const left = entries.filter((entry) => !mediaIds.includes(entry?.id));
    if (left.length !== entries.length) localStorage.setItem(FINISHED_UPLOADS_KEY, JSON.stringify(left));
  } catch {
    // the create page just lists it a while longer
  }
}

const HASHTAG = /(?<![\p{L}\p{N}_#&])#([\p{L}\p{N}_]{1,60})/gu;
const MENTION = /(?<![\p{L}\p{N}_@])@([A-Za-z0-9_.]{2,30})/g;

function tagsIn(caption) {
  const tags = [...caption.matchAll(HASHTAG)].map((m) => m[1].toLowerCase()).filter((t) => !/^\d+$/.test(t));
  const mentions = [...caption.matchAll(MENTION)].map((m) => m[1].replace(/\.+$/, "").toLowerCase());
  return { tags: [...new Set(tags)], mentions: [...new Set(mentions)] };
}

// --- the composer ------------------------------------------------------------------------

class Composer {
  constructor(form) {
    this.form = form;
    this.postId = form.dataset.postId || null;
    this.status = form.dataset.status;
    this.kind = form.dataset.kind;
    this.duration = Number(form.dataset.duration) || null;
    this.mediaIds = (form.dataset.mediaIds || "").split(",").filter(Boolean);
    this.localKey = this.postId || `new:${this.mediaIds.join(",")}`;
    this.media = new Map();
    this.player = null;
    this.saveTimer = 0;
    this.retryTimer = 0;
    this.retries = 0;
    this.saving = null;
    this.saveAgain = false;
    this.creating = null;
    this.ackKey = null;
    this.pollStarted = Date.now();

    const $ = (selector) => form.querySelector(selector);
    this.parts = {
      state: document.querySelector("[data-save-state]"),
      problem: $("[data-composer-problem]"),
      preview: $("[data-composer-preview]"),
      mediaStatus: $("[data-media-status]"),
      caption: $("[data-caption]"),
      captionHints: $("[data-caption-hints]"),
      chapterList: $("[data-chapter-list]"),
      addNow: $("[data-chapter-add-now]"),
      addChapter: $("[data-chapter-add]"),
      materialList: $("[data-material-list]"),
      addMaterial: $("[data-material-add]"),
      comments: $("[data-comments]"),
      whenReady: $("[data-when-ready]"),
      schedule: $("[data-schedule]"),
      scheduleAt: $("[data-schedule-at]"),
      tzOffset: $("[data-tz-offset]"),
      heading: $("[data-composer-heading]"),
      statusBadge: $("[data-post-status]"),
    };
  }

  start() {
    for (const blank of this.form.querySelectorAll(".is-blank")) blank.remove();
    this.renumber();
    this.prepareSchedule();
    showLocalTimes(this.form);
    this.showCaptionHints();

    let initialMedia = [];
    try {
      initialMedia = JSON.parse(document.getElementById("composer-media")?.textContent ?? "[]");
    } catch {
      initialMedia = [];
    }
    for (const media of initialMedia) this.showMedia(media);
    if (initialMedia.some((m) => !["ready", "failed"].includes(m.status))) this.poll();

    this.ackKey = JSON.stringify(this.snapshot());
    const kept = local.get(this.localKey);
    if (kept?.fields) {
      this.applyRaw(kept.fields);
      if (JSON.stringify(this.snapshot()) !== this.ackKey || this.hasUnfinishedRows()) {
        showToast("Your changes from earlier weren’t saved yet; they’re back.", "info");
      }
    }

    this.listen();
    if (!this.postId) this.create();
    else if (JSON.stringify(this.snapshot()) !== this.ackKey) this.changed();
  }

  // -- reading and writing the form --

  chapterRows() {
    return [...(this.parts.chapterList?.querySelectorAll("[data-chapter-row]") ?? [])];
  }

  materialRows() {
    return [...(this.parts.materialList?.querySelectorAll("[data-material-row]") ?? [])];
  }

  rowTime(row) {
    return parseTime(row.querySelector("[data-chapter-time]").value);
  }

  /** What the server keeps: complete steps in time order, materials that say something. */
  snapshot() {
    const chapters = this.chapterRows()
      .map((row) => ({ at: this.rowTime(row), title: row.querySelector("[data-chapter-title]").value.trim() }))
      .filter((c) => Number.isFinite(c.at) && c.title && (!this.duration || c.at < this.duration))
      .sort((a, b) => a.at - b.at)
      .filter((c, i, all) => i === 0 || Math.round(c.at * 10) !== Math.round(all[i - 1].at * 10));
    const body = {
      caption: this.parts.caption?.value ?? "",
      materials: this.materialRows()
        .map((row) => row.querySelector("[data-material-input]").value.trim())
        .filter(Boolean),
      visibility: this.form.querySelector('input[name="visibility"]:checked')?.value ?? "public",
      comments_enabled: this.parts.comments ? this.parts.comments.checked : true,
    };
    if (this.parts.chapterList) body.chapters = chapters;
    return body;
  }

  /** Everything as typed, for the local copy (half-typed rows included). */
  raw() {
    return {
      caption: this.parts.caption?.value ?? "",
      chapters: this.chapterRows().map((row) => [
        row.querySelector("[data-chapter-time]").value,
        row.querySelector("[data-chapter-title]").value,
      ]),
      materials: this.materialRows().map((row) => row.querySelector("[data-material-input]").value),
      visibility: this.form.querySelector('input[name="visibility"]:checked')?.value,
      comments_enabled: this.parts.comments?.checked,
    };
  }

  applyRaw(fields) {
    if (this.parts.caption && typeof fields.caption === "string") {
      this.parts.caption.value = fields.caption;
      this.parts.caption.dispatchEvent(new Event("input", { bubbles: true }));
    }
    if (this.parts.chapterList && Array.isArray(fields.chapters)) {
      this.chapterRows().forEach((row) => row.remove());
      for (const [time, title] of fields.chapters) this.addChapterRow(time, title, { focus: false });
    }
    if (this.parts.materialList && Array.isArray(fields.materials)) {
      this.materialRows().forEach((row) => row.remove());
      for (const value of fields.materials) this.addMaterialRow(value, { focus: false });
    }
    if (fields.visibility) {
      const radio = this.form.querySelector(`input[name="visibility"][value="${CSS.escape(fields.visibility)}"]`);
      if (radio) radio.checked = true;
    }
    if (this.parts.comments && typeof fields.comments_enabled === "boolean") {
      this.parts.comments.checked = fields.comments_enabled;
    }
    this.showCaptionHints();
    this.renumber();
  }

  hasUnfinishedRows() {
    return this.chapterRows().some((row) => {
      const time = row.querySelector("[data-chapter-time]").value.trim();
      const title = row.querySelector("[data-chapter-title]").value.trim();
      return (time || title) && !(Number.isFinite(parseTime(time)) && title);
    });
  }

  // -- rows --

  addChapterRow(time = "", title = "", { focus = true, after = null } = {}) {
    const row = document.getElementById("chapter-row-template").content.firstElementChild.cloneNode(true);
    row.querySelector("[data-chapter-time]").value = time;
    row.querySelector("[data-chapter-title]").value = title;
    if (after) after.after(row);
    else this.parts.chapterList.append(row);
    this.renumber();
    if (focus) {
      const target = row.querySelector(time === "" ? "[data-chapter-time]" : "[data-chapter-title]");
      target.focus();
    }
    return row;
  }

  addMaterialRow(value = "", { focus = true, after = null } = {}) {
    const row = document.getElementById("material-row-template").content.firstElementChild.cloneNode(true);
    row.querySelector("[data-material-input]").value = value;
    if (after) after.after(row);
    else this.parts.materialList.append(row);
    this.renumber();
    if (focus) row.querySelector("[data-material-input]").focus();
    return row;
  }

  renumber() {
    this.chapterRows().forEach((row, i) => {
      const n = i + 1;
      row.querySelector('[data-row-label="time"]').textContent = `Step ${n} time`;
      row.querySelector('[data-row-label="title"]').textContent = `Step ${n} title`;
      row.querySelector("[data-row-remove]").setAttribute("aria-label", `Remove step ${n}`);
    });
    this.materialRows().forEach((row, i) => {
      row.querySelector('[data-row-label="material"]').textContent = `Material ${i + 1}`;
      row.querySelector("[data-row-remove]").setAttribute("aria-label", `Remove material ${i + 1}`);
    });
  }

  /** Steps in time order (rows without a valid time last); focus stays where it was. */
  sortChapters() {
    const focused = document.activeElement;
    const rows = this.chapterRows();
    const keyed = rows.map((row, i) => ({ row, i, at: this.rowTime(row) }));
    keyed.sort((a, b) => {
      const fa = Number.isFinite(a.at);
      const fb = Number.isFinite(b.at);
      if (fa && fb && a.at !== b.at) return a.at - b.at;
      if (fa !== fb) return fa ? -1 : 1;
      return a.i - b.i;
    });
    if (keyed.some((k, i) => k.row !== rows[i])) {
      for (const { row } of keyed) this.parts.chapterList.append(row);
      if (focused instanceof HTMLElement && this.form.contains(focused)) focused.focus();
    }
    this.renumber();
  }

  /** Say what is wrong with each step (a time that isn't one, past the end, taken). */
  checkChapters({ titles = false } = {}) {
    const seen = new Map();
    for (const row of this.chapterRows()) {
      const timeInput = row.querySelector("[data-chapter-time]");
      const titleInput = row.querySelector("[data-chapter-title]");
      const text = timeInput.value.trim();
      const at = parseTime(text);
      let problem = "";
      let field = null;
      if (text && !Number.isFinite(at)) {
        problem = "Write the time like 1:42 or 1:02:03.";
        field = timeInput;
      } else if (Number.isFinite(at) && this.duration && at >= this.duration) {
        problem = `The video is ${formatTime(this.duration)} long; pick an earlier time.`;
        field = timeInput;
      } else if (Number.isFinite(at) && seen.has(Math.round(at * 10))) {
        problem = `Another step already starts at ${formatTime(at)}.`;
        field = timeInput;
      } else if (titles && Number.isFinite(at) && !titleInput.value.trim()) {
        problem = "Give this step a title.";
        field = titleInput;
      } else if (titles && !text && titleInput.value.trim()) {
        problem = "Give this step a time, like 1:42.";
        field = timeInput;
      }
      if (Number.isFinite(at)) seen.set(Math.round(at * 10), row);
      this.setRowError(row, problem, field);
    }
  }

  setRowError(row, problem, field) {
    const error = row.querySelector("[data-row-error]");
    const id = error.id || `row-error-${Math.random().toString(36).slice(2)}`;
    error.id = id;
    error.textContent = problem;
    error.hidden = !problem;
    row.classList.toggle("has-error", Boolean(problem));
    for (const input of row.querySelectorAll("input")) {
      const wrong = Boolean(problem) && input === field;
      input.toggleAttribute("aria-invalid", wrong);
      if (wrong) input.setAttribute("aria-describedby", id);
      else input.removeAttribute("aria-describedby");
    }
  }

  /** A step at the preview's current moment; its title field takes the focus. */
  addStepNow() {
    const video = this.player?.video;
    if (!video) return;
    video.pause();
    const at = Math.floor(video.currentTime);
    const taken = this.chapterRows().find((row) => Math.round(this.rowTime(row) * 10) === at * 10);
    if (taken) {
      const title = taken.querySelector("[data-chapter-title]");
      title.focus();
      title.select();
      showToast(`A step already starts at ${formatTime(at)}. Move the video to another moment first.`, "info");
      return;
    }
    const row = this.addChapterRow(formatTime(at), "", { focus: false });
    this.sortChapters();
    row.querySelector("[data-chapter-title]").focus();
    this.changed();
  }

  // -- events --

  listen() {
    const form = this.form;
    form.addEventListener("input", (event) => {
      if (event.target === this.parts.scheduleAt) return;
      if (event.target === this.parts.caption) this.showCaptionHints();
      if (event.target.matches("[data-chapter-time]")) {
        const row = event.target.closest("[data-chapter-row]");
        if (row.classList.contains("has-error")) this.checkChapters();
      }
      this.changed();
    });
    form.addEventListener("change", (event) => {
      if (event.target === this.parts.scheduleAt) return;
      if (event.target.matches("[data-chapter-time]")) {
        const at = parseTime(event.target.value);
        if (Number.isFinite(at) && Number.isInteger(at)) event.target.value = formatTime(at);
        this.sortChapters();
      }
      this.checkChapters();
      this.changed();
    });
    form.addEventListener("focusout", (event) => {
      const row = event.target.closest?.("[data-chapter-row]");
      if (row && !row.contains(event.relatedTarget)) this.checkChapters({ titles: true });
    });
    form.addEventListener("click", (event) => {
      const remove = event.target.closest("[data-row-remove]");
      if (remove) this.removeRow(remove.closest("li"));
    });
    form.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing || !(event.target instanceof HTMLInputElement)) return;
      // Enter in a row moves on (a new material, the next step) instead of sending the form.
      if (event.target.matches("[data-material-input]")) {
        event.preventDefault();
        const row = event.target.closest("[data-material-row]");
        if (event.target.value.trim()) this.addMaterialRow("", { after: row });
      } else if (event.target.matches("[data-chapter-time]")) {
        event.preventDefault();
        event.target.closest("[data-chapter-row]").querySelector("[data-chapter-title]").focus();
      } else if (event.target.matches("[data-chapter-title]")) {
        event.preventDefault();
        event.target.dispatchEvent(new Event("change", { bubbles: true }));
      }
    });
    this.parts.addNow?.addEventListener("click", () => this.addStepNow());
    this.parts.addChapter?.addEventListener("click", () => {
      // The first step usually starts at the start; later ones need their time typed.
      const first = this.chapterRows().length === 0;
      const row = this.addChapterRow(first ? "0:00" : "", "", { focus: false });
      row.querySelector(first ? "[data-chapter-title]" : "[data-chapter-time]").focus();
      this.changed();
    });
    this.parts.addMaterial?.addEventListener("click", () => this.addMaterialRow(""));
    form.querySelector("[data-when-ready-cancel]")?.addEventListener("click", () => {
      this.parts.whenReady.hidden = true;
      form.querySelector('[data-action="publish"]')?.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const action = event.submitter?.value || "save";
      this.act(action, event.submitter);
    });
    window.addEventListener("online", () => {
      if (this.parts.state?.dataset.state === "offline") this.save();
    });
    // Leaving with edits not yet acknowledged: one last try (the local copy stays anyway).
    // Not while saves are failing for want of a signal: the local copy carries them then.
    window.addEventListener("pagehide", () => {
      if (!this.postId || !this.autosaves()) return;
      if (this.parts.state?.dataset.state === "offline") return;
      const body = this.snapshot();
      if (JSON.stringify(body) !== this.ackKey) {
        api("PATCH", `/api/v1/posts/${this.postId}`, body, { keepalive: true });
      }
    });
    document.querySelector("[data-delete-form]")?.addEventListener("submit", () => {
      local.remove(this.localKey);
      this.deleting = true;
    });
  }

  removeRow(row) {
    if (!row) return;
    const list = row.parentElement;
    const rows = [...list.children];
    const next = rows[rows.indexOf(row) + 1] ?? rows[rows.indexOf(row) - 1];
    row.remove();
    this.renumber();
    this.checkChapters();
    const focusTarget =
      next?.querySelector("input") ??
      (list === this.parts.chapterList ? this.parts.addNow ?? this.parts.addChapter : this.parts.addMaterial);
    if (focusTarget && !focusTarget.disabled) focusTarget.focus();
    else (this.parts.addChapter ?? this.parts.addMaterial)?.focus();
    this.changed();
  }

  showCaptionHints() {
    const hints = this.parts.captionHints;
    if (!hints || !this.parts.caption) return;
    const { tags, mentions } = tagsIn(this.parts.caption.value);
    const parts = [];
    if (tags.length) parts.push(`Tags: ${tags.map((t) => `#${t}`).join(" ")}`);
    if (mentions.length) parts.push(`Mentions: ${mentions.map((m) => `@${m}`).join(" ")}`);
    const text = parts.join(" · ");
    if (hints.textContent !== text) hints.textContent = text;
    hints.hidden = !text;
  }

  // -- saving --

  /** Published posts change only when "Save changes" is pressed; the rest save by themselves. */
  autosaves() {
    return this.status !== "published";
  }

  changed() {
    if (this.deleting) return;
    clearTimeout(this.saveTimer);
    if (this.postId && JSON.stringify(this.snapshot()) === this.ackKey && !this.hasUnfinishedRows()) {
      // Back to what the server has (or a change event for a value already saved).
      local.remove(this.localKey);
      if (!this.saving && this.parts.state?.dataset.state !== "offline") this.setState("saved");
      return;
    }
    local.set(this.localKey, { fields: this.raw() });
    if (!this.autosaves()) {
      const dirty = JSON.stringify(this.snapshot()) !== this.ackKey;
      this.setState(dirty ? "dirty" : "saved");
      return;
    }
    if (this.parts.state?.dataset.state !== "offline") this.setState("dirty");
    this.saveTimer = setTimeout(() => this.save(), SAVE_DELAY_MS);
  }

  setState(state, detail = "") {
    const el = this.parts.state;
    if (!el) return;
    el.dataset.state = state;
    const text = detail ? `${SAVE_WORDS[state]}: ${detail}` : SAVE_WORDS[state];
    if (el.textContent !== text) el.textContent = text;
    el.title = text;
  }

  problem(text) {
    const el = this.parts.problem;
    if (!el) return;
    el.replaceChildren();
    if (text) {
      if (typeof text === "string") el.textContent = text;
      else el.append(...text);
    }
    el.hidden = !text;
  }

  /** Make the draft (a new post): once, however many saves ask for it. */
  create() {
    this.creating ??= this.createOnce().finally(() => {
      this.creating = null;
    });
    return this.creating;
  }

  async createOnce() {
    if (this.postId) return true;
    this.setState("saving");
    const body = { media_ids: this.mediaIds, ...this.snapshot() };
    const result = await api("POST", "/api/v1/posts", body);
    if (retryable(result)) {
      this.retryLater();
      return false;
    }
    if (result.status === 401) {
      this.setState("signedout");
      this.problem("You were signed out. Sign in again in another tab; your writing is kept on this device.");
      return false;
    }
    if (result.status === 409 && result.error?.code === "media_in_use") {
      const existing = await this.findDraftFor(this.mediaIds[0]);
      if (existing) {
        window.location.replace(`/compose/${existing}`);
        return false;
      }
      const link = document.createElement("a");
      link.href = "/drafts";
      link.textContent = "See your drafts";
      this.problem(["This upload already belongs to a post. ", link, "."]);
      this.setState("error");
      return false;
    }
    if (!result.ok) {
      this.setState("error");
      this.problem(result.error?.message ?? "The draft couldn’t be made. Try again.");
      return false;
    }
    const post = result.data;
    const kept = local.get(this.localKey);
    local.remove(this.localKey);
    this.postId = post.id;
    this.localKey = post.id;
    if (kept) local.set(this.localKey, kept);
    this.status = post.status;
    this.form.dataset.postId = post.id;
    this.form.dataset.status = post.status;
    this.form.action = `/compose/${post.id}`;
    this.form.querySelectorAll("[data-new-media]").forEach((input) => input.remove());
    history.replaceState(null, "", `/compose/${post.id}`);
    if (this.parts.heading) this.parts.heading.textContent = "Edit draft";
    document.title = `Edit draft · Craftreel`;
    const deleteArea = document.querySelector("[data-delete-area]");
    const deleteForm = document.querySelector("[data-delete-form]");
    if (deleteForm) deleteForm.action = `/compose/${post.id}/delete`;
    if (deleteArea) deleteArea.hidden = false;
    forgetFinishedUploads(this.mediaIds);
    this.ackKey = JSON.stringify(this.acknowledged(post));
    this.afterSave();
    return true;
  }

  async findDraftFor(mediaId) {
    const result = await api("GET", "/api/v1/posts/drafts?limit=50");
    const found = result.data?.items?.find((post) => post.media.some((m) => m.id === mediaId));
    return found?.id ?? null;
  }

  /** The server's copy of a post in the shape snapshot() gives, to compare. */
  acknowledged(post) {
    const body = {
      caption: post.caption,
      materials: post.materials,
      visibility: post.visibility,
      comments_enabled: post.comments_enabled,
    };
    if (this.parts.chapterList) body.chapters = post.chapters.map((c) => ({ at: c.at, title: c.title }));
    return body;
  }

  /** Save now (pending edits first). True once the server has everything typed. */
  async save() {
    clearTimeout(this.saveTimer);
    clearTimeout(this.retryTimer);
    if (this.saving) {
      this.saveAgain = true;
      return this.saving;
    }
    this.saving = (async () => {
      let ok;
      do {
        this.saveAgain = false;
        ok = await this.saveOnce();
      } while (ok && this.saveAgain);
      return ok;
    })();
    try {
      return await this.saving;
    } finally {
      this.saving = null;
    }
  }

  async saveOnce() {
    if (!this.postId && !(await this.create())) return false;
    const body = this.snapshot();
    const key = JSON.stringify(body);
    if (key === this.ackKey) {
      this.afterSave();
      return true;
    }
    this.setState("saving");
    const result = await api("PATCH", `/api/v1/posts/${this.postId}`, body);
    if (retryable(result)) {
      this.retryLater();
      return false;
    }
    if (result.status === 401) {
      this.setState("signedout");
      this.problem("You were signed out. Sign in again in another tab; your writing is kept on this device.");
      return false;
    }
    if (result.status === 404) {
      this.setState("error");
      this.problem("This post no longer exists. It may have been deleted on another device.");
      return false;
    }
    if (!result.ok) {
      this.setState("error", result.error?.message ?? "");
      this.showServerProblem(result.error);
      return false;
    }
    this.retries = 0;
    this.ackKey = key;
    this.updateStatus(result.data);
    this.afterSave();
    return true;
  }

  afterSave() {
    const clean = JSON.stringify(this.snapshot()) === this.ackKey;
    if (clean) {
      this.setState("saved");
      this.problem("");
      if (!this.hasUnfinishedRows()) local.remove(this.localKey);
    } else if (this.autosaves()) {
      this.setState("dirty");
      clearTimeout(this.saveTimer);
      this.saveTimer = setTimeout(() => this.save(), SAVE_DELAY_MS);
    } else {
      this.setState("dirty");
    }
  }

  retryLater() {
    this.setState("offline");
    const delay = RETRY_DELAYS_MS[Math.min(this.retries, RETRY_DELAYS_MS.length - 1)];
    this.retries += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.save(), delay);
  }

  showServerProblem(error) {
    const message = error?.message ?? "Something went wrong. Try again.";
    if (error?.details?.field === "chapters") this.checkChapters({ titles: true });
    this.problem(message);
  }

  updateStatus(post) {
    if (!post?.status || post.status === this.status) return;
    this.status = post.status;
    this.form.dataset.status = post.status;
    const labels = {
      draft: ["Draft", "accent"],
      waiting: ["Publishes when ready", "info"],
      scheduled: ["Scheduled", "primary"],
      published: ["Published", "success"],
    };
    const badge = this.parts.statusBadge;
    if (badge && labels[post.status]) {
      const [text, tone] = labels[post.status];
      badge.textContent = text;
      badge.className = `badge badge-${tone}`;
    }
  }

  // -- publishing --

  busy(button, on) {
    if (!button) return;
    button.classList.toggle("htmx-request", on);
    button.disabled = on;
    button.setAttribute("aria-busy", String(on));
  }

  async act(action, button) {
    if (this.acting) return;
    this.acting = true;
    this.busy(button, true);
    try {
      await this.perform(action);
    } finally {
      this.acting = false;
      this.busy(button, false);
    }
  }

  async perform(action) {
    this.checkChapters({ titles: true });
    const wrong = this.form.querySelector(".step-row.has-error");
    if (wrong && action !== "save" && action !== "unschedule") {
      // A half-written step would be left out without a word: finish or remove it first.
      const n = this.chapterRows().indexOf(wrong) + 1;
      this.problem(`Step ${n} isn’t finished: ${wrong.querySelector("[data-row-error]").textContent}`);
      wrong.querySelector("[aria-invalid]")?.focus();
      return;
    }
    const saved = await this.save();
    if (!saved) {
      const state = this.parts.state?.dataset.state;
      if (state === "offline") {
        showToast("You’re offline. Your post is kept here and saves when you’re back online.", "error");
      } else if (this.parts.problem && !this.parts.problem.hidden) {
        this.parts.problem.scrollIntoView({ block: "center", behavior: "smooth" });
      }
      return;
    }
    if (action === "save") {
      showToast(this.status === "published" ? "Your changes are saved." : "Draft saved.", "success");
      return;
    }
    if (action === "publish") return this.publish(false);
    if (action === "publish_when_ready") return this.publish(true);
    if (action === "schedule") return this.schedule();
    if (action === "unschedule") return this.unschedule();
  }

  mediaState() {
    const all = [...this.media.values()];
    if (!all.length) return "unknown";
    if (all.some((m) => m.status === "failed")) return "failed";
    if (all.every((m) => m.playable)) return "playable";
    return "processing";
  }

  offerWhenReady() {
    const panel = this.parts.whenReady;
    if (!panel) return;
    panel.hidden = false;
    panel.scrollIntoView({ block: "nearest", behavior: "smooth" });
    panel.querySelector('[data-action="publish_when_ready"]')?.focus();
  }

  async publish(whenReady) {
    if (!whenReady && this.mediaState() === "processing") {
      this.offerWhenReady();
      return;
    }
    const result = await api("POST", `/api/v1/posts/${this.postId}/publish`, { when_ready: whenReady });
    if (result.offline) {
      showToast("You’re offline. Publish again when you’re back online.", "error");
      return;
    }
    if (result.status === 409 && result.error?.code === "media_not_ready") {
      this.offerWhenReady();
      return;
    }
    if (!result.ok) {
      this.showServerProblem(result.error);
      this.parts.problem?.scrollIntoView({ block: "center", behavior: "smooth" });
      return;
    }
    const post = result.data;
    if (post.status === "published") {
      local.remove(this.localKey);
      toastAfterNavigation("Your post is published.");
      window.location.assign(`/p/${post.id}`);
      return;
    }
    this.updateStatus(post);
    if (this.parts.whenReady) this.parts.whenReady.hidden = true;
    showToast("It goes public by itself the moment your video is ready. You can leave this page.", "success");
    this.poll();
  }

  async schedule() {
    const input = this.parts.scheduleAt;
    const at = isoWithOffset(input?.value ?? "");
    const field = input?.closest(".field");
    const say = (text) => {
      let error = field?.querySelector("[data-schedule-error]");
      if (!error && field) {
        error = document.createElement("p");
        error.className = "field-error";
        error.id = "schedule-at-error";
        error.dataset.scheduleError = "";
        field.append(error);
      }
      if (error) {
        error.textContent = text;
        error.hidden = !text;
      }
      field?.classList.toggle("has-error", Boolean(text));
      input?.toggleAttribute("aria-invalid", Boolean(text));
      const hint = field?.querySelector(".field-hint")?.id;
      input?.setAttribute("aria-describedby", [hint, text && "schedule-at-error"].filter(Boolean).join(" "));
      if (text) input?.focus();
    };
    if (!at) {
      say("Pick a date and a time.");
      return;
    }
    say("");
    const result = await api("POST", `/api/v1/posts/${this.postId}/schedule`, { at });
    if (result.offline) {
      showToast("You’re offline. Schedule again when you’re back online.", "error");
      return;
    }
    if (!result.ok) {
      if (result.error?.details?.field === "at" || result.status === 422) {
        say(result.error?.code === "validation_error" ? "Pick a date and a time." : result.error.message);
      } else {
        this.showServerProblem(result.error);
      }
      return;
    }
    local.remove(this.localKey);
    const when = new Intl.DateTimeFormat(undefined, LONG_TIME).format(new Date(result.data.scheduled_at));
    toastAfterNavigation(`Scheduled for ${when}.`);
    window.location.assign("/drafts");
  }

  async unschedule() {
    const result = await api("POST", `/api/v1/posts/${this.postId}/unschedule`);
    if (!result.ok) {
      this.showServerProblem(result.error ?? { message: "You’re offline. Try again when you’re back online." });
      return;
    }
    toastAfterNavigation("Back to a draft.", "info");
    window.location.assign(`/compose/${this.postId}`);
  }

  prepareSchedule() {
    const input = this.parts.scheduleAt;
    if (!input) return;
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const hint = input.closest(".field")?.querySelector(".field-hint");
    if (hint) hint.textContent = zone ? `In your time zone (${zone}).` : "In your time zone.";
    const soon = new Date(Date.now() + 5 * 60 * 1000);
    input.min = localDateTimeValue(soon);
    if (this.parts.tzOffset) this.parts.tzOffset.value = String(new Date().getTimezoneOffset());
    input.addEventListener("change", () => {
      const date = new Date(input.value);
      if (this.parts.tzOffset && !Number.isNaN(date.getTime())) {
        this.parts.tzOffset.value = String(date.getTimezoneOffset());
      }
    });
    // A scheduled post's time, shown in this browser's zone.
    const scheduled = this.form.querySelector(".composer-status time[datetime]");
    if (scheduled && !input.value) {
      const date = new Date(scheduled.getAttribute("datetime"));
      if (!Number.isNaN(date.getTime())) input.value = localDateTimeValue(date);
    }
  }

  // -- the media --

  async poll() {
    clearTimeout(this.pollTimer);
    const pending = this.mediaIds.filter((id) => !["ready", "failed"].includes(this.media.get(id)?.status));
    for (const id of pending) {
      try {
        const response = await fetch(`/api/v1/media/${encodeURIComponent(id)}`, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
          cache: "no-store",
        });
        if (response.ok) this.showMedia(await response.json());
      } catch {
        // a blip: ask again shortly
      }
    }
    if (this.status === "waiting" && this.mediaState() !== "processing") await this.checkPublished();
    const still = this.mediaIds.some((id) => !["ready", "failed"].includes(this.media.get(id)?.status));
    if (still || this.status === "waiting") {
      const slow = Date.now() - this.pollStarted > SLOW_AFTER_MS;
      this.pollTimer = setTimeout(() => this.poll(), slow ? SLOW_POLL_MS : POLL_MS);
    }
  }

  /** A post waiting for its video went public (the server did it): say so. */
  async checkPublished() {
    const result = await api("GET", `/api/v1/posts/${this.postId}`);
    if (!result.ok || result.data.status !== "published") return;
    this.updateStatus(result.data);
    local.remove(this.localKey);
    const link = document.createElement("a");
    link.href = `/p/${this.postId}`;
    link.textContent = "View post";
    const note = this.parts.problem;
    if (note) {
      note.classList.remove("is-danger");
      note.classList.add("is-success");
      note.replaceChildren("Your video is ready and the post is live. ", link);
      note.hidden = false;
    }
    showToast("Your post is live.", "success");
  }

  showMedia(media) {
    if (!media?.id) return;
    this.media.set(media.id, media);
    if (media.duration_s) this.duration = media.duration_s;
    const first = this.media.get(this.mediaIds[0]) ?? media;
    this.showMediaStatus();
    if (this.kind === "photos" || this.kind === "image") {
      this.showPhoto(media);
      return;
    }
    if (media.id !== first.id || !media.playable) return;
    if (this.player) this.player.update(media);
    else {
      this.player = mountPlayer(this.parts.preview, media, { refresh: () => this.freshMedia(media.id) });
      if (this.parts.addNow) this.parts.addNow.disabled = false;
    }
  }

  async freshMedia(id) {
    const response = await fetch(`/api/v1/media/${encodeURIComponent(id)}`, { credentials: "same-origin" });
    return response.ok ? response.json() : null;
  }

  showPhoto(media) {
    const index = this.mediaIds.indexOf(media.id);
    const slot = this.parts.preview?.querySelectorAll(".composer-photos > li")[index];
    const url = media.variants?.[0]?.url ?? media.poster_url;
    if (!slot || !url || slot.querySelector("img")) return;
    const img = document.createElement("img");
    img.src = url;
    img.alt = `Photo ${index + 1}`;
    slot.replaceChildren(img);
  }

  showMediaStatus() {
    const el = this.parts.mediaStatus;
    if (!el) return;
    const state = this.mediaState();
    const all = [...this.media.values()];
    const ready = all.length && all.every((m) => m.status === "ready");
    const noun = this.kind === "photos" || this.kind === "image" ? "photos" : this.kind;
    let badge;
    let text;
    let tone;
    if (state === "failed") {
      const failed = all.find((m) => m.status === "failed");
      [badge, tone] = ["Failed", "danger"];
      text = `${failed?.failure?.message || "This upload could not be processed."} Upload it again.`;
    } else if (ready) {
      [badge, tone, text] = ["Ready", "success", "Ready to publish."];
    } else if (state === "playable") {
      [badge, tone] = ["Playable", "info"];
      text = "Playable now; sharper versions are on the way. You can publish.";
    } else {
      [badge, tone] = ["Processing", "info"];
      text = `Your ${noun} is processing. Keep writing: you can publish when it is ready.`;
    }
    const key = ready ? "ready" : state;
    if (el.dataset.mediaState === key && el.textContent.trim()) return; // unchanged: no re-announcement
    el.dataset.mediaState = key;
    const span = document.createElement("span");
    span.className = `badge badge-${tone}`;
    span.textContent = badge;
    const words = document.createElement("span");
    words.textContent = text;
    el.replaceChildren(span, words);
  }
}

// --- start -----------------------------------------------------------------------------------

function boot() {
  showPendingToast();
  showLocalTimes();
  const form = document.querySelector("[data-composer]");
  if (form) {
    const composer = new Composer(form);
    composer.start();
    form.composer = composer; // for tests and the console
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", boot, { once: true });
} else {
  boot();
}
