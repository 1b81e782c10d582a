// Shop pages' small helpers. Every page works without them; they only save taps.
//  - "Use" buttons next to the test cards fill the card number field.
//  - A form marked data-once sends once: a second tap while it is on its way does nothing
//    (the server would not charge twice anyway: the form carries an Idempotency-Key).
//  - The listing form shows only the fields the chosen kind of listing uses, moves photos
//    earlier or later (the hidden photo_id inputs travel with them), and names the photos
//    chosen to add.
//  - A listing's gallery: arrow keys, dots and (with a mouse) previous/next buttons move it
//    one photo at a time; the dots and the count follow swipes.
//  - Times the server wrote in UTC (<time data-local-time>) show in this browser's zone.

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-fill-card]");
  if (!button) return;
  const field = document.getElementById(button.dataset.fillCard);
  if (!field) return;
  field.value = button.dataset.card;
  field.dispatchEvent(new Event("input", { bubbles: true }));
  field.focus();
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-once")) return;
  if (form.dataset.sending) {
    event.preventDefault();
    return;
  }
  form.dataset.sending = "true";
  form.setAttribute("aria-busy", "true");
  // After this task, so the pressed button's own name and value are still sent.
  setTimeout(() => {
    form.querySelectorAll("button[type=submit]").forEach((button) => {
      button.classList.add("htmx-request");
      button.setAttribute("aria-disabled", "true");
    });
  });
});

// A page restored from the back/forward cache keeps the sending state: clear it.
window.addEventListener("pageshow", () => {
  document.querySelectorAll("form[data-sending]").forEach((form) => {
    delete form.dataset.sending;
    form.removeAttribute("aria-busy");
    form.querySelectorAll("button[type=submit]").forEach((button) => {
      button.classList.remove("htmx-request");
      button.removeAttribute("aria-disabled");
    });
  });
});

function showFieldsForKind(form) {
  const chosen = form.querySelector("[data-kind-choice]:checked");
  if (!chosen) return;
  form.dataset.kind = chosen.value;
  form.querySelectorAll("[data-show-for]").forEach((group) => {
    // data-show-for names one kind, or several separated by spaces.
    group.hidden = !group.dataset.showFor.split(" ").includes(chosen.value);
  });
}

document.addEventListener("change", (event) => {
  if (!event.target.matches?.("[data-kind-choice]")) return;
  showFieldsForKind(event.target.form);
});

document.querySelectorAll("form.listing-form").forEach(showFieldsForKind);

// --- the listing form's photos ----------------------------------------------------------

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-photo-move]");
  if (!button) return;
  const tile = button.closest("[data-photo-tile]");
  const step = Number(button.dataset.photoMove);
  const other = step < 0 ? tile.previousElementSibling : tile.nextElementSibling;
  if (!other) return;
  if (step < 0) other.before(tile);
  else other.after(tile);
  renumberPhotos(tile.parentElement);
  button.focus();
});

function renumberPhotos(list) {
  const tiles = [...list.querySelectorAll("[data-photo-tile]")];
  tiles.forEach((tile, index) => {
    const n = index + 1;
    tile.querySelector("img").alt = `Photo ${n}`;
    const earlier = tile.querySelector('[data-photo-move="-1"]');
    const later = tile.querySelector('[data-photo-move="1"]');
    earlier.setAttribute("aria-label", `Move photo ${n} earlier`);
    later.setAttribute("aria-label", `Move photo ${n} later`);
    earlier.disabled = index === 0;
    later.disabled = index === tiles.length - 1;
    const hidden = tile.querySelector(".photo-remove .visually-hidden");
    if (hidden) hidden.textContent = ` photo ${n}`;
  });
}

document.querySelectorAll("[data-photo-manager]").forEach(renumberPhotos);

document.addEventListener("change", (event) => {
  const box = event.target.closest?.("[data-photo-remove]");
  if (box) {
    box.closest("[data-photo-tile]").classList.toggle("is-removing", box.checked);
    return;
  }
  const input = event.target.closest?.("[data-photo-input]");
  if (!input) return;
  const note = input.form.querySelector("[data-photo-chosen]");
  if (!note) return;
  const names = [...input.files].map((file) => file.name);
  note.textContent = names.length
    ? `${names.length} photo${names.length === 1 ? "" : "s"} to add: ${names.join(", ")}`
    : "";
});

// --- a listing's gallery ----------------------------------------------------------------

function setUpGallery(gallery) {
  const track = gallery.querySelector("[data-gallery-track]");
  const slides = [...gallery.querySelectorAll("[data-gallery-slide]")];
  const dots = [...gallery.querySelectorAll("[data-gallery-dot]")];
  const count = gallery.querySelector("[data-gallery-count]");
  const previous = gallery.querySelector('[data-gallery-step="-1"]');
  const next = gallery.querySelector('[data-gallery-step="1"]');
  if (slides.length < 2) return;
  let current = 0;

  const show = (index) => {
    current = Math.max(0, Math.min(slides.length - 1, index));
    dots.forEach((dot, n) => {
      if (n === current) dot.setAttribute("aria-current", "true");
      else dot.removeAttribute("aria-current");
    });
    if (count) count.textContent = `${current + 1} / ${slides.length}`;
    if (previous) previous.hidden = current === 0;
    if (next) next.hidden = current === slides.length - 1;
  };
  const go = (index) => {
    const target = Math.max(0, Math.min(slides.length - 1, index));
    const reduce = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    track.scrollTo({ left: target * track.clientWidth, behavior: reduce ? "auto" : "smooth" });
    show(target);
  };

  let pending = 0;
  track.addEventListener("scroll", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => {
      show(Math.round(track.scrollLeft / Math.max(1, track.clientWidth)));
    });
  }, { passive: true });
  track.addEventListener("keydown", (event) => {
    const moves = { ArrowLeft: current - 1, ArrowRight: current + 1, Home: 0, End: slides.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    go(moves[event.key]);
  });
  dots.forEach((dot) => dot.addEventListener("click", () => go(Number(dot.dataset.galleryDot))));
  [previous, next].forEach((button) => {
    button?.addEventListener("click", () => go(current + Number(button.dataset.galleryStep)));
  });
  show(0);
}

document.querySelectorAll("[data-gallery]").forEach(setUpGallery);

// --- times in the viewer's own zone -----------------------------------------------------

const LOCAL_TIME = { day: "numeric", month: "short", year: "numeric", hour: "numeric", minute: "2-digit" };

document.querySelectorAll("time[data-local-time]").forEach((el) => {
  const date = new Date(el.getAttribute("datetime"));
  if (Number.isNaN(date.getTime())) return;
  el.textContent = new Intl.DateTimeFormat(undefined, LOCAL_TIME).format(date);
  el.title = date.toString();
});
