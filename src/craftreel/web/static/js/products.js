// Shoppable video: while a tagged time range plays, the player shows the product as a chip;
// "Add" puts it in the cart with a background request, so the video keeps playing.
//
// mountProductChips(video, host, postId, products): `products` are PostOut.products (each
// {id, listing_id, variant_id, available, title, price_minor, currency, image_url, start_s,
// end_s, url}); `host` is an element laid over the video where the chips go.

import { showToast } from "/static/js/app.js";
import { api } from "/static/js/interactions.js";

/** 1800, "GBP" → "£18.00" in the reader's locale. */
export function formatPrice(minor, currency) {
  try {
    const digits = new Intl.NumberFormat(undefined, { style: "currency", currency })
      .resolvedOptions().maximumFractionDigits;
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(
      minor / 10 ** digits,
    );
  } catch {
    return `${(minor / 100).toFixed(2)} ${currency}`;
  }
}

/** The products whose range covers `time` (end_s null: to the end). */
export function activeAt(products, time) {
  return products.filter((p) => time >= p.start_s && (p.end_s == null || time < p.end_s));
}

/** The app bar's cart badge after something was added without a page load. */
export function setCartCount(count) {
  const link = document.getElementById("appbar-cart");
  if (!link) return;
  let dot = link.querySelector(".badge-dot");
  if (!dot) {
    dot = document.createElement("span");
    dot.className = "badge-dot";
    dot.setAttribute("aria-hidden", "true");
    link.append(dot);
  }
  dot.textContent = count < 100 ? String(count) : "99+";
  link.setAttribute("aria-label", `Cart, ${count} item${count === 1 ? "" : "s"}`);
}

async function addToCart(postId, product, button) {
  button.disabled = true;
  try {
    const response = await api(
      "POST",
      `/api/v1/posts/${encodeURIComponent(postId)}/products/${encodeURIComponent(product.id)}/cart`,
      {},
    );
    if (response.status === 401) {
      showToast("Sign in to add things to your cart.", "info");
      return;
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      showToast(body?.error?.message ?? "That could not be added. Try again.", "error");
      return;
    }
    setCartCount(body.cart_count);
    button.classList.add("is-added");
    button.querySelector("span").textContent = "Added";
    button.setAttribute("aria-label", `${product.title} is in your cart`);
    showToast(`${product.title} is in your cart.`, "success");
  } catch {
    showToast("You seem to be offline. Try again in a moment.", "error");
  } finally {
    button.disabled = false;
  }
}

function chip(postId, product) {
  const item = document.createElement("div");
  item.className = "product-chip";
  item.dataset.productChip = product.id;
  const link = document.createElement("a");
  link.className = "product-chip-link";
  link.href = product.url;
  if (product.image_url) {
    const image = document.createElement("img");
    image.src = product.image_url;
    image.alt = "";
    image.width = 40;
    image.height = 40;
    link.append(image);
  }
  const text = document.createElement("span");
  text.className = "product-chip-text";
  const title = document.createElement("span");
  title.className = "product-chip-title";
  title.textContent = product.title;
  const price = document.createElement("span");
  price.className = "product-chip-price";
  price.textContent = formatPrice(product.price_minor, product.currency);
  text.append(title, price);
  link.append(text);
  item.append(link);
  const add = document.createElement("button");
  add.type = "button";
  add.className = "product-chip-add";
  add.dataset.productAdd = "";
  add.innerHTML = "<span></span>";
  if (product.available) {
    add.querySelector("span").textContent = "Add";
    add.setAttribute("aria-label", `Add ${product.title} to your cart`);
    add.addEventListener("click", (event) => {
      event.stopPropagation(); // a tap on the chip is not a tap on the video
      addToCart(postId, product, add);
    });
  } else {
    add.querySelector("span").textContent = "Sold out";
    add.disabled = true;
  }
  item.append(add);
  item.addEventListener("click", (event) => event.stopPropagation());
  item.addEventListener("dblclick", (event) => event.stopPropagation());
  return item;
}

/** Keep `host` showing the chips for what plays now; returns a function that stops it. */
export function mountProductChips(video, host, postId, products) {
  if (!video || !host || !products?.length) return () => {};
  host.classList.add("product-chips");
  host.setAttribute("aria-live", "polite");
  const shown = new Map();
  const update = () => {
    const now = new Set(activeAt(products, video.currentTime || 0).map((p) => p.id));
    for (const [id, element] of shown) {
      if (!now.has(id)) {
        element.remove();
        shown.delete(id);
      }
    }
    for (const product of products) {
      if (now.has(product.id) && !shown.has(product.id)) {
        const element = chip(postId, product);
        shown.set(product.id, element);
        host.append(element);
      }
    }
  };
  video.addEventListener("timeupdate", update);
  video.addEventListener("seeked", update);
  video.addEventListener("loadedmetadata", update);
  update();
  return () => {
    video.removeEventListener("timeupdate", update);
    video.removeEventListener("seeked", update);
    video.removeEventListener("loadedmetadata", update);
    host.replaceChildren();
    shown.clear();
  };
}
