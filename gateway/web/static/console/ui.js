// A few DOM helpers: `h` builds elements (text is always text, never HTML), money and dates are formatted
// with the browser's Intl, and `confirmDialog` is a native <dialog> (focus, Escape and Tab work by themselves).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function money(amount, currency) {
  if (amount === null || amount === undefined) return "—";
  const digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
  return new Intl.NumberFormat("en-GB", { style: "currency", currency }).format(amount / 10 ** digits);
}

export function minorUnits(text, currency) {
  const digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
  const value = Number(String(text).replace(",", "."));
  return Number.isFinite(value) ? Math.round(value * 10 ** digits) : NaN;
}

export function when(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}

export function day(iso) {
  return new Date(iso).toLocaleDateString("en-GB", { weekday: "short", day: "numeric", month: "short" });
}

export const label = (status) => status.replaceAll("_", " ");

export function badge(status) {
  return h("span", { class: `badge s-${status}`, "data-status": status }, label(status));
}

export function problemText(error) {
  return error.code ? `${error.code}: ${error.message}` : String(error.message || error);
}

export function errorBox(error) {
  return h("p", { class: "error", role: "alert" }, problemText(error));
}

export function toast(text) {
  const box = document.getElementById("toast");
  box.textContent = text;
}

export function field(labelText, input, hint) {
  return h("label", { class: "field" }, h("span", {}, labelText), input, hint && h("small", {}, hint));
}

export function table(headers, rows, caption) {
  return h("div", { class: "table-wrap" }, h("table", {},
    caption && h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((title) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "Nothing yet.")))));
}

/**
 * A modal: `body` (elements), a confirm button; `action()` runs on confirm and may throw (its error is shown in
 * the dialog, which stays open for another try). Resolves with action's result, or null when dismissed.
 */
export function confirmDialog({ title, body, confirm = "Confirm", danger = false, action, ready = Promise.resolve() }) {
  return new Promise((resolve) => {
    const status = h("div", { class: "dialog-status", role: "status", "aria-live": "polite" });
    const ok = h("button", { type: "submit", class: danger ? "danger" : "primary", disabled: true }, confirm);
    const back = h("button", { type: "button", onclick: () => dialog.close() }, "Back");
    const form = h("form", { method: "dialog" }, h("h2", {}, title), body, status,
      h("div", { class: "actions" }, ok, back));
    const dialog = h("dialog", { "aria-label": title }, form);
    let result = null;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      ok.disabled = back.disabled = true;
      status.replaceChildren(h("p", { class: "muted" }, "Working…"));
      try {
        result = await action((step) => status.replaceChildren(h("p", { class: "muted" }, step)));
        dialog.close();
      } catch (error) {
        status.replaceChildren(errorBox(error));
        ok.disabled = back.disabled = false;
      }
    });
    dialog.addEventListener("close", () => { dialog.remove(); resolve(result); });
    document.body.append(dialog);
    dialog.showModal();
    ready.then(() => { ok.disabled = false; }, (error) => status.replaceChildren(errorBox(error)));
  });
}
