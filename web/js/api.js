// The panel's one way to the server: the public REST API under /api/v1, with the session
// cookie and, for every change, the CSRF token the sign-in answered (kept in a cookie that
// this script may read).

const BASE = '/api/v1';

/** A problem the API answered (application/problem+json), or a network failure. */
export class ApiError extends Error {
  constructor(status, problem) {
    const p = typeof problem === 'object' && problem ? problem : { detail: String(problem || '') };
    super(p.detail || p.title || `HTTP ${status}`);
    this.status = status;
    this.problem = p;
    this.type = (p.type || '').split('/').pop();
  }

  /** The message the API gave for one field (422), if any. */
  field(name) {
    const found = (this.problem.errors || []).find((e) => e.field === name);
    return found ? found.message : null;
  }
}

function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)wharf_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : '';
}

let onSignedOut = () => {};
/** What to do when the API says the session has ended (401). */
export function whenSignedOut(f) {
  onSignedOut = f;
}

/**
 * Calls the API. `body` is sent as JSON unless `opts.raw` (then `opts.contentType`).
 * Answers the parsed JSON (or text), null for 204; throws ApiError otherwise.
 */
export async function api(method, path, body, opts = {}) {
  const headers = { accept: opts.accept || 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers['x-csrf-token'] = csrf();
  let payload;
  if (body !== undefined) {
    if (opts.raw) {
      payload = body;
      headers['content-type'] = opts.contentType || 'text/plain';
    } else {
      payload = JSON.stringify(body);
      headers['content-type'] = 'application/json';
    }
  }
  let res;
  try {
    res = await fetch(BASE + path, { method, headers, body: payload, credentials: 'same-origin' });
  } catch (e) {
    throw new ApiError(0, { title: 'The server cannot be reached', detail: 'Check the connection and try again.' });
  }
  if (res.status === 401 && !opts.signingIn) onSignedOut();
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  const data = type.includes('json') ? await res.json() : await res.text();
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const patch = (path, body) => api('PATCH', path, body);
export const del = (path) => api('DELETE', path);

/** A query string of the non-empty values of `params` (an object or URLSearchParams). */
export function qs(params) {
  const out = new URLSearchParams();
  const entries = params instanceof URLSearchParams ? params.entries() : Object.entries(params);
  for (const [k, v] of entries) {
    if (v !== undefined && v !== null && v !== '') out.set(k, v);
  }
  const s = out.toString();
  return s ? `?${s}` : '';
}

/** Downloads what a list answers as CSV for these filters. */
export async function downloadCsv(path, params, name) {
  const text = await api('GET', path + qs(params), undefined, { accept: 'text/csv' });
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
