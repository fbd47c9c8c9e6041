// The booking widget: choose, see free times, give your details, book, pay, see it confirmed; or, with the
// customer link (#ct=…), see your booking and cancel it knowing the refund first. Public API only.
import { ApiError, makeApi, newKey } from "./api.js";
import { h, say } from "./dom.js";
import * as f from "./format.js";
import { paymentAdapter } from "./pay.js";
import { manage } from "./manage.js";

const root = document.getElementById("widget");
const config = { ...root.dataset };
const statusLine = h("p", { id: "status", role: "status", "aria-live": "polite" });
const alertLine = h("p", { id: "alert", role: "alert" });
const WINDOW_DAYS = 7;
const STAY_WINDOW_DAYS = 60;

function reportHeight() {
  if (window.parent !== window) {
    window.parent.postMessage({ type: "totem-widget:height", height: document.documentElement.scrollHeight }, "*");
  }
}

function waiting(seconds, why) {
  say(statusLine, why === "busy" ? `The booking service is busy; trying again in ${seconds} s…` : "Still working on your request…");
}

function fail(error) {
  say(alertLine, error instanceof ApiError ? error.message : "Something went wrong. Please reload the page.", "error");
}

function section(id, title) {
  const heading = h("h2", { id: `${id}-heading`, tabindex: "-1" }, title);
  return { element: h("section", { id, "aria-labelledby": heading.id }, heading), heading };
}

function field(id, label, input) {
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

async function start() {
  document.getElementById("loading").remove();
  root.append(statusLine, alertLine);
  new ResizeObserver(reportHeight).observe(document.body);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const bookingId = new URLSearchParams(location.search).get("booking");
  if (bookingId && fragment.get("ct")) {
    await manage(root, config, makeApi(() => fragment.get("ct"), waiting), bookingId, { statusLine, alertLine });
    return;
  }
  if (!config.token) {
    say(alertLine, "This booking page opens from the provider's booking link.", "error");
    return;
  }
  await book(makeApi(() => config.token, waiting));
}

async function book(api) {
  let services;
  let resources;
  try {
    [services, resources] = await Promise.all([
      api.get(`/v1/services?provider=${config.providerId}&limit=200`),
      api.get(`/v1/resources?provider=${config.providerId}&limit=200`),
    ]);
  } catch (error) {
    fail(error);
    return;
  }
  services = services.items.filter((s) => !s.deleted_at);
  resources = resources.items.filter((r) => !r.deleted_at);
  const masters = resources.filter((r) => r.kind === "slot");
  const listings = resources.filter((r) => r.kind === "stay");
  const offered = services.filter((s) => masters.some((m) => m.service_ids.includes(s.id)));
  const state = { from: f.localDate(new Date(), config.timeZone), day: null, slot: null, attempt: null };

  const choose = section("choose", "1. What would you like?");
  const what = h("select", { required: true });
  for (const s of offered) what.append(h("option", { value: `service:${s.id}` }, `${s.name} · ${s.duration_minutes} min · ${f.money(s.price, s.currency)}`));
  for (const l of listings) what.append(h("option", { value: `listing:${l.id}` }, `Stay: ${l.name}${l.nightly_price ? ` · ${f.money(l.nightly_price, config.currency)} a night` : ""}`));
  const who = h("select", { required: true });
  const whoField = field("who", "With", who);
  choose.element.append(field("what", "Service or stay", what), whoField);

  const when = section("when", "2. When?");
  const zoneNote = h("p", { class: "hint" }, `Times are local to ${config.providerName} (${config.timeZone}).`);
  const earlier = h("button", { type: "button" }, "Earlier");
  const later = h("button", { type: "button" }, "Later");
  const range = h("span", { class: "range" });
  const days = h("div", { class: "days", role: "group", "aria-label": "Days" });
  const slots = h("div", { class: "slots", role: "group", "aria-labelledby": "slots-label" });
  const slotsLabel = h("h3", { id: "slots-label" });
  const stayBox = h("div", { class: "stay" });
  when.element.append(zoneNote, h("div", { class: "nav" }, earlier, range, later), days, slotsLabel, slots, stayBox);

  const details = section("details", "3. Your details");
  const chosen = h("p", { id: "chosen", class: "chosen" }, "Choose a time above.");
  const name = h("input", { type: "text", autocomplete: "name", required: true, maxlength: "200" });
  const email = h("input", { type: "email", autocomplete: "email", required: true, maxlength: "254" });
  const phone = h("input", { type: "tel", autocomplete: "tel", maxlength: "40" });
  const bookButton = h("button", { type: "submit", class: "primary" }, "Book");
  const form = h("form", { novalidate: false }, chosen, field("name", "Name", name), field("email", "Email", email),
    field("phone", "Phone (optional)", phone), bookButton);
  details.element.append(form);
  root.append(choose.element, when.element, details.element);

  const choice = () => {
    const [kind, id] = what.value.split(":");
    return kind === "listing" ? { kind: "stay", listing: listings.find((l) => l.id === id) }
      : { kind: "slot", service: offered.find((s) => s.id === id), master: masters.find((m) => m.id === who.value) };
  };

  function fillMasters() {
    const c = choice();
    whoField.hidden = c.kind === "stay";
    if (c.kind === "stay") return;
    const previous = who.value;
    who.replaceChildren(...masters.filter((m) => m.service_ids.includes(c.service.id)).map((m) => h("option", { value: m.id }, m.name)));
    if ([...who.options].some((o) => o.value === previous)) who.value = previous;
  }

  function select(slot) {
    state.slot = slot;
    for (const b of slots.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.start === slot.start_at));
    chosen.textContent = `${choice().service.name}, ${f.when(slot.start_at, config.timeZone)}`;
    say(alertLine, "");
    name.focus();
  }

  async function showSlots() {
    const c = choice();
    const to = f.addDays(state.from, WINDOW_DAYS - 1);
    range.textContent = `${f.dayLabel(state.from)} – ${f.dayLabel(to)}`;
    stayBox.replaceChildren();
    say(statusLine, "Loading free times…");
    let found;
    try {
      found = await api.get(`/v1/resources/${c.master.id}/availability?from=${state.from}&to=${to}&service_id=${c.service.id}`);
    } catch (error) {
      fail(error);
      return;
    }
    const byDay = new Map();
    for (let i = 0; i < WINDOW_DAYS; i++) byDay.set(f.addDays(state.from, i), []);
    for (const slot of found.slots) byDay.get(f.localDate(new Date(slot.start_at), config.timeZone))?.push(slot);
    if (!byDay.get(state.day)?.length) state.day = [...byDay].find(([, list]) => list.length)?.[0] ?? null;
    days.replaceChildren(...[...byDay].map(([day, list]) => {
      const button = h("button", { type: "button", "aria-pressed": String(day === state.day), disabled: list.length === 0 },
        h("span", {}, f.dayLabel(day)), h("span", { class: "count" }, list.length ? `${list.length} free` : "full"));
      button.addEventListener("click", () => { state.day = day; showSlots(); });
      return button;
    }));
    slotsLabel.textContent = state.day ? `Free times on ${f.dayLabel(state.day)}` : "No free times in these days; try later days.";
    slots.replaceChildren(...(byDay.get(state.day) || []).map((slot) => {
      const button = h("button", { type: "button", "data-start": slot.start_at, "aria-pressed": String(state.slot?.start_at === slot.start_at) },
        f.clock(slot.start_at, config.timeZone));
      button.addEventListener("click", () => select(slot));
      return button;
    }));
    say(statusLine, `${found.slots.length} free times shown.`);
  }

  async function showNights() {
    const c = choice();
    const to = f.addDays(state.from, STAY_WINDOW_DAYS - 1);
    range.textContent = `${f.dayLabel(state.from)} – ${f.dayLabel(to)}`;
    days.replaceChildren();
    slots.replaceChildren();
    slotsLabel.textContent = "";
    let found;
    try {
      found = await api.get(`/v1/resources/${c.listing.id}/availability?from=${state.from}&to=${to}`);
    } catch (error) {
      fail(error);
      return;
    }
    const free = new Set(found.nights);
    const checkIn = h("select", { required: true }, ...found.nights.map((n) => h("option", { value: n }, f.dayLabel(n))));
    const nights = h("select", { required: true });
    const guests = h("input", { type: "number", min: "1", max: "50", value: "1", required: true });
    const fillNights = () => {
      let count = 0;
      while (free.has(f.addDays(checkIn.value, count)) && count < 90) count++;
      nights.replaceChildren(...Array.from({ length: count }, (_, i) => h("option", { value: String(i + 1) }, `${i + 1} night${i ? "s" : ""}`)));
    };
    const update = () => {
      state.slot = checkIn.value ? { check_in: checkIn.value, check_out: f.addDays(checkIn.value, Number(nights.value)), guests: Number(guests.value) } : null;
      chosen.textContent = state.slot ? `${c.listing.name}, ${f.dayLabel(state.slot.check_in)} to ${f.dayLabel(state.slot.check_out)}` : "No free nights in this window.";
    };
    checkIn.addEventListener("change", () => { fillNights(); update(); });
    nights.addEventListener("change", update);
    guests.addEventListener("change", update);
    fillNights();
    update();
    stayBox.replaceChildren(field("check-in", "Check-in", checkIn), field("nights", "Nights", nights), field("guests", "Guests", guests));
    say(statusLine, `${found.nights.length} free nights shown.`);
  }

  const show = () => (choice().kind === "stay" ? showNights() : showSlots());
  const move = (days) => {
    const today = f.localDate(new Date(), config.timeZone);
    const next = f.addDays(state.from, days);
    state.from = next < today ? today : next;
    state.day = null;
    show();
  };
  earlier.addEventListener("click", () => move(-WINDOW_DAYS));
  later.addEventListener("click", () => move(WINDOW_DAYS));
  what.addEventListener("change", () => { state.slot = null; chosen.textContent = "Choose a time above."; fillMasters(); show(); });
  who.addEventListener("change", () => { state.slot = null; chosen.textContent = "Choose a time above."; show(); });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!state.slot) {
      say(alertLine, "Choose a time first.", "error");
      when.heading.focus();
      return;
    }
    const c = choice();
    const customer = { name: name.value.trim(), email: email.value.trim(), ...(phone.value.trim() ? { phone: phone.value.trim() } : {}) };
    const body = c.kind === "stay" ? { kind: "stay", resource_id: c.listing.id, ...state.slot, customer }
      : { kind: "slot", resource_id: c.master.id, service_id: c.service.id, start_at: state.slot.start_at, customer };
    const fingerprint = JSON.stringify(body);
    if (!state.attempt || state.attempt.fingerprint !== fingerprint) state.attempt = { key: newKey(), fingerprint };
    bookButton.disabled = true;
    say(alertLine, "");
    say(statusLine, "Booking…");
    try {
      const accepted = await api.post("/v1/bookings", body, state.attempt.key);
      say(statusLine, "Holding your time…");
      const job = await api.followJob(accepted.status_url);
      state.attempt = null; // terminal: a new try is a new attempt
      if (job.status === "failed") {
        if (job.error && job.error.code === "BOOKING_SLOT_TAKEN") {
          state.slot = null;
          chosen.textContent = "Choose a time above.";
          say(statusLine, "");
          say(alertLine, "Sorry, that time was just taken by someone else. Please pick another time.", "error");
          await show();
          when.heading.focus();
          return;
        }
        say(alertLine, (job.error && job.error.detail) || "The booking could not be made.", "error");
        return;
      }
      for (const s of [choose, when, details]) s.element.hidden = true;
      await held(api, job.result, chosen.textContent);
    } catch (error) {
      fail(error);
    } finally {
      bookButton.disabled = false;
    }
  });

  fillMasters();
  if (!what.options.length) {
    say(alertLine, "Nothing can be booked here yet.", "error");
    return;
  }
  await show();
}

function manageLink(result) {
  return `${location.origin}/widget/${config.providerSlug}?booking=${result.booking_id}#ct=${result.customer_token}`;
}

async function held(api, result, summary) {
  const link = h("a", { href: manageLink(result), target: "_top", id: "manage-link" }, "Your booking: view or cancel it");
  if (result.status === "requested") {
    const sent = section("requested", "Request sent");
    sent.element.append(h("p", {}, `${summary}. ${config.providerName} will answer your request; we will email you.`), h("p", {}, link));
    root.append(sent.element);
    say(statusLine, "Your request was sent.");
    sent.heading.focus();
    return;
  }
  const pay = section("pay", "4. Pay to confirm");
  const hold = h("p", { id: "hold", class: "hold" });
  const cards = h("div", { class: "cards" });
  const payButton = h("button", { type: "button", class: "primary" }, "Pay");
  pay.element.append(h("p", {}, summary), hold, cards, payButton);
  root.append(pay.element);
  const adapter = paymentAdapter(config);
  if (!adapter) {
    say(alertLine, "Online payment is not set up for this provider. Your time is held; the provider will contact you.", "error");
    payButton.hidden = true;
    return;
  }
  const intent = { id: result.payment_intent_id, clientSecret: result.client_secret };
  let booking;
  try {
    booking = await api.get(`/v1/bookings/${result.booking_id}`);
    await adapter.mount(cards, intent);
  } catch (error) {
    fail(error);
    return;
  }
  payButton.textContent = `Pay ${f.money(booking.amount, booking.currency)}`;
  const expiresAt = new Date(result.hold_expires_at || booking.hold_expires_at);
  const tick = () => {
    const left = expiresAt - Date.now();
    if (left > 0) {
      hold.textContent = `Your time is held for ${f.countdown(left)} (until ${f.clock(expiresAt, config.timeZone)}).`;
      return;
    }
    clearInterval(timer);
    hold.textContent = "Your hold has ended.";
    payButton.disabled = true;
    say(alertLine, "Your hold expired and the time is free again. Reload the page to book again.", "error");
  };
  const timer = setInterval(tick, 1000);
  tick();
  say(statusLine, "Your time is held. Pay to confirm it.");
  pay.heading.focus();

  payButton.addEventListener("click", async () => {
    payButton.disabled = true;
    say(alertLine, "");
    say(statusLine, "Paying…");
    const outcome = await adapter.confirm(intent, (message) => say(statusLine, message));
    if (!outcome.ok) {
      say(statusLine, "");
      say(alertLine, `${outcome.message} Try another card before your hold ends.`, "error");
      payButton.disabled = expiresAt <= Date.now();
      cards.querySelector("input, iframe")?.focus();
      return;
    }
    say(statusLine, "Payment accepted. Confirming your booking…");
    try {
      booking = await api.until(`/v1/bookings/${result.booking_id}`, (b) => b.status !== "pending_payment");
    } catch (error) {
      fail(error);
      return;
    }
    clearInterval(timer);
    pay.element.hidden = true;
    const done = section("done", booking.status === "paid" ? "You're booked" : "Your booking");
    done.element.append(h("p", {}, summary),
      h("p", {}, "Status: ", h("strong", { id: "booking-status" }, booking.status)),
      h("p", {}, `Paid ${f.money(booking.amount, booking.currency)}. A confirmation is on its way to ${booking.customer.email}.`),
      h("p", {}, link, h("br"), h("span", { class: "hint" }, "Keep this link: it is how you come back to your booking.")));
    root.append(done.element);
    say(statusLine, booking.status === "paid" ? "Booked and paid." : `Your booking is ${booking.status}.`);
    done.heading.focus();
  });
}

start();
