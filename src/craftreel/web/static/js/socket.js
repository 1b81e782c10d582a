// The page's one live connection to /ws (the protocol: docs/realtime.md).
//
// start() opens it (once per page, however many modules call it). It reconnects with
// backoff when it drops, resumes from the last event id this tab has seen (kept in
// sessionStorage, so the next page in the tab resumes too), and reconnects when the server
// goes quiet for longer than its heartbeat promises. Each event becomes a CustomEvent on
// document named "craftreel:<type>" (e.g. "craftreel:order.updated"), its detail the event
// ({id, type, payload, created_at}). Also on document:
//   "craftreel:live-ready"  each (re)connection has sent what was missed; live from here
//   "craftreel:live-reset"  the server cannot say what was missed: reload what you show
//   "craftreel:live-closed" signed out (4401) or refused (4403): no more reconnecting

const LAST_ID = "craftreel:last-event-id";
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;
const STOP_CODES = new Set([4401, 4403]);

let socket = null;
let started = false;
let stopped = false;
let attempts = 0;
let retryTimer = null;
let quietTimer = null;
let heartbeatMs = 25000;

function lastId() {
  try {
    return sessionStorage.getItem(LAST_ID);
  } catch {
    return null; // storage blocked: every connection starts live
  }
}

function remember(id) {
  // Ids are UUIDv7 strings: later events sort later as plain strings too.
  const previous = lastId();
  if (previous && previous >= id) return;
  try {
    sessionStorage.setItem(LAST_ID, id);
  } catch {
    /* storage blocked */
  }
}

function socketUrl() {
  const url = new URL("/ws", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const after = lastId();
  if (after) url.searchParams.set("after", after);
  return url.href;
}

function state(value) {
  // <html data-live="connecting|ready|closed">: for styles, and for tests to wait on.
  document.documentElement.dataset.live = value;
}

function emit(name, detail) {
  document.dispatchEvent(new CustomEvent(name, { detail }));
}

function expectSoon() {
  // Anything from the server (an event, a ping) proves the line is alive.
  clearTimeout(quietTimer);
  quietTimer = setTimeout(() => socket?.close(4000, "quiet"), heartbeatMs * 2.5);
}

function onFrame(message) {
  expectSoon();
  let frame;
  try {
    frame = JSON.parse(message.data);
  } catch {
    return;
  }
  if (frame.id) {
    remember(frame.id);
    emit(`craftreel:${frame.type}`, frame);
  } else if (frame.type === "ready") {
    attempts = 0;
    heartbeatMs = (frame.heartbeat || 25) * 1000;
    expectSoon();
    state("ready");
    emit("craftreel:live-ready", frame);
  } else if (frame.type === "reset") {
    emit("craftreel:live-reset", frame);
  } else if (frame.type === "ping") {
    socket?.send(JSON.stringify({ type: "pong" }));
  }
}

function connect() {
  if (stopped || socket) return;
  clearTimeout(retryTimer);
  state("connecting");
  const current = new WebSocket(socketUrl());
  socket = current;
  current.addEventListener("message", onFrame);
  current.addEventListener("close", (event) => {
    if (socket === current) socket = null;
    clearTimeout(quietTimer);
    if (STOP_CODES.has(event.code)) {
      stopped = true;
      state("closed");
      emit("craftreel:live-closed", { code: event.code });
      return;
    }
    retry();
  });
  expectSoon();
}

function retry() {
  if (stopped || retryTimer) return;
  // Exponential, capped, with jitter: a restarted server is not met by every page at once.
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** attempts);
  attempts += 1;
  retryTimer = setTimeout(() => {
    retryTimer = null;
    connect();
  }, ceiling / 2 + Math.random() * (ceiling / 2));
}

/** Open the page's live connection (again a no-op once open). */
export function start() {
  if (started) return;
  started = true;
  connect();
  window.addEventListener("online", () => {
    attempts = 0;
    clearTimeout(retryTimer);
    retryTimer = null;
    connect();
  });
  // Leaving the page closes the socket (so the page can enter the back/forward cache);
  // coming back to it opens a new one that resumes where this one stopped.
  window.addEventListener("pagehide", () => {
    stopped = true;
    socket?.close(1000, "page hidden");
  });
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    stopped = false;
    attempts = 0;
    connect();
  });
}
