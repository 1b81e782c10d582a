// Shop pages' small helpers. Every page works without them; they only save taps.
//  - "Use" buttons next to the test cards fill the card number field.
//  - A form marked data-once sends once: a second tap while it is on its way does nothing
//    (the server would not charge twice anyway: the form carries an Idempotency-Key).
//  - The listing form shows only the fields the chosen kind of listing uses.

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
    group.hidden = group.dataset.showFor !== chosen.value;
  });
}

document.addEventListener("change", (event) => {
  if (!event.target.matches?.("[data-kind-choice]")) return;
  showFieldsForKind(event.target.form);
});

document.querySelectorAll("form.listing-form").forEach(showFieldsForKind);
