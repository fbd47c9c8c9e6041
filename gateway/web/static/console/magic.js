// The emailed sign-in page: "Sign in to the console" exchanges the link's token for a session (POST
// /v1/auth/sessions), keeps it in this tab's sessionStorage and opens the console. The other button posts the
// form as before (the server shows a session token for API use).
import { saveSession, takeNext } from "./session.js";

const form = document.getElementById("magic");
const status = document.getElementById("magic-status");

form?.addEventListener("submit", async (event) => {
  if (event.submitter?.value !== "console") return;
  event.preventDefault();
  for (const button of form.querySelectorAll("button")) button.disabled = true;
  status.textContent = "Signing in…";
  const token = form.elements.token.value;
  try {
    const response = await fetch("/v1/auth/sessions", {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ token }),
    });
    const body = await response.json().catch(() => ({}));
    if (response.status !== 201) {
      status.textContent = `${body.code || response.status}: ${body.detail || "could not sign in"}. ` +
        "Ask for a new link on the console's sign-in page.";
      return;
    }
    saveSession(body);
    location.replace(takeNext() || "/console/bookings");
  } catch (error) {
    status.textContent = `Could not reach Totem (${error.message}); try again.`;
    for (const button of form.querySelectorAll("button")) button.disabled = false;
  }
});
