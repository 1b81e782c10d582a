// Orders that change while you look at them: on an order's page, and on the list of your
// orders. When an order.updated event arrives (socket.js), the page fetches the order's live
// parts (/orders/{id}/live: status, progress, lines, cancel) and swaps in those that changed —
// except a part you are typing in or have a sheet open on, which waits for the next update. A list
// row gets the new status badge.

import { showToast } from "/static/js/app.js";
import { start } from "/static/js/socket.js";

const LOCAL_TIME = { day: "numeric", month: "short", year: "numeric", hour: "numeric", minute: "2-digit" };

const header = document.querySelector("[data-live-order]");
const list = document.querySelector("[data-live-orders]");
const pageOrder = header?.dataset.liveOrder ?? null;

async function fetchLive(orderId) {
  const response = await fetch(`/orders/${orderId}/live`, {
    credentials: "same-origin",
    headers: { Accept: "text/html" },
  });
  if (!response.ok) return null;
  const template = document.createElement("template");
  template.innerHTML = await response.text();
  return template.content;
}

/** True when replacing ``region`` would lose something the person is doing there. */
function busy(region) {
  if (region.querySelector("dialog[open]")) return true;
  return [...region.querySelectorAll("input, textarea, select")].some((field) => {
    if (field.type === "hidden") return false;
    if (field.type === "file") return field.files.length > 0;
    if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
    if (field instanceof HTMLSelectElement) return [...field.options].some((o) => o.selected !== o.defaultSelected);
    return field.value !== field.defaultValue;
  });
}

/** A region's HTML without what the page itself changed in it (times shown in local time), to
 * tell whether the server's fresh copy says anything new. */
function drawn(region) {
  return region.outerHTML.replace(/<time\b[^>]*>[^<]*<\/time>/g, "<time>");
}

function showLocalTimes(root) {
  root.querySelectorAll("time[data-local-time]").forEach((el) => {
    const date = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) return;
    el.textContent = new Intl.DateTimeFormat(undefined, LOCAL_TIME).format(date);
    el.title = date.toString();
  });
}

async function refreshPage() {
  const fresh = await fetchLive(pageOrder);
  if (!fresh) return;
  const before = document.getElementById("order-status")?.textContent.trim();
  fresh.querySelectorAll("[data-live-region]").forEach((region) => {
    const old = document.getElementById(region.id);
    // Unchanged parts stay as they are: a person tapping in one is not pulled out of it.
    if (!old || busy(old) || drawn(old) === drawn(region)) return;
    old.replaceWith(region);
    showLocalTimes(region);
    window.htmx?.process(region);
  });
  const after = document.getElementById("order-status")?.textContent.trim();
  if (before && after && before !== after) showToast(`Order updated: ${after}.`, "info");
}

async function refreshRow(orderId) {
  const badge = list.querySelector(`[data-order-row="${CSS.escape(orderId)}"] [data-order-status]`);
  if (!badge) return;
  const fresh = await fetchLive(orderId);
  const status = fresh?.getElementById("order-status");
  if (status) badge.innerHTML = status.innerHTML;
}

// One fetch at a time per order; updates that arrive meanwhile make one more after it.
const running = new Map();

function refresh(orderId) {
  const state = running.get(orderId);
  if (state) {
    state.again = true;
    return;
  }
  const next = { again: false };
  running.set(orderId, next);
  const work = orderId === pageOrder ? refreshPage() : refreshRow(orderId);
  work
    .catch(() => {}) // offline: the next event or reconnection tries again
    .finally(() => {
      running.delete(orderId);
      if (next.again) refresh(orderId);
    });
}

if (pageOrder || list) {
  document.addEventListener("craftreel:order.updated", (event) => {
    const orderId = event.detail?.payload?.order_id;
    if (!orderId) return;
    if (orderId === pageOrder || (list && list.querySelector(`[data-order-row="${CSS.escape(orderId)}"]`))) {
      refresh(orderId);
    }
  });
  if (pageOrder) {
    // Whatever changed between this page being drawn and the socket listening, or while it
    // was away, shows once it is (back) live.
    document.addEventListener("craftreel:live-ready", () => refresh(pageOrder));
    document.addEventListener("craftreel:live-reset", () => refresh(pageOrder));
  }
  start();
}
