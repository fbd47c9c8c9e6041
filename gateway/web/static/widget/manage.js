// A customer's own booking, opened from the link they were given (customer token): its status, and
// cancelling it with the refund the provider's policy gives shown before they confirm.
import { ApiError, newKey } from "./api.js";
import { h, say } from "./dom.js";
import * as f from "./format.js";

const CANCELLABLE = ["requested", "pending_payment", "paid"];

function describe(booking, timeZone) {
  const snapshot = booking.service_snapshot || {};
  const what = snapshot.name || snapshot.listing_name || "Your booking";
  return booking.kind === "stay" ? `${what}, ${f.when(booking.start_at, timeZone)} to ${f.when(booking.end_at, timeZone)}`
    : `${what}, ${f.when(booking.start_at, timeZone)}`;
}

function refundText(booking) {
  const refunds = booking.refunds || [];
  if (!refunds.length) return booking.payments?.some((p) => p.status === "succeeded") ? "No refund under the policy." : "Nothing was charged.";
  return refunds.map((r) => `Refund of ${f.money(r.amount, r.currency)}: ${r.status === "succeeded" ? "sent to your card" : r.status}.`).join(" ");
}

function consequence(quote, providerName) {
  if (quote.basis === "nothing_paid") return "Nothing has been charged; cancelling frees the time.";
  if (quote.refund > 0) {
    return `If you cancel now you get ${f.money(quote.refund, quote.currency)} back (${quote.refund_percent} % of ${f.money(quote.paid, quote.currency)}, by ${providerName}'s cancellation policy).`;
  }
  return `If you cancel now you get nothing back under ${providerName}'s cancellation policy.`;
}

export async function manage(root, config, api, bookingId, { statusLine, alertLine }) {
  const heading = h("h2", { id: "manage-heading", tabindex: "-1" }, "Your booking");
  const box = h("section", { id: "manage", "aria-labelledby": heading.id }, heading);
  root.append(box);
  let booking;
  try {
    booking = await api.get(`/v1/bookings/${bookingId}`);
  } catch (error) {
    say(alertLine, error instanceof ApiError && error.status === 404 ? "This booking link is not valid." : error.message, "error");
    return;
  }
  const statusText = h("strong", { id: "booking-status" }, booking.status);
  const body = h("div", {});
  box.append(h("p", {}, describe(booking, config.timeZone)), h("p", {}, "Status: ", statusText),
    h("p", {}, `Amount: ${f.money(booking.amount, booking.currency)}`), body);

  const render = () => {
    statusText.textContent = booking.status;
    body.replaceChildren();
    if (booking.status === "cancelled") {
      body.append(h("p", { id: "refund" }, refundText(booking)));
      return;
    }
    if (!CANCELLABLE.includes(booking.status)) return;
    const ask = h("button", { type: "button" }, "Cancel booking…");
    const confirmBox = h("div", { class: "confirm", hidden: true });
    const yes = h("button", { type: "button", class: "danger" }, "Yes, cancel booking");
    const keep = h("button", { type: "button" }, "Keep booking");
    const quoteLine = h("p", { id: "refund-quote" });
    confirmBox.append(quoteLine, yes, keep);
    body.append(ask, confirmBox);
    let attempt = null;
    // the refund is quoted by the server (the rule the bookings worker applies), at the moment of asking
    ask.addEventListener("click", async () => {
      ask.disabled = true;
      say(alertLine, "");
      try {
        const quote = await api.get(`/v1/bookings/${bookingId}/refund-quote`);
        quoteLine.textContent = consequence(quote, config.providerName);
        ask.hidden = true;
        confirmBox.hidden = false;
        yes.focus();
      } catch (error) {
        say(alertLine, error.message, "error");
      } finally {
        ask.disabled = false;
      }
    });
    keep.addEventListener("click", () => { confirmBox.hidden = true; ask.hidden = false; ask.focus(); });
    yes.addEventListener("click", async () => {
      yes.disabled = keep.disabled = true;
      attempt = attempt || newKey();
      say(alertLine, "");
      say(statusLine, "Cancelling…");
      try {
        const accepted = await api.post(`/v1/bookings/${bookingId}/cancel`, {}, attempt);
        const job = await api.followJob(accepted.status_url);
        attempt = null;
        if (job.status === "failed") {
          say(alertLine, (job.error && job.error.detail) || "The booking could not be cancelled.", "error");
          booking = await api.get(`/v1/bookings/${bookingId}`);
          render();
          return;
        }
        booking = await api.until(`/v1/bookings/${bookingId}`,
          (b) => b.status === "cancelled" && (b.refunds || []).every((r) => r.status !== "pending"), 20000);
        render();
        say(statusLine, "Your booking is cancelled.");
        heading.focus();
      } catch (error) {
        say(alertLine, error.message, "error");
        yes.disabled = keep.disabled = false;
      }
    });
  };
  render();
  say(statusLine, `Your booking is ${booking.status}.`);
}
