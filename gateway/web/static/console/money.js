// Money (owners): the balance per currency, a statement for a period (local dates of the provider), payouts.
import { api } from "./api.js";
import { errorBox, field, h, label, money, table, when } from "./ui.js";

const monthStart = () => { const d = new Date(); return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-01`; };
const todayText = () => { const d = new Date(); return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`; };

function balances(balance) {
  return h("section", { id: "balance" }, h("h2", {}, "Balance"),
    table(["Currency", "Pending", "Available", "In transit", "Paid out"], balance.balances.map((b) => h("tr", {
      "data-currency": b.currency },
    h("th", { scope: "row" }, b.currency), h("td", { "data-field": "pending" }, money(b.pending, b.currency)),
    h("td", { "data-field": "available" }, money(b.available, b.currency)),
    h("td", { "data-field": "in_transit" }, money(b.in_transit, b.currency)),
    h("td", { "data-field": "paid_out" }, money(b.paid_out, b.currency))))),
    h("p", { class: "muted" }, "Pending matures for payout after the service; available goes out with the next settlement."));
}

const STATEMENT_PAGE = 500; // entries a page loads (the API gives at most 1,000)

const balancesText = (balances) => Object.entries(balances).map(([c, v]) => money(v, c)).join(", ") || "nothing";

function entryRow(e) {
  return h("tr", {},
    h("td", {}, when(e.created_at)),
    h("td", {}, e.description || label(e.kind), e.booking_id ? [" · ", h("a", { href: `/console/bookings/${e.booking_id}` }, "booking")] : ""),
    h("td", { class: "num" }, money(e.amount, e.currency)), h("td", { class: "num" }, money(e.running_balance, e.currency)));
}

/** A statement's first page; "Show more" appends the next (the running balance carries on across pages). */
function statementView(first, nextPage) {
  const closing = h("span", { "data-field": "closing" }, balancesText(first.closing_balances));
  const rows = table(["When", "What", "Amount", "Balance"], first.entries.map(entryRow));
  const more = h("p", {});
  const offer = (cursor, failed) => more.replaceChildren(...(cursor ? [failed && errorBox(failed),
    h("button", { type: "button", onclick: async (event) => {
      event.target.disabled = true;
      try {
        const page = await nextPage(cursor);
        rows.querySelector("tbody").append(...page.entries.map(entryRow));
        closing.textContent = balancesText(page.closing_balances);
        offer(page.next_cursor);
      } catch (error) { offer(cursor, error); } // the error shown, and the button again to retry
    } }, "Show more")] : []));
  offer(first.next_cursor);
  return h("div", {}, h("p", {}, `Opening: ${balancesText(first.opening_balances)} · Closing: `, closing), rows, more);
}

function statementSection(ctx) {
  const from = h("input", { type: "date", name: "from", value: monthStart(), required: true });
  const to = h("input", { type: "date", name: "to", value: todayText(), required: true });
  const out = h("div", { "aria-live": "polite" });
  const load = async () => {
    out.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    const period = { from: from.value, to: to.value }; // "Show more" continues this period, whatever the inputs say now
    const page = (cursor) => api("GET", `/v1/providers/${ctx.providerId}/statement`,
      { query: { ...period, limit: STATEMENT_PAGE, ...(cursor ? { cursor } : {}) } });
    try {
      out.replaceChildren(statementView(await page(null), page));
    } catch (error) { out.replaceChildren(errorBox(error)); }
  };
  const form = h("form", { class: "filters", onsubmit: (event) => { event.preventDefault(); load(); } },
    field("From", from), field("To (inclusive)", to), h("button", { type: "submit" }, "Show statement"));
  load();
  return h("section", { id: "statement" }, h("h2", {}, "Statement"), form, out);
}

function payouts(page) {
  return h("section", { id: "payouts" }, h("h2", {}, "Payouts"),
    table(["Sent", "Period", "Total", "Bookings", "Status"], page.items.map((p) => h("tr", {},
      h("td", {}, when(p.created_at)), h("td", {}, `${when(p.period_start)} – ${when(p.period_end)}`),
      h("td", { class: "num" }, money(p.total, p.currency)), h("td", { class: "num" }, p.lines.length),
      h("td", {}, p.held_reason ? `held: ${p.held_reason}`
        : [...new Set(p.lines.map((l) => label(l.status)))].join(", ") || "—")))));
}

/** Why nothing can be paid out now (the Stripe account's onboarding is not finished), and where to fix it. */
function held(balance) {
  if (!balance.payouts_held) return null;
  return h("p", { class: "notice", id: "payouts-held", role: "status" }, `Payouts are on hold: ${balance.payouts_held}. `,
    h("a", { href: "/console/settings#stripe" }, "Finish setting up payouts with Stripe"), ".");
}

export async function moneyPage(ctx) {
  const [balance, payoutPage] = await Promise.all([
    api("GET", `/v1/providers/${ctx.providerId}/balance`),
    api("GET", "/v1/payouts", { query: { provider: ctx.providerId, limit: 50 } })]);
  return h("section", {}, h("h1", {}, "Money"), held(balance), balances(balance), statementSection(ctx),
    payouts(payoutPage));
}
