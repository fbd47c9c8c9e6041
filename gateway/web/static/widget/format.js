// Money, dates and times as the provider's customers read them, and the refund a cancellation gives.

export function money(amount, currency) {
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(amount / 100);
}

export function localDate(moment, timeZone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(moment);
}

export function dayLabel(isoDate) {
  const [y, m, d] = isoDate.split("-").map(Number);
  return new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" })
    .format(new Date(Date.UTC(y, m - 1, d)));
}

export function clock(moment, timeZone) {
  return new Intl.DateTimeFormat("en-GB", { timeZone, hour: "2-digit", minute: "2-digit" }).format(new Date(moment));
}

export function when(moment, timeZone) {
  return new Intl.DateTimeFormat(undefined, { timeZone, weekday: "short", day: "numeric", month: "short",
    year: "numeric", hour: "2-digit", minute: "2-digit" }).format(new Date(moment));
}

export function addDays(isoDate, days) {
  const [y, m, d] = isoDate.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

export function countdown(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")}`;
}

// The same rule as shared/payments.py quote_refund: the window with the largest min_hours_before_start still
// met decides the percent; the amount is rounded down; never more than what is left to refund.
export function refundQuote(booking, now = new Date()) {
  const paid = (booking.payments || []).filter((p) => p.status === "succeeded");
  const amount = paid.reduce((sum, p) => sum + p.amount, 0);
  const refunded = paid.reduce((sum, p) => sum + p.amount_refunded, 0);
  const hoursBefore = (new Date(booking.start_at) - now) / 3600000;
  const met = (booking.cancellation_policy || []).filter((w) => hoursBefore >= w.min_hours_before_start);
  const window = met.reduce((best, w) => (!best || w.min_hours_before_start > best.min_hours_before_start ? w : best), null);
  const percent = window ? window.refund_percent : 0;
  return { paid: amount, percent, amount: Math.min(Math.floor((amount * percent) / 100), amount - refunded) };
}
