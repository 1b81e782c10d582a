// The upload screen (/create): resumable uploads over tus, their processing, a preview.
//
// - Each picked file becomes a card and a tus upload to /api/v1/uploads in 8 MiB chunks,
//   retried through a patchy signal, paused and resumed, or cancelled (tus termination).
// - tus-js-client remembers unfinished uploads in localStorage (fingerprint → upload URL).
//   After a reload the page lists them; browsers cannot keep a File across a reload, so the
//   person picks the same file again and the upload carries on from the server's offset.
// - A finished upload is polled at GET /api/v1/media/{id} until it is ready or failed; the
//   first playable rung shows in the player (player.js). Finished uploads are remembered for
//   a day, so a reload still shows their status.
//
// tus-js-client is the vendored browser bundle (/static/vendor/tus.min.js, window.tus).

import { showToast } from "/static/js/app.js";
import { canPlayHls, mountPlayer } from "/static/js/player.js";

const CHUNK_SIZE = 8 * 1024 * 1024;
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000];
const MAX_ACTIVE = 3;
const POLL_MS = 1500;
const SLOW_POLL_MS = 5000;
const SLOW_AFTER_MS = 3 * 60 * 1000;
const SPEED_WINDOW_MS = 4000;
const REMEMBER_KEY = "craftreel:finished-uploads";
const REMEMBER_MS = 24 * 60 * 60 * 1000;

const ACCEPT = { video: "video/*", image: "image/*", audio: "audio/*" };

const WORDS = {
  video: {
    noun: "video",
    checking: "Checking your video…",
    making: "Making the first version…",
    more: "Playable now. Making the sharper versions…",
    ready: "Ready: every size is made, with seek previews.",
  },
  image: {
    noun: "photo",
    checking: "Checking your photo…",
    making: "Making sizes for every screen…",
    more: "Making sizes for every screen…",
    ready: "Ready: sized for every screen.",
  },
  audio: {
    noun: "sound",
    checking: "Checking your sound…",
    making: "Making the streaming version…",
    more: "Playable now. Drawing the waveform…",
    ready: "Ready to play.",
  },
};

// What a failure code means for the person who uploaded; the server's own message is the
// fallback (it often names the limit that was hit).
const FAILURES = {
  empty: "That file is empty. Pick the file again, or another one.",
  not_media: "That file isn’t a video, photo or sound we can use.",
  type_mismatch: null, // the server's message names what the file really is
  corrupt: "The file looks damaged or incomplete. Try saving or exporting it again.",
  no_video_stream: "That file has no picture in it. Choose Audio to share a sound.",
  no_audio_stream: "That file has no sound in it.",
  too_short: "That file has no length to play.",
  too_long: null,
  too_many_pixels: null,
  unsupported: null,
  upload_expired: "This upload waited too long and expired. Pick the file again to start over.",
};

// --- small helpers ---------------------------------------------------------------------

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

/** Sizes as phones show them: 1 MB = 1,000,000 bytes. */
export function formatBytes(bytes) {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(bytes >= 1e10 ? 0 : 1)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(bytes >= 1e8 ? 0 : 1)} MB`;
  if (bytes >= 1e3) return `${Math.round(bytes / 1e3)} KB`;
  return `${bytes} bytes`;
}

/** "3.4 of 8.1 MB": both numbers in the larger one's unit. */
function formatSentOf(sent, total) {
  if (total < 1e3) return `${sent} of ${total} bytes`;
  const [unit, size] = total >= 1e9 ? ["GB", 1e9] : total >= 1e6 ? ["MB", 1e6] : ["KB", 1e3];
  const digits = total / size >= 100 ? 0 : 1;
  return `${(sent / size).toFixed(digits)} of ${(total / size).toFixed(digits)} ${unit}`;
}

function formatEta(seconds) {
  if (!Number.isFinite(seconds) || seconds <= 0) return "";
  if (seconds < 60) return "less than a minute left";
  if (seconds < 3600) return `about ${Math.round(seconds / 60)} min left`;
  return `about ${(seconds / 3600).toFixed(1)} h left`;
}

function mediaIdOf(uploadUrl) {
  return new URL(uploadUrl, window.location.href).pathname.split("/").filter(Boolean).pop();
}

async function serverMessage(error) {
  const response = error?.originalResponse;
  if (!response) return null;
  try {
    const body = JSON.parse(response.getBody());
    return body?.error?.message ?? null;
  } catch {
    return null;
  }
}

function failureText(failure, kind) {
  if (!failure) return `We couldn’t process this ${WORDS[kind]?.noun ?? "file"}.`;
  return FAILURES[failure.code] || failure.message || `We couldn’t process this ${WORDS[kind]?.noun ?? "file"}.`;
}

async function fetchMedia(id) {
  const response = await fetch(`/api/v1/media/${encodeURIComponent(id)}`, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    cache: "no-store",
  });
  if (response.status === 404 || response.status === 410) return { gone: true };
  if (response.status === 401) return { signedOut: true };
  if (!response.ok) throw new Error(`media ${id}: ${response.status}`);
  return { media: await response.json() };
}

// Finished uploads, remembered for a day so that a reload still shows their processing.
const remembered = {
  all() {
    try {
      const entries = JSON.parse(localStorage.getItem(REMEMBER_KEY) ?? "[]");
      return entries.filter((entry) => entry?.id && Date.now() - entry.at < REMEMBER_MS);
    } catch {
      return [];
    }
  },
  save(entries) {
    try {
      localStorage.setItem(REMEMBER_KEY, JSON.stringify(entries));
    } catch {
      // private mode or a full storage: the page still works, it just forgets on reload
    }
  },
  add(entry) {
    this.save([...this.all().filter((e) => e.id !== entry.id), { ...entry, at: Date.now() }]);
  },
  remove(id) {
    this.save(this.all().filter((entry) => entry.id !== id));
  },
};

// --- one upload: its card, its tus upload, its processing ------------------------------

class UploadCard {
  constructor(uploader, { name, size, kind }) {
    this.uploader = uploader;
    this.name = name;
    this.size = size;
    this.kind = kind;
    this.state = null;
    this.upload = null;
    this.mediaId = null;
    this.player = null;
    this.samples = [];
    this.pollTimer = 0;
    this.pollStarted = 0;

    const template = document.getElementById("upload-card-template");
    this.el = template.content.firstElementChild.cloneNode(true);
    this.el.dataset.kind = kind;
    this.el.querySelectorAll("[data-kind-icon]").forEach((icon) => {
      if (icon.dataset.kindIcon !== kind) icon.remove();
    });
    const $ = (name) => this.el.querySelector(`[data-upload-${name}]`);
    this.parts = {
      name: $("name"),
      meta: $("meta"),
      badge: $("badge"),
      progress: $("progress"),
      bar: $("bar"),
      fill: $("fill"),
      percent: $("percent"),
      sent: $("sent"),
      speed: $("speed"),
      status: $("status"),
      actions: $("actions"),
      pause: $("pause"),
      resume: $("resume"),
      cancel: $("cancel"),
      confirm: $("confirm"),
      preview: $("preview"),
      done: $("done"),
      next: $("next"),
      compose: $("compose"),
    };
    this.parts.name.textContent = name;
    this.parts.name.title = name;
    this.parts.meta.textContent = `${formatBytes(size)} ${WORDS[kind]?.noun ?? "file"}`;
    this.parts.sent.textContent = formatSentOf(0, size);

    this.parts.pause.addEventListener("click", () => this.pause());
    this.parts.resume.addEventListener("click", () => this.resume());
    this.parts.cancel.addEventListener("click", () => this.askToCancel(true));
    $("cancel-no").addEventListener("click", () => this.askToCancel(false));
    $("cancel-yes").addEventListener("click", () => this.cancel());
    $("dismiss").addEventListener("click", () => this.dismiss());
  }

  setState(state, { badge, badgeKind = "info", status = "", tone = "" } = {}) {
    const changed = state !== this.state;
    this.state = state;
    this.el.dataset.state = state;
    const b = this.parts.badge;
    if (b.textContent !== badge) b.textContent = badge;
    b.className = `badge badge-${badgeKind}`;
    this.say(status, tone);
    if (!changed) return; // polling repeats the same state: leave the buttons (and focus) be
    const uploading = ["queued", "uploading", "paused", "offline", "stopped"].includes(state);
    this.parts.confirm.hidden = true;
    this.parts.actions.hidden = !uploading;
    this.parts.pause.hidden = !["queued", "uploading"].includes(state);
    this.parts.resume.hidden = !["paused", "stopped", "offline"].includes(state);
    this.parts.resume.lastChild.textContent = state === "stopped" ? "Try again" : "Resume";
    this.parts.done.hidden = !["ready", "failed"].includes(state);
    // Once the bytes are in, the post can be written while processing goes on.
    const composable = ["processing", "playable", "ready"].includes(state) && this.mediaId;
    if (composable) this.parts.compose.href = `/compose?media=${encodeURIComponent(this.mediaId)}`;
    this.parts.next.hidden = !composable;
  }

  /** The status line is a live region: only real changes are written (and announced). */
  say(text, tone = "") {
    const status = this.parts.status;
    if (status.textContent !== text) status.textContent = text;
    status.className = `upload-status${tone ? ` is-${tone}` : ""}`;
  }

  showProgress(sent, total) {
    const percent = total ? Math.min(100, Math.floor((sent / total) * 100)) : 0;
    this.parts.fill.style.width = `${percent}%`;
    this.parts.bar.setAttribute("aria-valuenow", String(percent));
    this.parts.bar.setAttribute("aria-valuetext", `${percent}%, ${formatSentOf(sent, total)}`);
    this.parts.percent.textContent = `${percent}%`;
    this.parts.sent.textContent = formatSentOf(sent, total);

    const now = performance.now();
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > SPEED_WINDOW_MS) this.samples.shift();
    const [t0, b0] = this.samples[0];
    const seconds = (now - t0) / 1000;
    if (seconds >= 0.5 && sent > b0 && sent < total) {
      const speed = (sent - b0) / seconds;
      const eta = formatEta((total - sent) / speed);
      this.parts.speed.textContent = `${formatBytes(speed)}/s${eta ? ` · ${eta}` : ""}`;
    } else if (sent >= total) {
      this.parts.speed.textContent = "";
    }
    if (sent >= total && this.state === "uploading") this.say("Finishing the upload…", "working");
  }

  // -- the tus upload --

  async begin(file) {
    this.file = file;
    const tus = window.tus;
    this.upload = new tus.Upload(file, {
      endpoint: this.uploader.endpoint,
      chunkSize: CHUNK_SIZE,
      retryDelays: RETRY_DELAYS,
      metadata: { filename: file.name, filetype: file.type || "application/octet-stream", kind: this.kind },
      headers: { "X-CSRF-Token": csrfToken() },
      removeFingerprintOnSuccess: true,
      onProgress: (sent, total) => this.showProgress(sent, total),
      onChunkComplete: (_chunk, accepted) => {
        this.el.dataset.bytesAccepted = String(accepted);
      },
      onUploadUrlAvailable: () => {
        this.mediaId = mediaIdOf(this.upload.url);
        this.el.dataset.mediaId = this.mediaId;
      },
      onSuccess: () => this.uploaded(),
      onError: (error) => this.failedToSend(error),
    });
    const previous = await this.upload.findPreviousUploads();
    if (previous.length) {
      // The newest record for this very file (same name, type, size, date): carry on there.
      previous.sort((a, b) => String(b.creationTime).localeCompare(String(a.creationTime)));
      this.upload.resumeFromPreviousUpload(previous[0]);
      this.resumedEarlier = true;
      this.uploader.forgetResumeCards(previous.map((p) => p.uploadUrl));
    }
  }

  run() {
    this.uploader.active.add(this);
    this.setState("uploading", {
      badge: "Uploading",
      badgeKind: "primary",
      status: this.resumedEarlier ? "Carrying on from where it stopped…" : "Uploading…",
      tone: "working",
    });
    this.samples = [];
    this.upload.start();
  }

  pause() {
    if (!this.upload || !["uploading", "queued"].includes(this.state)) return;
    const wasQueued = this.state === "queued";
    this.upload.abort();
    const percent = this.parts.percent.textContent;
    this.setState("paused", {
      badge: "Paused",
      badgeKind: "accent",
      status: wasQueued
        ? "Paused before it started."
        : `Paused at ${percent}. Resume carries on from there.`,
    });
    this.parts.speed.textContent = "";
    this.uploader.released(this);
    this.parts.resume.focus();
  }

  resume() {
    if (!["paused", "stopped", "offline"].includes(this.state)) return;
    this.run();
    this.parts.pause.focus();
  }

  askToCancel(show) {
    this.parts.confirm.hidden = !show;
    this.parts.actions.hidden = show;
    if (show) this.el.querySelector("[data-upload-cancel-no]").focus();
    else this.parts.cancel.focus();
  }

  async cancel() {
    const upload = this.upload;
    this.state = "cancelled";
    this.uploader.released(this);
    this.el.remove();
    this.uploader.refreshList();
    try {
      await upload?.abort(true); // DELETE on the server (tus termination), and forget it here
      showToast(`Upload of ${this.name} cancelled.`, "info");
    } catch {
      showToast(
        `Stopped ${this.name}. Craftreel couldn’t be reached to delete what was sent; it expires by itself.`,
        "info",
      );
    }
  }

  async failedToSend(error) {
    this.uploader.released(this);
    this.parts.speed.textContent = "";
    if (!navigator.onLine) {
      this.setState("offline", {
        badge: "Offline",
        badgeKind: "accent",
        status: "You’re offline. The upload carries on when your signal is back.",
      });
      return;
    }
    const message = (await serverMessage(error)) ?? "Craftreel couldn’t be reached.";
    const status = error?.originalResponse?.getStatus?.() ?? 0;
    if (status === 413 || status === 400 || status === 403 || status === 401) {
      // Refused: trying again would be refused again.
      this.setState("failed", {
        badge: "Not sent",
        badgeKind: "danger",
        status: status === 401 ? "You were signed out. Sign in again, then pick the file again." : message,
        tone: "error",
      });
      this.parts.done.hidden = false;
      return;
    }
    this.setState("stopped", {
      badge: "Stopped",
      badgeKind: "danger",
      status: `The upload stopped: ${message} Try again to carry on from where it stopped.`,
      tone: "error",
    });
  }

  uploaded() {
    this.uploader.released(this);
    this.mediaId = mediaIdOf(this.upload.url);
    this.el.dataset.mediaId = this.mediaId;
    this.showProgress(this.size, this.size);
    this.parts.speed.textContent = "Uploaded";
    remembered.add({ id: this.mediaId, name: this.name, size: this.size, kind: this.kind });
    this.processing();
  }

  // -- processing --

  processing() {
    this.setState("processing", {
      badge: "Processing",
      badgeKind: "info",
      status: WORDS[this.kind]?.checking ?? "Checking your file…",
      tone: "working",
    });
    this.pollStarted = Date.now();
    this.poll();
  }

  async poll() {
    clearTimeout(this.pollTimer);
    if (this.state === "cancelled" || !this.el.isConnected) return;
    let result;
    try {
      result = await fetchMedia(this.mediaId);
    } catch {
      result = null; // a blip: ask again shortly
    }
    if (result?.gone) {
      remembered.remove(this.mediaId);
      this.setState("failed", {
        badge: "Gone",
        badgeKind: "danger",
        status: "This upload is no longer on Craftreel.",
        tone: "error",
      });
      return;
    }
    if (result?.signedOut) {
      this.say("You were signed out. Sign in again to see how this upload is doing.", "error");
      return;
    }
    if (result?.media) this.show(result.media);
    if (["ready", "failed"].includes(this.state)) return;
    const slow = Date.now() - this.pollStarted > SLOW_AFTER_MS;
    this.pollTimer = setTimeout(() => this.poll(), slow ? SLOW_POLL_MS : POLL_MS);
  }

  show(media) {
    const words = WORDS[this.kind] ?? WORDS.video;
    this.latest = media;
    if (media.status === "failed") {
      this.player?.destroy();
      this.player = null;
      this.parts.preview.hidden = true;
      // The bytes arrived; it is the content that was turned down, so the bar goes.
      this.parts.progress.hidden = true;
      this.setState("failed", {
        badge: "Failed",
        badgeKind: "danger",
        status: failureText(media.failure, this.kind),
        tone: "error",
      });
      this.el.dataset.failure = media.failure?.code ?? "";
      return;
    }
    if (media.status === "uploading") {
      // Remembered from an earlier visit but not finished: the resume card handles it.
      return;
    }
    if (media.playable) this.preview(media);
    if (media.status === "ready") {
      this.setState("ready", { badge: "Ready", badgeKind: "success", status: words.ready, tone: "done" });
      return;
    }
    const checked = media.duration_s != null || media.width != null;
    const slow = Date.now() - this.pollStarted > SLOW_AFTER_MS;
    let status = !checked ? words.checking : media.playable ? words.more : words.making;
    if (slow && !media.playable) status = `${status} Long files take a while; you can leave and come back.`;
    this.setState(media.playable ? "playable" : "processing", {
      badge: media.playable ? "Playable" : "Processing",
      badgeKind: "info",
      status,
      tone: "working",
    });
  }

  preview(media) {
    const box = this.parts.preview;
    if (this.kind === "video") {
      if (this.player) this.player.update(media);
      else {
        box.hidden = false;
        this.player = mountPlayer(box, media, { refresh: () => this.fresh() });
      }
    } else if (this.kind === "image") {
      if (box.dataset.shown) return;
      const url = bestVariant(media) ?? media.poster_url;
      if (!url) return;
      const img = document.createElement("img");
      img.className = "photo-preview";
      img.alt = `Preview of ${this.name}`;
      img.src = url;
      if (media.width && media.height) {
        img.width = media.width;
        img.height = media.height;
      }
      box.replaceChildren(img);
      box.hidden = false;
      box.dataset.shown = "true";
    } else if (this.kind === "audio") {
      this.audioPreview(media);
    }
  }

  audioPreview(media) {
    const box = this.parts.preview;
    if (!box.dataset.shown) {
      box.dataset.shown = "true";
      box.hidden = false;
      const wrap = document.createElement("div");
      wrap.className = "audio-preview";
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "metadata";
      audio.setAttribute("aria-label", `Play ${this.name}`);
      if (canPlayHls(audio)) audio.src = media.playback_url;
      wrap.append(audio);
      if (!canPlayHls(audio)) {
        const note = document.createElement("p");
        note.className = "upload-status";
        note.textContent =
          "This browser can’t play streaming audio (HLS), which Craftreel uses. It plays in Safari, and in recent Chrome and Edge.";
        wrap.append(note);
      }
      box.replaceChildren(wrap);
    }
    if (media.waveform_url && !box.dataset.waveform) {
      box.dataset.waveform = "loading";
      fetch(media.waveform_url, { credentials: "same-origin" })
        .then((response) => (response.ok ? response.json() : Promise.reject()))
        .then(({ peaks }) => {
          const bars = document.createElement("div");
          bars.className = "waveform";
          bars.setAttribute("aria-hidden", "true");
          // 200 peaks is more than a phone's width holds: keep every other one.
          peaks.filter((_, i) => i % 2 === 0).forEach((peak) => {
            const bar = document.createElement("span");
            bar.style.height = `${Math.max(3, Math.round(peak * 100))}%`;
            bars.append(bar);
          });
          box.querySelector(".audio-preview")?.prepend(bars);
          box.dataset.waveform = "shown";
        })
        .catch(() => delete box.dataset.waveform);
    }
  }

  async fresh() {
    const result = await fetchMedia(this.mediaId);
    return result.media ?? null;
  }

  dismiss() {
    clearTimeout(this.pollTimer);
    remembered.remove(this.mediaId);
    this.player?.destroy();
    this.el.remove();
    this.uploader.refreshList();
    this.uploader.focusPicker();
  }
}

function bestVariant(media) {
  const variants = media.variants ?? [];
  const wanted = Math.min(1280, Math.ceil((window.innerWidth || 390) * (window.devicePixelRatio || 1)));
  const webp = variants.filter((v) => v.format === "webp").sort((a, b) => a.width - b.width);
  const pick = webp.find((v) => v.width >= wanted) ?? webp[webp.length - 1];
  return pick?.url ?? null;
}

// --- the page --------------------------------------------------------------------------

class Uploader {
  constructor(root) {
    this.root = root;
    this.endpoint = root.dataset.endpoint || "/api/v1/uploads";
    this.limits = {
      video: Number(root.dataset.maxVideo),
      image: Number(root.dataset.maxImage),
      audio: Number(root.dataset.maxAudio),
    };
    this.section = root.querySelector("[data-uploads]");
    this.list = root.querySelector("[data-upload-list]");
    this.cards = [];
    this.active = new Set();
  }

  start() {
    const tus = window.tus;
    if (!tus || !tus.isSupported) {
      this.root.querySelector("[data-uploader-unsupported]").hidden = false;
      this.root.querySelectorAll(".pick-input").forEach((input) => (input.disabled = true));
      return;
    }
    this.root.querySelectorAll(".pick-input[data-kind]").forEach((input) => {
      input.addEventListener("change", () => {
        const files = [...(input.files ?? [])];
        input.value = ""; // picking the same file again must fire change again
        this.add(files, input.dataset.kind);
      });
    });
    this.root.querySelectorAll("[data-drop-kind]").forEach((panel) => this.acceptDrops(panel));
    window.addEventListener("online", () => {
      for (const card of this.cards) if (card.state === "offline") card.resume();
    });
    this.restore();
  }

  acceptDrops(panel) {
    const kind = panel.dataset.dropKind;
    panel.addEventListener("dragover", (event) => {
      if (![...(event.dataTransfer?.types ?? [])].includes("Files")) return;
      event.preventDefault();
      panel.classList.add("is-dragover");
    });
    panel.addEventListener("dragleave", () => panel.classList.remove("is-dragover"));
    panel.addEventListener("drop", (event) => {
      event.preventDefault();
      panel.classList.remove("is-dragover");
      const files = [...(event.dataTransfer?.files ?? [])];
      this.add(kind === "image" ? files : files.slice(0, 1), kind);
    });
  }

  /** Start uploading `files` as `kind`; a file over its limit is refused before any byte. */
  async add(files, kind) {
    if (!files.length) return;
    let first = null;
    for (const file of files) {
      const card = new UploadCard(this, { name: file.name, size: file.size, kind });
      this.cards.push(card);
      this.list.prepend(card.el);
      this.refreshList();
      first ??= card;
      const refusal = this.refusal(file, kind);
      if (refusal) {
        card.setState("failed", { badge: "Not sent", badgeKind: "danger", status: refusal, tone: "error" });
        continue;
      }
      card.setState("queued", { badge: "Waiting", badgeKind: "info", status: "Waiting for the other uploads…" });
      await card.begin(file);
      this.queue(card);
    }
    this.refreshList();
    first?.el.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  refusal(file, kind) {
    const noun = WORDS[kind]?.noun ?? "file";
    if (file.size === 0) return "That file is empty. Pick the file again, or another one.";
    const limit = this.limits[kind];
    if (limit && file.size > limit) {
      return `That ${noun} is ${formatBytes(file.size)}; the most you can upload is ${formatBytes(limit)}.`;
    }
    // Photos against sound and video is a mix-up worth catching here; whether a video file
    // holds only sound (or an audio file a picture) is for the server's probe to say.
    const family = file.type.split("/")[0];
    if (family in WORDS && (family === "image") !== (kind === "image")) {
      const looks = family === "image" ? "a photo" : `a ${WORDS[family].noun}`;
      return `That looks like ${looks}, not a ${noun}. Choose the right kind above and pick it again.`;
    }
    return null;
  }

  queue(card) {
    if (this.active.size < MAX_ACTIVE) card.run();
  }

  /** A card stopped sending (paused, finished, failed): give its place to a waiting one. */
  released(card) {
    this.active.delete(card);
    const waiting = this.cards.find((c) => c.state === "queued" && c.el.isConnected && c.upload);
    if (waiting && this.active.size < MAX_ACTIVE) waiting.run();
  }

  refreshList() {
    this.cards = this.cards.filter((card) => card.el.isConnected);
    this.section.hidden = !this.list.children.length;
  }

  focusPicker() {
    this.root.querySelector(".kind-radio:checked")?.focus();
  }

  // -- after a reload --

  async restore() {
    for (const entry of remembered.all().reverse()) {
      const card = new UploadCard(this, entry);
      card.mediaId = entry.id;
      card.el.dataset.mediaId = entry.id;
      card.showProgress(entry.size, entry.size);
      card.parts.speed.textContent = "Uploaded";
      this.cards.push(card);
      this.list.append(card.el);
      card.processing();
    }
    await this.restoreUnfinished();
    this.refreshList();
  }

  async restoreUnfinished() {
    const storage = window.tus.defaultOptions?.urlStorage;
    if (!storage?.findAllUploads) return;
    let stored = [];
    try {
      stored = await storage.findAllUploads();
    } catch {
      return;
    }
    const endpoint = new URL(this.endpoint, window.location.href).href;
    const seen = new Set();
    stored.sort((a, b) => String(b.creationTime).localeCompare(String(a.creationTime)));
    for (const entry of stored) {
      if (!entry.uploadUrl || !entry.uploadUrl.startsWith(endpoint) || seen.has(entry.uploadUrl)) continue;
      seen.add(entry.uploadUrl);
      const id = mediaIdOf(entry.uploadUrl);
      let result;
      try {
        result = await fetchMedia(id);
      } catch {
        continue; // offline now: keep the record for the next visit
      }
      if (result.gone || result.signedOut) {
        if (result.gone) await storage.removeUpload(entry.urlStorageKey);
        continue;
      }
      const media = result.media;
      if (media.status !== "uploading") {
        // It finished sending before the reload: follow its processing instead.
        await storage.removeUpload(entry.urlStorageKey);
        if (!remembered.all().some((e) => e.id === id)) {
          const meta = entry.metadata ?? {};
          const card = new UploadCard(this, { name: meta.filename ?? "Your upload", size: media.upload.length, kind: media.kind });
          card.mediaId = id;
          card.showProgress(media.upload.length, media.upload.length);
          this.cards.push(card);
          this.list.append(card.el);
          card.processing();
        }
        continue;
      }
      this.list.append(this.resumeCard(entry, media));
    }
  }

  resumeCard(entry, media) {
    const meta = entry.metadata ?? {};
    const kind = meta.kind in ACCEPT ? meta.kind : media.kind;
    const name = meta.filename || "a file";
    const el = document.getElementById("resume-card-template").content.firstElementChild.cloneNode(true);
    el.dataset.uploadUrl = entry.uploadUrl;
    el.dataset.kind = kind;
    el.querySelectorAll("[data-kind-icon]").forEach((icon) => {
      if (icon.dataset.kindIcon !== kind) icon.remove();
    });
    const { offset, length } = media.upload;
    const percent = length ? Math.floor((offset / length) * 100) : 0;
    el.querySelector("[data-resume-name]").textContent = name;
    el.querySelector("[data-resume-meta]").textContent = `${percent}% sent · ${formatSentOf(offset, length)}`;
    el.querySelector("[data-resume-fill]").style.width = `${percent}%`;
    const bar = el.querySelector("[data-resume-bar]");
    bar.setAttribute("aria-valuenow", String(percent));
    const input = el.querySelector("[data-resume-input]");
    input.accept = ACCEPT[kind] ?? "";
    input.setAttribute("aria-label", `Pick ${name} again`);
    input.addEventListener("change", async () => {
      const file = input.files?.[0];
      input.value = "";
      if (!file) return;
      await this.add([file], kind);
      if (el.isConnected) {
        showToast(
          `That isn’t the same file as ${name}, so it uploads from the start. The earlier upload is still listed.`,
          "info",
        );
      }
    });
    el.querySelector("[data-resume-discard]").addEventListener("click", async () => {
      el.remove();
      this.refreshList();
      try {
        await window.tus.Upload.terminate(entry.uploadUrl, { headers: { "X-CSRF-Token": csrfToken() } });
      } catch {
        // Unreachable now: the server expires it by itself.
      }
      await window.tus.defaultOptions.urlStorage.removeUpload(entry.urlStorageKey);
      showToast(`Discarded the earlier upload of ${name}.`, "info");
    });
    return el;
  }

  /** The files' earlier uploads are being resumed: their "pick it again" cards can go. */
  forgetResumeCards(uploadUrls) {
    for (const el of this.list.querySelectorAll("[data-resume-card]")) {
      if (uploadUrls.includes(el.dataset.uploadUrl)) el.remove();
    }
  }
}

function boot() {
  const root = document.querySelector("[data-uploader]");
  if (root) new Uploader(root).start();
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", boot, { once: true });
} else {
  boot();
}
