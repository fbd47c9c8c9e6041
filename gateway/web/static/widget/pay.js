// Payment adapters. Each mounts its form into a container and confirms the booking's PaymentIntent from the
// browser with the publishable key and the intent's client secret, as Stripe.js does; the booking becomes
// paid when our gateway receives Stripe's signed webhook, which the page then sees on the booking.
//   fake:   a test-card form confirming on the local fake Stripe (dev and tests)
//   stripe: Stripe.js's Payment Element from js.stripe.com (a real STRIPE_PUBLISHABLE_KEY)
// 3-D Secure (fake): a card whose bank wants the customer leaves the intent requires_action with a
// redirect_to_url. The bank's page opens in a popup window, not in an iframe (the page's CSP allows no frames,
// and the widget is itself framed on the host's site) nor by navigating this page (the hold, the booking and
// the token would be lost). The widget meanwhile reads the intent, as Stripe.js does (publishable key and
// client secret), until the customer has answered, then closes the window; return_url is a static "you may
// close this window" page of ours.
import { h } from "./dom.js";

const TEST_CARDS = [
  ["pm_card_visa", "Visa ending 4242 (test card that pays)"],
  ["pm_card_authenticationRequired", "Visa ending 3184 (test card that asks for 3-D Secure)"],
  ["pm_card_chargeDeclined", "Visa ending 0002 (test card that is declined)"],
];
const RETURN_PAGE = "/static/widget/authenticated.html";
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The intent as the browser may read it; null when the card service cannot be reached just now.
async function readIntent(config, intent) {
  const query = new URLSearchParams({ key: config.publishableKey, client_secret: intent.clientSecret });
  try {
    const response = await fetch(`${config.stripeBase}/v1/payment_intents/${encodeURIComponent(intent.id)}?${query}`);
    return response.ok ? await response.json() : null;
  } catch (error) {
    return null;
  }
}

function outcomeOf(body) {
  if (body.status === "succeeded" || body.status === "requires_capture") return { ok: true };
  if (body.status === "canceled") return { ok: false, message: "This payment was cancelled." };
  const error = body.last_payment_error || {};
  if (error.code === "payment_intent_authentication_failure") return { ok: false, message: "Your bank could not confirm it was you." };
  return { ok: false, message: error.message || "The payment did not go through." };
}

// Opens the bank's check and waits for the customer's answer (the intent leaves requires_action), or for the
// window to be closed unanswered. The intent's own end (its hold over, it is cancelled) also ends the wait.
async function authenticate(config, intent, action, notify) {
  const popup = window.open(action.redirect_to_url.url, "totem-3ds", "popup,width=480,height=640");
  if (!popup) return { ok: false, message: "Your browser blocked the window where your bank checks it is you. Allow pop-ups for this page and pay again." };
  notify("Your bank wants to check it is you: answer in the window that opened…");
  for (;;) {
    await pause(700);
    const closed = popup.closed;
    const current = await readIntent(config, intent);
    if (current && current.status !== "requires_action") {
      if (!popup.closed) popup.close();
      return outcomeOf(current);
    }
    if (closed) return { ok: false, message: "The window of your bank's check was closed before it finished." };
  }
}

function fakeAdapter(config) {
  let chosen = TEST_CARDS[0][0];
  return {
    mount(container) {
      const radios = TEST_CARDS.map(([value, label], i) => {
        const input = h("input", { type: "radio", name: "card", value, id: `card-${value}` });
        input.checked = i === 0;
        input.addEventListener("change", () => { chosen = value; });
        return h("div", { class: "choice" }, input, h("label", { for: input.id }, label));
      });
      container.replaceChildren(h("fieldset", {}, h("legend", {}, "Card (test mode)"), ...radios));
    },
    // {ok: true} or {ok: false, message}; notify(message) says what the customer must do meanwhile
    async confirm(intent, notify = () => {}) {
      const form = new URLSearchParams({ key: config.publishableKey, client_secret: intent.clientSecret, payment_method: chosen,
        return_url: new URL(RETURN_PAGE, location.origin).href });
      let response;
      try {
        response = await fetch(`${config.stripeBase}/v1/payment_intents/${encodeURIComponent(intent.id)}/confirm`, { method: "POST", body: form });
      } catch (error) {
        return { ok: false, message: "The card service cannot be reached. Try again." };
      }
      const body = await response.json().catch(() => ({}));
      if (!response.ok) return { ok: false, message: (body.error && body.error.message) || "The payment did not go through." };
      const action = body.next_action || {};
      if (body.status === "requires_action" && action.type === "redirect_to_url") return authenticate(config, intent, action, notify);
      return outcomeOf(body);
    },
  };
}

function loadStripeJs() {
  if (window.Stripe) return Promise.resolve(window.Stripe);
  return new Promise((resolve, reject) => {
    const script = h("script", { src: "https://js.stripe.com/v3/" });
    script.addEventListener("load", () => resolve(window.Stripe));
    script.addEventListener("error", () => reject(new Error("Stripe.js did not load")));
    document.head.append(script);
  });
}

function stripeAdapter(config) {
  let stripe;
  let elements;
  return {
    async mount(container, intent) {
      const Stripe = await loadStripeJs();
      stripe = Stripe(config.publishableKey);
      elements = stripe.elements({ clientSecret: intent.clientSecret });
      const slot = h("div", { id: "payment-element" });
      container.replaceChildren(slot);
      elements.create("payment").mount(slot);
    },
    async confirm() { // Stripe.js runs 3-D Secure itself, in its own modal
      const { error, paymentIntent } = await stripe.confirmPayment({ elements, redirect: "if_required" });
      if (error) return { ok: false, message: error.message };
      return paymentIntent && paymentIntent.status === "succeeded" ? { ok: true } : { ok: false, message: "The payment needs another step." };
    },
  };
}

export function paymentAdapter(config) {
  if (config.payments === "fake") return fakeAdapter(config);
  if (config.payments === "stripe") return stripeAdapter(config);
  return null;
}
