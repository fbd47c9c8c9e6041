// The JSON API with the signed-in user's session. Errors are RFC 9457 problems; `ApiError` carries their
// stable `code`. Commands are jobs: `command` sends an Idempotency-Key (kept by the caller across retries of
// the same intent) and follows the job to its outcome.
import { clearSession, loadSession } from "./session.js";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || `HTTP_${status}`;
    this.problem = problem;
  }
}

let onSignedOut = () => {};
export function whenSignedOut(callback) { onSignedOut = callback; }

export async function api(method, path, { body, key, query } = {}) {
  const session = loadSession();
  const headers = { Accept: "application/json" };
  if (session) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (key) headers["Idempotency-Key"] = key;
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) if (value) params.set(name, value);
    if ([...params].length) url += `?${params}`;
  }
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({ detail: `unreadable answer (HTTP ${response.status})` }));
  if (!response.ok) {
    if (response.status === 401 && session) { clearSession(); onSignedOut(); }
    throw new ApiError(response.status, data);
  }
  return data;
}

export const newKey = () => crypto.randomUUID();

/** POST a command, then poll its job until it is succeeded or failed; a failed job throws its error code. */
export async function command(path, body, key, onProgress = () => {}) {
  const accepted = await api("POST", path, { body, key });
  onProgress("accepted");
  let delay = 150;
  for (;;) {
    const job = await api("GET", `/v1/jobs/${accepted.job_id}`);
    if (job.status === "succeeded") return job;
    if (job.status === "failed") {
      throw new ApiError(409, { code: job.error?.code || "JOB_FAILED", detail: job.error?.detail || "the job failed" });
    }
    onProgress(job.status);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 1.5, 1500);
  }
}

/** Every page of a cursor-paginated list, up to `max` items. */
export async function all(path, query, max = 1000) {
  const items = [];
  let cursor;
  do {
    const page = await api("GET", path, { query: { ...query, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return { items, more: Boolean(cursor) };
}
