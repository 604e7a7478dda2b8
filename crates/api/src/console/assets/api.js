// The /v1 API from the browser: the token lives in sessionStorage and is
// sent as the X-API-Key header, never in a URL.

const KEY = 'simbatch.token';

/** The signed-in token (this tab only). */
export const session = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

/** An answer other than 2xx, carrying the problem+json body. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

/**
 * Call the API. `body` is sent as JSON unless `type` names another media
 * type; `raw` returns the Response instead of parsed JSON.
 */
export async function api(path, { method = 'GET', body, type, raw = false, token, signal } = {}) {
  const headers = { 'X-API-Key': token ?? session.get() ?? '' };
  let payload = body;
  if (body !== undefined) {
    headers['Content-Type'] = type || 'application/json';
    if (!type) payload = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, { method, headers, body: payload, signal, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { code: 'network', detail: 'the server cannot be reached' });
  }
  if (!r.ok) {
    let p = null;
    try { p = await r.json(); } catch { p = { detail: r.statusText }; }
    if (r.status === 401 && token === undefined) {
      session.clear();
      window.dispatchEvent(new CustomEvent('simbatch:signed-out'));
    }
    throw new ApiError(r.status, p);
  }
  if (raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

/** Build a query string from the defined, non-empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

function nameFrom(response, fallback) {
  const cd = response.headers.get('Content-Disposition') || '';
  const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(cd);
  return m ? decodeURIComponent(m[1]) : fallback;
}

/**
 * Fetch a file with the auth header and hand it to the browser as a
 * download (Blob + object URL, so no token ever appears in a URL).
 */
export async function download(path, fallbackName) {
  const r = await api(path, { raw: true });
  const blob = await r.blob();
  const name = nameFrom(r, fallbackName);
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return { name, size: blob.size };
}
