// Settings (owners): public tokens for the widget, webhook endpoints and their deliveries, members, audit log.
import { all, api, command, newKey } from "./api.js";
import { confirmDialog, errorBox, field, h, label, table, toast, when } from "./ui.js";

const EVENTS = ["booking_created", "booking_paid", "booking_expired", "booking_cancelled", "booking_completed",
  "payment_failed", "refund_issued", "refund_failed", "payout_sent", "payout_held", "dispute_opened", "dispute_closed"];

function secretShownOnce(title, secret) {
  return h("div", { class: "secret", role: "status" }, h("p", {}, h("b", {}, title),
    " — copy it now; it is shown this once."), h("code", { class: "once", tabindex: 0 }, secret));
}

function section(id, title, ...children) {
  return h("section", { id, "aria-labelledby": `${id}-h` }, h("h2", { id: `${id}-h` }, title), ...children);
}

/** A section that reloads itself after each change (`build` returns its elements). */
function live(id, title, build) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const refresh = async (extra) => {
    try { body.replaceChildren(...await build(refresh), ...(extra ? [extra] : [])); }
    catch (error) { body.replaceChildren(errorBox(error)); }
  };
  refresh();
  return section(id, title, body);
}

function removeButton(text, title, explain, action, refresh) {
  return h("button", { type: "button", class: "danger", onclick: async () => {
    if (await confirmDialog({ title, body: h("p", {}, explain), confirm: text, danger: true,
      action: async () => { await action(); return true; } })) { toast(`${title}: done.`); refresh(); }
  } }, text);
}

/** Payouts go to the provider's Stripe Express account: onboarding happens on Stripe's pages (an Account Link),
 * which send the owner back here; Stripe's account.updated events keep what it says current. */
function stripeAccount(ctx) {
  return live("stripe", "Payouts with Stripe", async () => {
    const provider = await api("GET", `/v1/providers/${ctx.providerId}`);
    const account = provider.stripe_account;
    const status = h("div", { role: "status", "aria-live": "polite" });
    const due = account ? [...new Set([...(account.requirements.past_due || []),
      ...(account.requirements.currently_due || [])])] : [];
    const facts = account
      ? h("dl", { class: "facts" }, h("dt", {}, "Account"), h("dd", {}, h("code", {}, account.id)),
        h("dt", {}, "Payouts"), h("dd", { id: "stripe-payouts" }, account.payouts_enabled ? "enabled" : "not enabled yet"),
        h("dt", {}, "Card payments"), h("dd", {}, account.charges_enabled ? "enabled" : "not enabled yet"),
        h("dt", {}, "Stripe still needs"), h("dd", { id: "stripe-due" }, due.length ? due.map(label).join(", ") : "nothing"))
      : h("p", {}, "Payouts are paid to a Stripe account of yours. Set one up with Stripe to be paid.");
    let key = null;  // one Idempotency-Key per press, kept if the same press is retried
    const go = h("button", { type: "button", id: "stripe-onboard", onclick: async () => {
      go.disabled = true;
      key = key || newKey();
      status.replaceChildren(h("p", { class: "muted" }, "Asking Stripe for your onboarding link…"));
      try {
        const job = await command(`/v1/providers/${ctx.providerId}/stripe-account`, {}, key);
        key = null;
        window.location.assign(job.result.url);  // Stripe's page; it sends you back to these settings
      } catch (error) {
        status.replaceChildren(errorBox(error));
        go.disabled = false;
      }
    } }, !account ? "Set up payouts with Stripe" : account.payouts_enabled ? "Update details with Stripe"
      : "Continue onboarding with Stripe");
    const back = new URLSearchParams(window.location.search).get("stripe") === "return" && account && !account.payouts_enabled
      && h("p", { class: "muted" }, "Back from Stripe: it tells us about your account within a few seconds; reload this page to see the latest.");
    return [facts, back, go, status];
  });
}

function tokens(ctx) {
  return live("tokens", "Public tokens (booking widget)", async (refresh) => {
    const items = await api("GET", `/v1/providers/${ctx.providerId}/public-tokens`);
    const name = h("input", { name: "name", maxlength: 200 });
    const origins = h("input", { name: "origins", placeholder: "https://salon.example", autocomplete: "off" });
    const status = h("div", { role: "status", "aria-live": "polite" });
    const form = h("form", { class: "inline", onsubmit: async (event) => {
      event.preventDefault();
      try {
        const created = await api("POST", `/v1/providers/${ctx.providerId}/public-tokens`, { key: newKey(), body: {
          name: name.value.trim() || null,
          allowed_origins: origins.value.split(/[\s,]+/).filter(Boolean) } });
        refresh(secretShownOnce(`New token ${created.prefix}…`, created.token));
      } catch (error) { status.replaceChildren(errorBox(error)); }
    } }, field("Name", name), field("Allowed origins (space separated; empty: any)", origins),
    h("button", { type: "submit" }, "Create token"), status);
    return [table(["Name", "Token", "Origins", "Created", "Last used", ""], items.map((t) => h("tr", {},
      h("td", {}, t.name || "—"), h("td", {}, h("code", {}, `${t.prefix}…`)),
      h("td", {}, t.allowed_origins.join(" ") || "any"), h("td", {}, when(t.created_at)), h("td", {}, when(t.last_used_at)),
      h("td", {}, removeButton("Revoke", "Revoke the token", `Sites using ${t.prefix}… stop working at once.`,
        () => api("DELETE", `/v1/providers/${ctx.providerId}/public-tokens/${t.id}`), refresh))))), form];
  });
}

function endpoints(ctx) {
  return live("webhooks", "Webhook endpoints", async (refresh) => {
    const { items } = await all(`/v1/providers/${ctx.providerId}/webhook-endpoints`, { limit: 100 }, 200);
    const url = h("input", { name: "url", type: "url", required: true, placeholder: "https://example.com/hooks" });
    const events = h("select", { name: "events", multiple: true, size: 4 }, EVENTS.map((e) => h("option", { value: e }, e)));
    const status = h("div", { role: "status", "aria-live": "polite" });
    const form = h("form", { class: "inline", onsubmit: async (event) => {
      event.preventDefault();
      try {
        const created = await api("POST", `/v1/providers/${ctx.providerId}/webhook-endpoints`, { key: newKey(),
          body: { url: url.value, events: [...events.selectedOptions].map((o) => o.value) } });
        refresh(secretShownOnce(`Signing secret of ${created.url}`, created.secret));
      } catch (error) { status.replaceChildren(errorBox(error)); }
    } }, field("URL", url), field("Events (none selected: every event)", events),
    h("button", { type: "submit" }, "Add endpoint"), status);
    return [table(["URL", "Events", "Status", "Created", ""], items.map((e) => h("tr", {},
      h("td", {}, e.url), h("td", {}, e.events.join(", ") || "every event"),
      h("td", {}, e.status, e.disabled_reason ? ` (${e.disabled_reason})` : ""), h("td", {}, when(e.created_at)),
      h("td", {}, removeButton("Delete", "Delete the endpoint", `Nothing more is sent to ${e.url}.`,
        () => api("DELETE", `/v1/providers/${ctx.providerId}/webhook-endpoints/${e.id}`), refresh))))), form];
  });
}

function deliveries(ctx) {
  return live("deliveries", "Deliveries (email and webhooks)", async (refresh) => {
    const choice = new URLSearchParams(location.search).get("deliveries") || "dead";
    const page = await api("GET", `/v1/providers/${ctx.providerId}/deliveries`, { query: { status: choice === "all" ? "" : choice, limit: 50 } });
    const pick = h("p", { class: "quick" }, "Show: ", ["dead", "failed", "all"].map((s, i) => [i ? " · " : "",
      h("a", { href: `/console/settings?deliveries=${s}#deliveries`, "aria-current": s === choice ? "true" : undefined }, s)]));
    return [pick, table(["Event", "Channel", "To", "Status", "Attempts", "Last error", ""], page.items.map((d) => h("tr", {
      "data-delivery": d.id },
    h("td", {}, d.topic), h("td", {}, d.channel), h("td", {}, d.recipient), h("td", {}, label(d.status)),
    h("td", { class: "num" }, d.attempts), h("td", {}, d.last_error || "—"),
    h("td", {}, ["dead", "failed"].includes(d.status) && h("button", { type: "button", onclick: async (event) => {
      event.target.disabled = true;
      try {
        await api("POST", `/v1/deliveries/${d.id}/retry`, { key: newKey() });
        toast("The delivery is sent again within a moment.");
        refresh();
      } catch (error) { event.target.replaceWith(errorBox(error)); }
    } }, "Retry")))))];
  });
}

function members(ctx) {
  return live("members", "Members and roles", async (refresh) => {
    const { items } = await api("GET", `/v1/providers/${ctx.providerId}/members`);
    const email = h("input", { name: "email", type: "email", required: true });
    const role = h("select", { name: "role" }, h("option", { value: "staff" }, "staff"), h("option", { value: "owner" }, "owner"));
    const status = h("div", { role: "status", "aria-live": "polite" });
    const form = h("form", { class: "inline", onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api("POST", `/v1/providers/${ctx.providerId}/members`, { key: newKey(), body: { email: email.value, role: role.value } });
        refresh(h("p", { class: "ok", role: "status" }, `Invited ${email.value}: a sign-in link is on its way.`));
      } catch (error) { status.replaceChildren(errorBox(error)); }
    } }, field("Email", email), field("Role", role), h("button", { type: "submit" }, "Invite"), status);
    return [h("p", { class: "muted" }, "Owners see everything; staff run bookings and see no money or settings."),
      table(["Email", "Role", "Since", ""], items.map((m) => h("tr", {},
        h("td", {}, m.email), h("td", {}, m.role, m.accepted_at ? "" : " (invited)"), h("td", {}, when(m.created_at)),
        h("td", {}, m.user_id !== ctx.session.user.id && removeButton("Remove", "Remove the member",
          `${m.email} loses access to this provider at once.`,
          () => api("DELETE", `/v1/providers/${ctx.providerId}/members/${m.user_id}`), refresh))))), form];
  });
}

function auditLog(ctx) {
  let cursor;
  const rows = h("tbody", {});
  const more = h("button", { type: "button" }, "Older entries");
  const load = async () => {
    try {
      const page = await api("GET", `/v1/providers/${ctx.providerId}/audit-log`, { query: { limit: 25, cursor } });
      rows.append(...page.items.map((a) => h("tr", {}, h("td", {}, when(a.created_at)), h("td", {}, a.action),
        h("td", {}, `${a.actor}${a.actor_role ? ` (${a.actor_role})` : ""}`),
        h("td", {}, a.target_type ? `${a.target_type} ${String(a.target_id || "").slice(0, 8)}` : "—"))));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (error) { more.replaceWith(errorBox(error)); }
  };
  more.addEventListener("click", load);
  load();
  return section("audit", "Audit log", h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ["When", "Action", "Who", "On"].map((t) => h("th", { scope: "col" }, t)))), rows)), more);
}

export async function settingsPage(ctx) {
  return h("section", {}, h("h1", {}, "Settings"),
    h("nav", { class: "quick", "aria-label": "Settings sections" }, [["stripe", "Payouts with Stripe"],
      ["tokens", "Public tokens"], ["webhooks", "Webhooks"],
      ["deliveries", "Deliveries"], ["members", "Members"], ["audit", "Audit log"]].map(([id, t], i) => [i ? " · " : "",
      h("a", { href: `#${id}` }, t)])),
    stripeAccount(ctx), tokens(ctx), endpoints(ctx), deliveries(ctx), members(ctx), auditLog(ctx));
}
