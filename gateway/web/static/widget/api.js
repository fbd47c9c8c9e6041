// The public API as the widget calls it: a bearer token, problems as errors, 429/in-flight waits honoured
// (Retry-After), a lost answer retried with the same Idempotency-Key, and jobs followed until terminal.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || `The booking service answered ${status}.`);
    this.status = status;
    this.code = problem.code || "";
  }
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export const newKey = () => crypto.randomUUID();

// onWait(seconds, why) tells the page why it is waiting (rate limited, or the same request still in flight).
export function makeApi(token, onWait = () => {}) {
  async function call(method, path, { body, key } = {}) {
    let lost = 0;
    for (;;) {
      const headers = { Accept: "application/json", Authorization: `Bearer ${token()}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (key) headers["Idempotency-Key"] = key; // the same key on every retry of this attempt
      let response;
      try {
        response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (error) {
        if (lost++ >= 3) throw new ApiError(0, { detail: "The booking service cannot be reached. Check your connection and try again." });
        await pause(500 * 2 ** lost);
        continue;
      }
      const data = response.status === 204 ? null : await response.json().catch(() => ({}));
      const inFlight = response.status === 409 && data && data.code === "IDEMPOTENCY_KEY_IN_FLIGHT";
      if (response.status === 429 || inFlight) {
        const seconds = Math.max(1, Math.ceil(Number(response.headers.get("Retry-After")) || 1));
        onWait(seconds, response.status === 429 ? "busy" : "in-flight");
        await pause(seconds * 1000);
        continue;
      }
      if (!response.ok) throw new ApiError(response.status, data || {});
      return data;
    }
  }

  async function followJob(statusUrl, timeoutMs = 60000) {
    const deadline = Date.now() + timeoutMs;
    for (let wait = 150; ; wait = Math.min(1000, wait * 1.5)) {
      const job = await call("GET", statusUrl);
      if (job.status === "succeeded" || job.status === "failed") return job;
      if (Date.now() > deadline) throw new ApiError(0, { detail: "This is taking longer than it should. Reload the page to see where it stands." });
      await pause(wait);
    }
  }

  async function until(path, done, timeoutMs = 60000) {
    const deadline = Date.now() + timeoutMs;
    for (let wait = 200; ; wait = Math.min(1500, wait * 1.5)) {
      const value = await call("GET", path);
      if (done(value)) return value;
      if (Date.now() > deadline) return value;
      await pause(wait);
    }
  }

  return {
    get: (path) => call("GET", path),
    post: (path, body, key) => call("POST", path, { body, key }),
    followJob,
    until,
  };
}
