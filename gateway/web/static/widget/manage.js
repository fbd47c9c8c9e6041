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
    const quote = f.refundQuote(booking);
    const consequence = quote.paid === 0 ? "Nothing has been charged; cancelling frees the time."
      : quote.amount > 0 ? `If you cancel now you get ${f.money(quote.amount, booking.currency)} back (${quote.percent} % of ${f.money(quote.paid, booking.currency)}, by ${config.providerName}'s cancellation policy).`
        : `If you cancel now you get nothing back under ${config.providerName}'s cancellation policy.`;
    const ask = h("button", { type: "button" }, "Cancel booking…");
    const confirmBox = h("div", { class: "confirm", hidden: true });
    const yes = h("button", { type: "button", class: "danger" }, "Yes, cancel booking");
    const keep = h("button", { type: "button" }, "Keep booking");
    confirmBox.append(h("p", { id: "refund-quote" }, consequence), yes, keep);
    body.append(ask, confirmBox);
    let attempt = null;
    ask.addEventListener("click", () => { ask.hidden = true; confirmBox.hidden = false; yes.focus(); });
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
