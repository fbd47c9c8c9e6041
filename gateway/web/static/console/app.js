// The console's shell: who is signed in, which provider, the navigation their role allows, and the router
// (one page per path; links are ordinary links, so the keyboard, the back button and new tabs work).
import { api, ApiError, newKey, whenSignedOut } from "./api.js";
import { bookingPage, bookingsPage, decisionPage } from "./bookings.js";
import { moneyPage } from "./money.js";
import { settingsPage } from "./settings.js";
import {
  chooseProvider, chosenProvider, clearSession, loadSession, rememberNext,
} from "./session.js";
import { errorBox, field, h } from "./ui.js";

const main = document.getElementById("main");
const UUID = "([0-9a-fA-F-]{36})";
const ROUTES = [
  [new RegExp(`^/console/bookings/${UUID}/(approve|decline)/?$`), (ctx, [, id, decision]) => decisionPage(ctx, id, decision)],
  [new RegExp(`^/console/bookings/${UUID}/?$`), (ctx, [, id]) => bookingPage(ctx, id)],
  [/^\/console\/bookings\/?$/, (ctx) => bookingsPage(ctx)],
  [/^\/console\/money\/?$/, (ctx) => ctx.owner ? moneyPage(ctx) : notAllowed("Money")],
  [/^\/console\/settings\/?$/, (ctx) => ctx.owner ? settingsPage(ctx) : notAllowed("Settings")],
];

function notAllowed(what) {
  return h("section", {}, h("h1", {}, what),
    h("p", {}, "Your role does not include this section. Ask an owner of the provider if you need it."));
}

function signInPage(notice) {
  const email = h("input", { type: "email", name: "email", required: true, autocomplete: "email" });
  const status = h("div", { role: "status", "aria-live": "polite" });
  const form = h("form", { class: "card narrow", onsubmit: async (event) => {
    event.preventDefault();
    status.replaceChildren(h("p", { class: "muted" }, "Sending…"));
    try {
      const answer = await api("POST", "/v1/auth/magic-links", { body: { email: email.value } });
      status.replaceChildren(h("p", { class: "ok" }, answer.detail));
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
  } }, h("h1", {}, "Sign in to the console"),
  notice && h("p", { class: "notice" }, notice),
  h("p", {}, "We email you a link that signs you in. Open it in this browser."),
  field("Email", email), h("button", { type: "submit", class: "primary" }, "Email me a sign-in link"), status);
  return form;
}

async function signOut(ctx) {
  try {
    const sessions = await api("GET", "/v1/auth/sessions");
    const current = sessions.items.find((s) => s.current);
    if (current) await api("DELETE", `/v1/auth/sessions/${current.id}`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) throw error;
  }
  clearSession();
  ctx.go("/console/sign-in", "You are signed out.");
}

function header(ctx) {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  if (!ctx.session) { nav.replaceChildren(); who.replaceChildren(); return; }
  const links = [["Bookings", "/console/bookings"]];
  if (ctx.owner) links.push(["Money", "/console/money"], ["Settings", "/console/settings"]);
  nav.replaceChildren(h("ul", {}, links.map(([text, href]) => h("li", {}, h("a", {
    href, "aria-current": location.pathname.startsWith(href) ? "page" : undefined }, text)))));
  const memberships = ctx.session.memberships;
  const picker = memberships.length > 1 && h("select", { "aria-label": "Provider", onchange: (event) => {
    chooseProvider(event.target.value); ctx.go("/console/bookings"); } },
  memberships.map((m) => h("option", { value: m.provider_id, selected: m.provider_id === ctx.providerId },
    `${ctx.names[m.provider_id] || m.provider_id.slice(0, 8)} (${m.role})`)));
  who.replaceChildren(
    picker || h("span", { class: "provider" }, ctx.provider?.name || ""),
    h("span", { class: "user", "data-role": ctx.role }, `${ctx.session.user.email} · ${ctx.role}`),
    h("button", { type: "button", onclick: () => signOut(ctx).catch((e) => main.replaceChildren(errorBox(e))) },
      "Sign out"));
}

async function context() {
  const session = loadSession();
  const ctx = { session, go, newKey };
  if (!session) return ctx;
  const memberships = session.memberships;
  const chosen = memberships.find((m) => m.provider_id === chosenProvider()) || memberships[0];
  if (!chosen) return { ...ctx, none: true };
  chooseProvider(chosen.provider_id);
  ctx.providerId = chosen.provider_id;
  ctx.role = chosen.role;
  ctx.owner = chosen.role === "owner";
  ctx.names = {};
  ctx.provider = await api("GET", `/v1/providers/${chosen.provider_id}`);
  ctx.names[chosen.provider_id] = ctx.provider.name;
  return ctx;
}

async function render(notice) {
  const path = location.pathname;
  let ctx;
  try {
    ctx = await context();
  } catch (error) {
    main.replaceChildren(errorBox(error));
    return;
  }
  header(ctx);
  if (!ctx.session || path.startsWith("/console/sign-in")) {
    if (ctx.session) { go("/console/bookings"); return; }
    rememberNext(path + location.search);
    main.replaceChildren(signInPage(notice || (path.startsWith("/console/sign-in") ? "" :
      "Sign in to continue; the link brings you back to this page.")));
    document.title = "Sign in · Totem console";
    return;
  }
  if (ctx.none) {
    main.replaceChildren(h("p", {}, "Your account is no member of any provider yet."));
    return;
  }
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  if (!route) { go("/console/bookings"); return; }
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    const page = await route[1](ctx, path.match(route[0]));
    main.replaceChildren(page);
  } catch (error) {
    main.replaceChildren(h("h1", {}, "Something went wrong"), errorBox(error));
  }
  const heading = main.querySelector("h1");
  document.title = `${heading ? heading.textContent : "Console"} · Totem console`;
}

function go(path, notice) {
  history.pushState({}, "", path);
  render(notice).then(() => main.focus());
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href^='/console']");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey ||
      link.target) return;
  event.preventDefault();
  go(link.getAttribute("href"));
});
window.addEventListener("popstate", () => render());
whenSignedOut(() => go("/console/sign-in", "Your session ended; sign in again."));
render();
