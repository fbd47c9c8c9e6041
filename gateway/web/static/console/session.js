// The signed-in session, kept in this tab's sessionStorage only (never in a URL, gone with the tab). The page
// to return to after signing in is not secret and must survive the email's new tab: localStorage.
const KEY = "totem.console.session";
const PROVIDER = "totem.console.provider";
const NEXT = "totem.console.next";

export function saveSession(created) {
  sessionStorage.setItem(KEY, JSON.stringify({
    token: created.session_token, expires_at: created.expires_at, user: created.user,
    memberships: created.memberships,
  }));
}

export function loadSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (session && new Date(session.expires_at) > new Date()) return session;
  } catch { /* a damaged entry is no session */ }
  sessionStorage.removeItem(KEY);
  return null;
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(PROVIDER);
}

export function chosenProvider() { return sessionStorage.getItem(PROVIDER); }
export function chooseProvider(id) { sessionStorage.setItem(PROVIDER, id); }

export function rememberNext(path) {
  if (path.startsWith("/console/") && !path.startsWith("/console/sign-in")) localStorage.setItem(NEXT, path);
}

export function takeNext() {
  const next = localStorage.getItem(NEXT);
  localStorage.removeItem(NEXT);
  return next && next.startsWith("/console/") ? next : null;
}
