// Bookings: the day's and upcoming list with filters (status, dates, resource; all in the URL, so a filtered
// view can be bookmarked), one booking with the commands its status allows, and the approve/decline pages
// the request email links to.
import { all, api, command, newKey } from "./api.js";
import {
  badge, confirmDialog, day, errorBox, field, h, label, minorUnits, money, toast, when,
} from "./ui.js";

const STATUSES = ["requested", "pending_payment", "paid", "checked_in", "checked_out", "completed", "cancelled",
  "declined", "expired"];

const isoDay = (date) => `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}-${String(date.getDate()).padStart(2, "0")}`;
const today = () => isoDay(new Date());
const startOf = (text) => { const [y, m, d] = text.split("-").map(Number); return new Date(y, m - 1, d); };
const plusDays = (text, days) => { const date = startOf(text); date.setDate(date.getDate() + days); return isoDay(date); };

async function resourcesOf(ctx) {
  const { items } = await all("/v1/resources", { provider: ctx.providerId, limit: 200 }, 1000);
  return Object.fromEntries(items.map((r) => [r.id, r]));
}

function what(booking) {
  return booking.kind === "stay" ? `${nights(booking)} night${nights(booking) === 1 ? "" : "s"}` :
    booking.service_snapshot?.name || "appointment";
}

function nights(booking) { return Math.round((new Date(booking.end_at) - new Date(booking.start_at)) / 86_400_000); }

function period(booking) {
  if (booking.kind === "stay") return `${day(booking.start_at)} → ${day(booking.end_at)}`;
  return `${when(booking.start_at)} – ${new Date(booking.end_at).toLocaleTimeString("en-GB", { timeStyle: "short" })}`;
}

export async function bookingsPage(ctx) {
  const query = new URLSearchParams(location.search);
  const filters = { status: query.get("status") || "", from: query.get("from") ?? today(), to: query.get("to") || "",
    resource: query.get("resource") || "" };
  const [resources, found] = await Promise.all([resourcesOf(ctx), all("/v1/bookings", {
    provider: ctx.providerId, status: filters.status, resource: filters.resource, limit: 200,
    from: filters.from && startOf(filters.from).toISOString(),
    to: filters.to && startOf(plusDays(filters.to, 1)).toISOString() })]);
  const bookings = found.items.sort((a, b) => a.start_at.localeCompare(b.start_at));

  const select = (name, options, value) => h("select", { name, id: `filter-${name}` },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter bookings", onsubmit: (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) params.set(name, value);
    ctx.go(`/console/bookings?${params}`);
  } },
  field("Status", select("status", [["", "Any status"], ...STATUSES.map((s) => [s, label(s)])], filters.status)),
  field("From", h("input", { type: "date", name: "from", value: filters.from })),
  field("To", h("input", { type: "date", name: "to", value: filters.to })),
  field("Resource", select("resource", [["", "Every resource"],
    ...Object.values(resources).map((r) => [r.id, r.name])], filters.resource)),
  h("button", { type: "submit" }, "Apply"));

  const quick = h("p", { class: "quick" }, "Show: ",
    h("a", { href: `/console/bookings?from=${today()}&to=${today()}` }, "Today"), " · ",
    h("a", { href: `/console/bookings?from=${today()}` }, "Today and upcoming"), " · ",
    h("a", { href: "/console/bookings?status=requested&from=" }, "Requests to answer"), " · ",
    h("a", { href: "/console/bookings?from=" }, "Everything"));

  const list = bookings.length ? h("ul", { class: "bookings", "aria-label": "Bookings" }, bookings.map((b) => h("li", {
    "data-booking": b.id, "data-status": b.status },
  h("a", { href: `/console/bookings/${b.id}`, class: "booking-link" },
    h("span", { class: "when" }, period(b)),
    h("span", { class: "who" }, b.customer?.name || "—"),
    h("span", { class: "res" }, `${resources[b.resource_id]?.name || "a removed resource"} · ${what(b)}`),
    h("span", { class: "amt" }, money(b.amount, b.currency)), badge(b.status)))))
    : h("p", { class: "empty muted" }, "No bookings match these filters.");
  return h("section", {}, h("h1", {}, "Bookings"), quick, form,
    h("p", { class: "muted count", role: "status" }, `${bookings.length} booking${bookings.length === 1 ? "" : "s"}` +
      (found.more ? " (the first 1,000; narrow the filters)" : "")), list);
}

function detailList(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function summary(booking, resource) {
  const deposit = booking.deposit;
  return detailList([
    ["Status", badge(booking.status)],
    ["Customer", [booking.customer?.name, booking.customer?.email && ` <${booking.customer.email}>`,
      booking.customer?.phone && ` · ${booking.customer.phone}`]],
    ["When", period(booking)],
    ["What", `${resource?.name || "a removed resource"} · ${what(booking)}`],
    ["Amount", money(booking.amount, booking.currency)],
    booking.status === "requested" && booking.hold_expires_at && ["Answer by", when(booking.hold_expires_at)],
    booking.status === "pending_payment" && booking.hold_expires_at && ["Payment due by", when(booking.hold_expires_at)],
    deposit && ["Security deposit", [money(deposit.amount, deposit.currency), " · ", h("span", { class: "deposit-status" },
      label(deposit.status)), deposit.claimed_amount ? ` · claimed ${money(deposit.claimed_amount, deposit.currency)}` : "",
    deposit.claim_deadline && deposit.status === "authorized" ? ` · claim by ${when(deposit.claim_deadline)}` : ""]],
  ]);
}

/** A confirmed command: a dialog, the job followed to its end, then the booking read again. */
function commandButton(ctx, booking, { text, path, title, body = () => ({}), fields = [], explain, danger, prepare }) {
  return h("button", { type: "button", class: danger ? "danger" : "", "data-command": path, onclick: async () => {
    const key = newKey(); // one intent, one key: a retry from this dialog is the same command
    const ready = prepare ? prepare() : Promise.resolve();
    const done = await confirmDialog({ title, confirm: text, danger, ready,
      body: [explain, ...fields].filter(Boolean),
      action: async (progress) => command(`/v1/bookings/${booking.id}/${path}`, body(), key,
        (status) => progress(`Job ${status}…`)) });
    if (done) { toast(`${text}: done (booking ${label(done.result?.status || "updated")}).`); ctx.go(location.pathname); }
  } }, text);
}

function noteField(name, labelText) {
  return field(labelText, h("textarea", { name, rows: 2, maxlength: 500 }));
}

function actions(ctx, booking) {
  const buttons = [];
  const note = (form) => () => { const value = document.querySelector(`dialog textarea[name=${form}]`)?.value.trim();
    return value ? { [form === "reason" ? "reason" : "note"]: value } : {}; };
  if (booking.status === "requested") {
    buttons.push(h("a", { class: "button primary", href: `/console/bookings/${booking.id}/approve` }, "Approve"),
      h("a", { class: "button", href: `/console/bookings/${booking.id}/decline` }, "Decline"));
  }
  if (booking.status === "paid" && booking.kind === "stay") {
    buttons.push(commandButton(ctx, booking, { text: "Check in", path: "check-in", title: "Check the guest in",
      fields: [noteField("note", "Note (optional)")], body: note("note") }));
  }
  if (booking.status === "checked_in") {
    buttons.push(commandButton(ctx, booking, { text: "Check out", path: "check-out", title: "Check the guest out",
      explain: booking.deposit?.status === "authorized" ? h("p", {}, "The deposit stays held until you claim or release it.") : null,
      fields: [noteField("note", "Note (optional)")], body: note("note") }));
  }
  if (booking.status === "paid" && booking.kind === "slot") {
    buttons.push(commandButton(ctx, booking, { text: "Complete", path: "complete", title: "Mark the booking completed",
      explain: h("p", {}, "The service was delivered; the provider's payable matures for payout."),
      fields: [noteField("note", "Note (optional)")], body: note("note") }));
  }
  if (booking.status === "checked_out" && booking.deposit?.status === "authorized") {
    const currency = booking.deposit.currency;
    const amount = h("input", { name: "amount", inputmode: "decimal", required: true, autocomplete: "off",
      value: (booking.deposit.amount / 100).toFixed(2) });
    const reason = h("textarea", { name: "claim-reason", rows: 2, required: true, maxlength: 500 });
    buttons.push(commandButton(ctx, booking, { text: "Claim deposit", path: "deposit/claim", title: "Claim from the deposit",
      explain: h("p", {}, `Up to ${money(booking.deposit.amount, currency)} is held on the guest's card.`),
      fields: [field(`Amount (${currency})`, amount), field("Reason (the guest is told)", reason)],
      body: () => ({ amount: minorUnits(amount.value, currency), reason: reason.value.trim() }) }),
    commandButton(ctx, booking, { text: "Release deposit", path: "deposit/release", title: "Release the deposit",
      explain: h("p", {}, "Nothing is charged; the hold on the guest's card is cancelled."),
      fields: [noteField("reason", "Reason (optional)")], body: note("reason") }));
  }
  if (["requested", "pending_payment", "paid"].includes(booking.status)) {
    const quoteBox = h("div", { class: "quote", "aria-live": "polite" }, h("p", { class: "muted" }, "Working out the refund…"));
    buttons.push(commandButton(ctx, booking, { text: "Cancel booking", path: "cancel", title: "Cancel this booking",
      danger: true, explain: quoteBox, fields: [noteField("reason", "Reason (optional, the customer is told)")],
      body: note("reason"), prepare: () => showQuote(booking, quoteBox) }));
  }
  return buttons.length ? h("div", { class: "actions", role: "group", "aria-label": "Actions" }, buttons) : null;
}

async function showQuote(booking, box) {
  box.replaceChildren(h("p", { class: "muted" }, "Working out the refund…"));
  const quote = await api("GET", `/v1/bookings/${booking.id}/refund-quote`);
  const policy = quote.policy.length ? quote.policy.map((w) => `${w.refund_percent} % from ${w.min_hours_before_start} h before`).join("; ")
    : "no refunds";
  box.replaceChildren(
    h("p", { class: "refund", "data-refund": quote.refund },
      quote.basis === "policy" ? `Refund to the customer: ${money(quote.refund, quote.currency)} ` +
        `(${quote.refund_percent} % of ${money(quote.paid, quote.currency)} paid, cancelling ${quote.hours_before_start} h before the start).`
        : "Nothing was paid: no refund is due, and nothing will be charged."),
    quote.basis === "policy" && h("p", { class: "muted" }, `The provider keeps ${money(quote.paid - quote.refund, quote.currency)}. Policy: ${policy}.`));
}

function trail(booking) {
  return h("section", {}, h("h2", {}, "History"), h("ol", { class: "trail" }, booking.audit.map((a) => h("li", {},
    h("time", { datetime: a.created_at }, when(a.created_at)), " ", a.from_status ? `${label(a.from_status)} → ` : "",
    h("b", {}, label(a.to_status)), ` by ${a.actor}${a.actor_role ? ` (${a.actor_role})` : ""}`,
    a.reason ? ` — ${a.reason}` : "",
    a.detail?.refund ? ` · refund ${money(a.detail.refund.amount, a.detail.refund.currency)}` : ""))));
}

function payments(booking) {
  const rows = [...booking.payments.map((p) => `Payment ${money(p.amount, p.currency)}: ${label(p.status)}` +
    (p.amount_refunded ? `, ${money(p.amount_refunded, p.currency)} refunded` : "")),
  ...booking.refunds.map((r) => `Refund ${money(r.amount, r.currency)} (${r.kind}): ${r.status}`)];
  return rows.length ? h("section", {}, h("h2", {}, "Payments"), h("ul", {}, rows.map((row) => h("li", {}, row)))) : null;
}

export async function bookingPage(ctx, id) {
  const booking = await api("GET", `/v1/bookings/${id}`);
  const resources = await resourcesOf(ctx);
  return h("section", { "data-booking": booking.id, "data-status": booking.status },
    h("p", {}, h("a", { href: "/console/bookings" }, "← Bookings")),
    h("h1", {}, `${booking.customer?.name || "Booking"} · ${what(booking)}`),
    summary(booking, resources[booking.resource_id]), actions(ctx, booking), payments(booking), trail(booking));
}

/** The page the request email's approve/decline link opens: the booking, an optional message, and a confirm. */
export async function decisionPage(ctx, id, decision) {
  const booking = await api("GET", `/v1/bookings/${id}`);
  const resources = await resourcesOf(ctx);
  const approving = decision === "approve";
  const head = [h("p", {}, h("a", { href: `/console/bookings/${id}` }, "← The booking")),
    h("h1", {}, approving ? "Approve this request?" : "Decline this request?"), summary(booking, resources[booking.resource_id])];
  if (booking.status !== "requested") {
    return h("section", {}, head, h("p", { class: "notice", role: "status" },
      `This booking is ${label(booking.status)}: there is no request to ${decision} any more.`));
  }
  const message = h("textarea", { name: "message", rows: 3, maxlength: 500, id: "decision-message" });
  const status = h("div", { role: "status", "aria-live": "polite" });
  const key = newKey();
  const button = h("button", { type: "submit", class: approving ? "primary" : "danger" },
    approving ? "Approve and ask for payment" : "Decline the request");
  const form = h("form", { class: "card", onsubmit: async (event) => {
    event.preventDefault();
    button.disabled = true;
    status.replaceChildren(h("p", { class: "muted" }, "Sending…"));
    const text = message.value.trim();
    try {
      const job = await command(`/v1/bookings/${id}/${decision}`, text ? { [approving ? "note" : "reason"]: text } : {},
        key, (s) => status.replaceChildren(h("p", { class: "muted" }, `Job ${s}…`)));
      form.replaceChildren(h("p", { class: "ok", role: "status" }, approving
        ? `Approved: the booking is ${label(job.result.status)}; the guest is asked to pay.`
        : `Declined: the booking is ${label(job.result.status)}; the dates are free again.`),
      h("p", {}, h("a", { href: `/console/bookings/${id}` }, "Open the booking")));
    } catch (error) {
      status.replaceChildren(errorBox(error));
      button.disabled = false;
    }
  } }, field(approving ? "Message to the guest (optional)" : "Reason, told to the guest (optional)", message),
  h("div", { class: "actions" }, button, h("a", { class: "button", href: `/console/bookings/${id}` }, "Not now")), status);
  return h("section", {}, head, form);
}
