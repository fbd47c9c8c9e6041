// Payment adapters. Each mounts its form into a container and confirms the booking's PaymentIntent from the
// browser with the publishable key and the intent's client secret, as Stripe.js does; the booking becomes
// paid when our gateway receives Stripe's signed webhook, which the page then sees on the booking.
//   fake:   a test-card form confirming on the local fake Stripe (dev and tests)
//   stripe: Stripe.js's Payment Element from js.stripe.com (a real STRIPE_PUBLISHABLE_KEY)
import { h } from "./dom.js";

const TEST_CARDS = [
  ["pm_card_visa", "Visa ending 4242 (test card that pays)"],
  ["pm_card_chargeDeclined", "Visa ending 0002 (test card that is declined)"],
];

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
    // {ok: true} or {ok: false, message}
    async confirm(intent) {
      const form = new URLSearchParams({ key: config.publishableKey, client_secret: intent.clientSecret, payment_method: chosen });
      let response;
      try {
        response = await fetch(`${config.stripeBase}/v1/payment_intents/${encodeURIComponent(intent.id)}/confirm`, { method: "POST", body: form });
      } catch (error) {
        return { ok: false, message: "The card service cannot be reached. Try again." };
      }
      const body = await response.json().catch(() => ({}));
      if (response.ok && body.status === "succeeded") return { ok: true };
      return { ok: false, message: (body.error && body.error.message) || "The payment did not go through." };
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
    async confirm() {
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
