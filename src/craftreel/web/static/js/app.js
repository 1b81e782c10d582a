// Craftreel's page glue: CSRF for htmx, toasts, bottom sheets, the service worker.
// An ES module with no dependencies; other modules may `import { showToast } from
// "/static/js/app.js"` (same URL, same instance).

const TOAST_MS = { info: 5000, success: 5000, error: 10000 };

document.documentElement.classList.add("js");

// --- CSRF: every htmx request carries the token from <meta name="csrf-token">. --------

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

document.addEventListener("htmx:configRequest", (event) => {
  // Only to our own origin: the token must never travel to another site.
  const target = new URL(event.detail.path, window.location.href);
  if (target.origin === window.location.origin) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  }
});

// --- Toasts -----------------------------------------------------------------------------

const ICONS = {
  info: '<circle cx="12" cy="12" r="9"/><path d="M12 11v5.2M12 7.7v.2"/>',
  success: '<circle cx="12" cy="12" r="9"/><path d="m8 12.5 2.7 2.7L16 9.8"/>',
  error: '<circle cx="12" cy="12" r="9"/><path d="M12 7.5v5.5M12 16.3v.2"/>',
};

function svg(paths, className) {
  return (
    `<svg class="icon ${className}" viewBox="0 0 24 24" fill="none" stroke="currentColor" ` +
    `stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" ` +
    `focusable="false">${paths}</svg>`
  );
}

function toastRegion() {
  let region = document.getElementById("toasts");
  if (!region) {
    region = document.createElement("div");
    region.id = "toasts";
    region.className = "toast-region";
    region.setAttribute("role", "status");
    region.setAttribute("aria-live", "polite");
    document.body.append(region);
  }
  return region;
}

/** Show a toast. kind: "info" | "success" | "error". Returns the toast element. */
export function showToast(message, kind = "info") {
  const safeKind = kind in ICONS ? kind : "info";
  const toast = document.createElement("div");
  toast.className = `toast toast-${safeKind}`;
  toast.dataset.toast = "";
  toast.dataset.kind = safeKind;
  toast.innerHTML =
    svg(ICONS[safeKind], "toast-icon") +
    '<p class="toast-message"></p>' +
    '<button class="toast-close" type="button" data-toast-close aria-label="Dismiss">' +
    svg('<path d="M6 6l12 12M18 6 6 18"/>', "") +
    "</button>";
  toast.querySelector(".toast-message").textContent = message;
  toastRegion().append(toast); // the observer below arms its timer
  return toast;
}

export function dismissToast(toast) {
  if (!toast.isConnected || toast.classList.contains("is-leaving")) return;
  clearTimeout(toast._timer);
  toast.classList.add("is-leaving");
  const remove = () => toast.remove();
  toast.addEventListener("animationend", remove, { once: true });
  setTimeout(remove, 400); // in case animations are off
}

function armToast(toast) {
  if (toast._armed) return;
  toast._armed = true;
  const ms = TOAST_MS[toast.dataset.kind] ?? TOAST_MS.info;
  const start = () => {
    clearTimeout(toast._timer);
    toast._timer = setTimeout(() => dismissToast(toast), ms);
  };
  const pause = () => clearTimeout(toast._timer);
  // Reading or reaching for a toast keeps it on screen.
  toast.addEventListener("pointerenter", pause);
  toast.addEventListener("pointerleave", start);
  toast.addEventListener("focusin", pause);
  toast.addEventListener("focusout", start);
  start();
}

function armToastsIn(root) {
  if (root.matches?.("[data-toast]")) armToast(root);
  root.querySelectorAll?.("[data-toast]").forEach(armToast);
}

document.addEventListener("click", (event) => {
  const close = event.target.closest("[data-toast-close]");
  if (close) dismissToast(close.closest("[data-toast]"));
});

function watchToasts() {
  const region = toastRegion();
  // Toasts rendered with the page are already in the live region when it loads, so
  // screen readers would not announce them: put them back in to make them news.
  const initial = [...region.children];
  initial.forEach((toast) => toast.remove());
  new MutationObserver((records) => {
    for (const record of records) record.addedNodes.forEach((node) => {
      if (node.nodeType === Node.ELEMENT_NODE) armToastsIn(node);
    });
  }).observe(region, { childList: true, subtree: true });
  requestAnimationFrame(() => initial.forEach((toast) => region.append(toast)));
}

// A server raises a toast from any htmx response with an HX-Trigger header:
//   HX-Trigger: {"craftreel:toast": {"message": "Saved", "kind": "success"}}
//   HX-Trigger: {"craftreel:error": "That mug just sold out."}   (the error handler's form)
document.addEventListener("craftreel:toast", (event) => {
  const { message, kind } = event.detail ?? {};
  if (message) showToast(message, kind);
});

document.addEventListener("craftreel:error", (event) => {
  const message = event.detail?.value ?? event.detail?.message;
  if (message) showToast(message, "error");
});

document.addEventListener("htmx:sendError", () => {
  showToast("Couldn’t reach Craftreel. Check your connection and try again.", "error");
});

document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  // A response with HX-Trigger raised its own toast (craftreel:error / craftreel:toast).
  if (xhr.getResponseHeader("HX-Trigger")) return;
  let message = "Something went wrong. Please try again.";
  try {
    const body = JSON.parse(xhr.responseText);
    if (body?.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the general message
  }
  if (xhr.status === 403) message = "You can’t do that. Reload the page and try again.";
  if (xhr.status === 429) message = "Slow down a little — try again in a moment.";
  showToast(message, "error");
});

// --- Bottom sheets (<dialog class="sheet">) -------------------------------------------

export function openSheet(id) {
  const sheet = document.getElementById(id);
  if (!(sheet instanceof HTMLDialogElement) || sheet.open) return;
  sheet.classList.remove("is-closing");
  sheet.showModal();
  sheet.dispatchEvent(new CustomEvent("sheet:open", { bubbles: true }));
}

export function closeSheet(sheet) {
  if (!(sheet instanceof HTMLDialogElement) || !sheet.open) return;
  if (sheet.classList.contains("is-closing")) return;
  sheet.classList.add("is-closing");
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    sheet.classList.remove("is-closing");
    sheet.close();
  };
  sheet.addEventListener("animationend", finish, { once: true });
  setTimeout(finish, 350);
}

document.addEventListener("click", (event) => {
  const opener = event.target.closest("[data-sheet-open]");
  if (opener) {
    event.preventDefault();
    openSheet(opener.dataset.sheetOpen);
    return;
  }
  const closer = event.target.closest("[data-sheet-close]");
  if (closer) {
    const sheet = closer.closest("dialog.sheet");
    if (sheet) {
      event.preventDefault();
      closeSheet(sheet);
    }
    return;
  }
  // A tap on the backdrop lands on the dialog element itself, outside its box.
  if (event.target instanceof HTMLDialogElement && event.target.matches(".sheet[open]")) {
    const box = event.target.getBoundingClientRect();
    const inside =
      event.clientX >= box.left && event.clientX <= box.right &&
      event.clientY >= box.top && event.clientY <= box.bottom;
    if (!inside) closeSheet(event.target);
  }
});

// Escape: animate out instead of vanishing.
document.addEventListener(
  "cancel",
  (event) => {
    if (event.target instanceof HTMLDialogElement && event.target.matches(".sheet")) {
      event.preventDefault();
      closeSheet(event.target);
    }
  },
  true,
);

// --- Small form helpers -------------------------------------------------------------

// "12 / 500" under a textarea with maxlength (see the textarea macro).
document.addEventListener("input", (event) => {
  const field = event.target;
  if (!(field instanceof HTMLTextAreaElement) || !field.dataset.counter) return;
  const counter = document.getElementById(field.dataset.counter);
  if (counter) counter.textContent = `${field.value.length} / ${field.maxLength}`;
});

// A form's error summary takes focus so keyboard and screen-reader users land on it.
function focusErrorSummary(root) {
  const summary = root.querySelector?.(".form-errors[data-autofocus]");
  if (summary) summary.focus();
}

document.addEventListener("htmx:afterSwap", (event) => focusErrorSummary(event.detail.target));

// --- Start ----------------------------------------------------------------------------

function start() {
  watchToasts();
  focusErrorSummary(document);
  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => {
      // No offline page this time; the site works the same online.
    });
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start, { once: true });
} else {
  start();
}
