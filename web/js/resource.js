// A configuration resource (keys, sources, destinations, transformations, lookup tables,
// alert rules and channels): its list, a form to create one (a JSON body the API checks,
// started from a template), and its page to read, change and delete it.

import { html, useState } from '../vendor/htm-preact-standalone.module.js';
import { api, post, patch } from './api.js';
import { navigate } from './router.js';
import { Screen, Time, useApi, Loaded, Action, notice, can, PagedTable, Problem, parseJson, Json, NameRef } from './ui.js';

/** A JSON body edited by hand: checked as JSON here, then by the API (its field errors shown). */
export function JsonForm({ label, initial, submitLabel, onSubmit, onCancel, hint }) {
  const [text, setText] = useState(() => JSON.stringify(initial, null, 2));
  const [jsonError, setJsonError] = useState(null);
  const [error, setError] = useState(null);
  const id = `json-${label.replace(/\W+/g, '-').toLowerCase()}`;
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    const parsed = parseJson(text);
    setJsonError(parsed.error || null);
    if (parsed.error) return;
    try {
      await onSubmit(parsed.value);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="card wide" onSubmit=${submit} aria-label=${label}>
    <h2>${label}</h2>
    <${Problem} error=${error} />
    <div class="field"><label for=${id}>Body (JSON)</label>
      <textarea id=${id} class="code" rows="14" spellcheck="false" aria-invalid=${jsonError ? 'true' : undefined}
        aria-describedby=${jsonError ? `${id}-error` : hint ? `${id}-hint` : undefined} onInput=${(e) => setText(e.target.value)} value=${text}></textarea>
      ${hint && !jsonError && html`<small id=${`${id}-hint`} class="hint">${hint}</small>`}
      ${jsonError && html`<small id=${`${id}-error`} class="field-error" role="alert">${jsonError}</small>`}</div>
    <button type="submit" class="primary">${submitLabel}</button>
    ${onCancel && html` <button type="button" onClick=${onCancel}>Cancel</button>`}
  </form>`;
}

const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d/;
const LINKS = { key_id: '/keys', source_id: '/sources', destination_id: '/destinations', transformation_id: '/transformations', stream_id: '/streams', copied_from: '/transformations' };

/** A resource's fields: plain values as a list, objects as collapsible JSON. */
export function Facts({ item, hide = [] }) {
  const entries = Object.entries(item).filter(([k]) => !hide.includes(k));
  const plain = entries.filter(([, v]) => v === null || typeof v !== 'object');
  const nested = entries.filter(([, v]) => v !== null && typeof v === 'object');
  const label = (k) => k.replaceAll('_', ' ');
  return html`<dl class="facts">${plain.map(([k, v]) => html`<dt>${label(k)}</dt><dd>${v === null || v === ''
    ? html`<span class="muted">—</span>`
    : LINKS[k] ? html`<${NameRef} path=${LINKS[k]} id=${v} />`
    : typeof v === 'string' && TIME.test(v) ? html`<${Time} at=${v} />`
      : typeof v === 'boolean' ? (v ? 'yes' : 'no')
        : String(v).includes('\n') ? html`<pre tabindex="0">${v}</pre>` : String(v)}</dd>`)}</dl>
    ${nested.map(([k, v]) => html`<${Json} label=${label(k)} value=${v} open=${JSON.stringify(v).length < 400} />`)}`;
}

/** The list screen of a resource kind, with its create form for roles that may write. */
export function ResourceList({ kind, me, query }) {
  const [creating, setCreating] = useState(false);
  const writes = kind.write && can(me.role, kind.write);
  return html`<${Screen} title=${kind.title} actions=${writes && !creating && html`<button type="button" class="primary" onClick=${() => setCreating(true)}>New ${kind.one}</button>`}>
    ${kind.intro && html`<p>${kind.intro}</p>`}
    ${creating && kind.form && html`<${kind.form} onSaved=${(out) => navigate(`${kind.link || kind.path}/${out.id}`)} />
      <p><button type="button" onClick=${() => setCreating(false)}>Cancel</button></p>`}
    ${creating && !kind.form && html`<${JsonForm} label=${`New ${kind.one}`} initial=${kind.template} submitLabel="Create" hint=${kind.hint}
      onCancel=${() => setCreating(false)}
      onSubmit=${async (body) => {
        const out = await post(kind.path, body);
        notice(out && out.secret ? `The ${kind.one} is created. Its secret, shown once: ${out.secret}` : `The ${kind.one} is created.`);
        navigate(`${kind.link || kind.path}/${out.id}`);
      }} />`}
    <${PagedTable} path=${kind.path} query=${query} filters=${kind.filters || []} csv=${`${kind.path.slice(1)}.csv`} columns=${[
      { label: kind.nameLabel || 'Name', cell: (r) => html`<a href=${`${kind.link || kind.path}/${r.id}`}>${r.title || r.name || r.id}</a>` },
      ...kind.columns,
      { label: 'Changed', cell: (r) => html`<${Time} at=${r.updated_at || r.created_at} />` },
    ]} empty=${`No ${kind.one} yet.`} />
  <//>`;
}

/** The page of one resource: what it is, its own extras, and change or delete for writers. */
export function ResourceDetail({ kind, me, id, children }) {
  const [item, error, reload] = useApi(`${kind.path}/${id}`);
  const [editing, setEditing] = useState(false);
  const writes = kind.write && can(me.role, kind.write) && (!kind.canWrite || (item && kind.canWrite(item)));
  return html`<${Loaded} data=${item} error=${error}>${(r) => html`<${Screen} title=${r.title || r.name || `${kind.one} ${id}`}
    actions=${writes && !editing && html`<span class="buttons"><button type="button" onClick=${() => setEditing(true)}>Edit</button>
      <${Action} kind="danger" label="Delete" action=${async () => {
        if (!window.confirm(`Delete this ${kind.one}?`)) return;
        await api('DELETE', `${kind.path}/${id}`);
        notice(`The ${kind.one} is deleted.`);
        navigate(kind.link || kind.path);
      }} /></span>`}>
    ${editing && kind.form
      ? html`<${kind.form} item=${r} onSaved=${() => { setEditing(false); reload(); }} /><p><button type="button" onClick=${() => setEditing(false)}>Cancel</button></p>`
      : editing
      ? html`<${JsonForm} label=${`Change this ${kind.one}`} initial=${kind.editable ? kind.editable(r) : r} submitLabel="Save"
          hint="Only the fields sent change. A secret shown as ******** is kept as it is."
          onCancel=${() => setEditing(false)}
          onSubmit=${async (body) => { await patch(`${kind.path}/${id}`, body); notice(`The ${kind.one} is saved.`); setEditing(false); reload(); }} />`
      : html`<${Facts} item=${r} hide=${kind.hide} />`}
    ${children && children(r, reload)}
  <//>`}<//>`;
}
