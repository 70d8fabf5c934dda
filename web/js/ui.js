// Shared pieces of every screen: statuses, times, problems, payloads, lists with the API's
// cursors and filters kept in the URL, buttons that say when they are busy.

import { html, useEffect, useState, useCallback, useRef } from '../vendor/htm-preact-standalone.module.js';
import { api, qs, downloadCsv } from './api.js';
import { withQuery } from './router.js';

export { html };

/** Roles by rank; `can(role, 'admin')` says whether `role` is admin or above. */
const RANK = { event_viewer: 0, viewer: 1, editor: 2, admin: 3, owner: 4 };
export function can(role, needed) {
  return (RANK[role] ?? -1) >= RANK[needed];
}

const TONE = {
  OK: 'ok', FINISHED: 'ok', resolved: 'ok', sent: 'ok', success: 'ok',
  ERROR: 'warn', FINISHED_WITH_ISSUES: 'warn', acknowledged: 'warn', warning: 'warn', pending: 'info',
  FAILED: 'bad', ABORTED: 'muted', open: 'bad', failed: 'bad', error: 'bad',
  NEW: 'info', TRANSFORMED: 'info', PENDING: 'info', PROCESSING: 'info', active: 'ok', inactive: 'muted', ignored: 'muted',
};

/** A status in colour and in words. */
export function Status({ value }) {
  if (value === null || value === undefined) return html`<span class="muted">—</span>`;
  return html`<span class=${`status tone-${TONE[value] || 'info'}`}>${String(value).replaceAll('_', ' ')}</span>`;
}

const FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** A time in the viewer's own time zone (the exact instant on hover). */
export function Time({ at }) {
  if (!at) return html`<span class="muted">—</span>`;
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return String(at);
  return html`<time datetime=${at} title=${d.toISOString()}>${FORMAT.format(d)}</time>`;
}

/** What the API said went wrong: its `detail`, and each field's message. */
export function Problem({ error }) {
  if (!error) return null;
  const p = error.problem || {};
  return html`<div class="problem" role="alert">
    <strong>${p.title || 'Something went wrong'}</strong>
    <p>${error.message}</p>
    ${(p.errors || []).length > 0 && html`<ul>${p.errors.map((e) => html`<li><code>${e.field}</code>: ${e.message}</li>`)}</ul>`}
  </div>`;
}

/** A labelled input; the API's message for the field beside it. */
export function Field({ label, name, error, hint, type = 'text', value, onInput, required, autocomplete, inputmode, children, ...rest }) {
  const id = `f-${name}`;
  const message = error && error.field ? error.field(name) : null;
  // A control given as children is tied to the hint or the error here as well.
  const box = useRef(null);
  useEffect(() => {
    if (!children || !box.current) return;
    const control = box.current.querySelector('input, select, textarea');
    if (!control) return;
    const described = message ? `${id}-error` : hint ? `${id}-hint` : null;
    if (described) control.setAttribute('aria-describedby', described);
    else control.removeAttribute('aria-describedby');
    if (message) control.setAttribute('aria-invalid', 'true');
    else control.removeAttribute('aria-invalid');
  });
  return html`<div class="field" ref=${box}>
    <label for=${id}>${label}</label>
    ${children || html`<input id=${id} name=${name} type=${type} value=${value ?? ''} required=${required}
      autocomplete=${autocomplete} inputmode=${inputmode} aria-invalid=${message ? 'true' : undefined}
      aria-describedby=${message ? `${id}-error` : hint ? `${id}-hint` : undefined}
      onInput=${(e) => onInput && onInput(e.target.value)} ...${rest} />`}
    ${hint && !message && html`<small id=${`${id}-hint`} class="hint">${hint}</small>`}
    ${message && html`<small id=${`${id}-error`} class="field-error">${message}</small>`}
  </div>`;
}

/** A button that runs `action`, says it is busy meanwhile, and shows what went wrong. */
export function Action({ label, busyLabel, action, kind = '', disabled, onDone, onError, ariaLabel }) {
  const [busy, setBusy] = useState(false);
  const run = async () => {
    setBusy(true);
    try {
      const out = await action();
      onDone && onDone(out);
    } catch (e) {
      onError ? onError(e) : alertProblem(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<button type="button" class=${kind} disabled=${disabled || busy} aria-busy=${busy ? 'true' : undefined}
    aria-label=${ariaLabel} onClick=${run}>${busy ? busyLabel || `${label}…` : label}</button>`;
}

let showNotice = () => {};
export function setNotice(f) {
  showNotice = f;
}
/** A short message at the top of the screen (what an action did, or why it failed). */
export function notice(text, tone = 'ok') {
  showNotice({ text, tone, at: Date.now() });
}
export function alertProblem(e) {
  notice(e.message || String(e), 'bad');
}

/** A payload, pretty-printed and collapsible. */
export function Json({ label, value, open = true }) {
  if (value === null || value === undefined) {
    return html`<details class="json"><summary>${label}</summary><p class="muted">None (cleared by retention, or not produced).</p></details>`;
  }
  return html`<details class="json" open=${open}><summary>${label}</summary><pre tabindex="0">${JSON.stringify(value, null, 2)}</pre></details>`;
}

/** Loads `path` (again when `deps` change); `[data, error, reload]`. */
export function useApi(path, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    if (!path) return undefined;
    setState((s) => ({ ...s, loading: true }));
    api('GET', path).then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [path, n, ...deps]);
  const reload = useCallback(() => setN((x) => x + 1), []);
  return [state.data, state.error, reload, state.loading];
}

/** Shows `children(data)` once loaded, a problem if it failed. */
export function Loaded({ data, error, children }) {
  if (error) return html`<${Problem} error=${error} />`;
  if (!data) return html`<p class="muted" aria-live="polite">Loading…</p>`;
  return children(data);
}

/**
 * A list screen's table: reads `path` with the query's filters and cursor, pages forward
 * with the API's cursor (kept in the URL), and exports CSV when `csv` names a file.
 */
export function PagedTable({ path, query, filters = [], columns, empty = 'Nothing matches.', csv, caption, reloadKey, first = null, more = (p) => p.next_cursor }) {
  const params = {};
  for (const f of filters) params[f] = query.get(f);
  const cursor = query.get('cursor');
  const limit = query.get('limit') || '50';
  const [page, error, refresh, loading] = useApi(path + qs({ ...params, cursor, limit }), [reloadKey]);
  return html`<div>
    <p class="toolbar buttons">
      <button type="button" onClick=${refresh} disabled=${loading} aria-busy=${loading ? 'true' : undefined}>Refresh</button>
      ${csv && html`<${Action} label="Export CSV" busyLabel="Exporting…" action=${() => downloadCsv(path, params, csv)} />`}
    </p>
    <${Loaded} data=${page} error=${error}>${(p) => html`
      <div class="table-wrap"><table>
        ${caption && html`<caption>${caption}</caption>`}
        <thead><tr>${columns.map((c) => html`<th scope="col">${c.label}</th>`)}</tr></thead>
        <tbody>
          ${p.items.length === 0 && html`<tr><td colspan=${columns.length} class="muted">${empty}</td></tr>`}
          ${p.items.map((row) => html`<tr>${columns.map((c) => html`<td data-label=${c.label}>${c.cell(row)}</td>`)}</tr>`)}
        </tbody>
      </table></div>
      <nav class="pager" aria-label="Pages">
        ${cursor && cursor !== first && html`<a href=${withQuery(query, { cursor: first })}>First page</a>`}
        ${more(p) && html`<a href=${withQuery(query, { cursor: p.next_cursor })} rel="next">Next page</a>`}
      </nav>`}
    <//>
  </div>`;
}

/**
 * A filter form: its fields start from the URL's query; applying it puts them in the URL
 * (and starts from the first page).
 */
export function Filters({ query, fields, onApply }) {
  // Times are typed in the viewer's zone and kept in the URL as UTC instants.
  const fromUrl = () => Object.fromEntries(fields.map((f) => {
    const v = query.get(f.name) || '';
    return [f.name, f.type === 'datetime' && v ? toLocalInput(v) : v];
  }));
  const [values, setValues] = useState(fromUrl);
  useEffect(() => {
    setValues(fromUrl());
  }, [query.toString()]);
  const submit = (e) => {
    e.preventDefault();
    const changes = { cursor: null };
    for (const f of fields) {
      const v = values[f.name];
      changes[f.name] = f.type === 'datetime' && v ? new Date(v).toISOString() : v;
    }
    onApply(withQuery(query, changes));
  };
  return html`<form class="filters" onSubmit=${submit} role="search" aria-label="Filters">
    ${fields.map((f) => html`<div class="field">
      <label for=${`filter-${f.name}`}>${f.label}</label>
      ${f.options
        ? html`<select id=${`filter-${f.name}`} value=${values[f.name]} onChange=${(e) => setValues({ ...values, [f.name]: e.target.value })}>
            <option value="">Any</option>
            ${f.options.map((o) => (Array.isArray(o) ? html`<option value=${o[0]}>${o[1]}</option>` : html`<option value=${o}>${o}</option>`))}
          </select>`
        : html`<input id=${`filter-${f.name}`} type=${f.type === 'datetime' ? 'datetime-local' : f.type || 'text'} value=${values[f.name]} placeholder=${f.placeholder}
            onInput=${(e) => setValues({ ...values, [f.name]: e.target.value })} />`}
    </div>`)}
    <div class="field actions"><button type="submit">Apply filters</button></div>
  </form>`;
}

/** An instant as the value of a datetime-local input, in the viewer's zone. */
function toLocalInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A link to an object, by its id (shortened) or a name. */
export function Ref({ to, id, name }) {
  if (!id) return html`<span class="muted">—</span>`;
  return html`<a href=${to}>${name || short(id)}</a>`;
}

const names = new Map();

/** The names of a configuration list by id, read once in a while (they rarely change). */
function namesOf(path) {
  const hit = names.get(path);
  if (hit && Date.now() - hit.at < 30000) return hit.promise;
  const promise = api('GET', `${path}?limit=500`).then(
    (page) => new Map(page.items.map((x) => [x.id, x.title || x.name])),
    () => new Map(),
  );
  names.set(path, { at: Date.now(), promise });
  return promise;
}

/** A link to a stream, source, destination, transformation or key, by its name. */
export function NameRef({ path, id }) {
  const [name, setName] = useState(null);
  useEffect(() => {
    let live = true;
    if (id) namesOf(path).then((m) => live && setName(m.get(id) || null));
    return () => {
      live = false;
    };
  }, [path, id]);
  if (!id) return html`<span class="muted">—</span>`;
  return html`<a href=${`${path}/${id}`}>${name || short(id)}</a>`;
}

export function short(id) {
  return String(id).slice(-8);
}

/** A number that links to the list it counts. */
export function CountLink({ n, to, label }) {
  if (!n) return html`<span class="muted">0<span class="sr-only"> ${label}</span></span>`;
  return html`<a href=${to} aria-label=${`${label}: ${n}`}>${n}</a>`;
}

/** The organisation's streams as filter options ([id, title]). */
export function useStreamOptions() {
  const [page] = useApi('/streams?limit=500');
  return page ? page.items.map((st) => [st.id, st.title]) : [];
}

/** A titled page section. */
export function Screen({ title, actions, children }) {
  useEffect(() => {
    document.title = `${title} · Wharf`;
  }, [title]);
  return html`<section class="screen" aria-labelledby="screen-title">
    <header class="screen-head"><h1 id="screen-title" tabindex="-1">${title}</h1>${actions && html`<div class="screen-actions">${actions}</div>`}</header>
    ${children}
  </section>`;
}

/** Parses JSON typed by a person; the value, or an error message saying where it is wrong. */
export function parseJson(text) {
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    return { error: `This is not valid JSON: ${e.message}. Correct it before sending.` };
  }
}
