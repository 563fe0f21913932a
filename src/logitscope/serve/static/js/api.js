// JSON API calls. A newer call on the same channel aborts the older one (AbortController) and a
// sequence number drops any answer that still arrives late, so the page shows only the newest.

export class Superseded extends Error {}

const controllers = new Map();
const latest = new Map();
let seq = 0;
let inFlight = 0;
const listeners = [];

export function onBusy(fn) { listeners.push(fn); }
function busy(delta, channel) {
  inFlight += delta;
  for (const fn of listeners) fn(inFlight, channel);
}

export async function getJSON(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status}`);
  return r.json();
}

async function once(channel, path, body, signal, my, asFile) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  const isJSON = (r.headers.get("content-type") || "").includes("json");
  const data = r.ok && asFile ? await r.blob() : isJSON ? await r.json().catch(() => ({ error: `HTTP ${r.status}` })) : { error: `HTTP ${r.status}` };
  if (latest.get(channel) !== my) throw new Superseded();
  if (!r.ok) {
    const err = new Error((data && data.error) || `HTTP ${r.status}`);
    err.status = r.status;
    err.retryAfter = Number(r.headers.get("Retry-After") || 0);
    throw err;
  }
  return { data, response: r };
}

// POST body to path on a channel; resolves with the parsed JSON (a Blob with asFile).
// 503 (queue full) is retried after Retry-After, up to three times.
export async function post(channel, path, body, { asFile = false } = {}) {
  controllers.get(channel)?.abort();
  const ctl = new AbortController();
  controllers.set(channel, ctl);
  const my = ++seq;
  latest.set(channel, my);
  busy(+1, channel);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        return (await once(channel, path, body, ctl.signal, my, asFile)).data;
      } catch (e) {
        if (e.name === "AbortError") throw new Superseded();
        if (e.status === 503 && attempt < 3) {
          await new Promise((res) => setTimeout(res, 1000 * Math.max(1, e.retryAfter)));
          if (latest.get(channel) !== my) throw new Superseded();
          continue;
        }
        throw e;
      }
    }
  } finally {
    busy(-1, channel);
  }
}
