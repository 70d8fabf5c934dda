// Streams: each joins a source, a transformation and a destination. Run one now, turn it
// on or off, put it in test mode; create and edit them.

import { html, useState } from '../../vendor/htm-preact-standalone.module.js';
import { post, patch, api, qs } from '../api.js';
import { navigate } from '../router.js';
import { save } from '../forms.js';
import { Screen, Time, Status, useApi, Loaded, Action, notice, can, Problem, Field, parseJson, PagedTable, Ref, short, NameRef } from '../ui.js';

function Toggles({ me, s, reload }) {
  if (!can(me.role, 'editor')) return null;
  return html`<span class="buttons">
    <${Action} kind="primary" label="Run now" busyLabel="Queueing…" action=${() => post(`/streams/${s.id}/run`, {})}
      onDone=${(out) => { notice('A job is queued.'); navigate(`/jobs/${out.job_id}`); }} />
    <${Action} label=${s.active ? 'Deactivate' : 'Activate'} action=${() => patch(`/streams/${s.id}`, { active: !s.active })}
      onDone=${() => { notice(s.active ? 'The stream is off.' : 'The stream is on.'); reload(); }} />
    <${Action} label=${s.test_mode ? 'Leave test mode' : 'Test mode'} action=${() => patch(`/streams/${s.id}`, { test_mode: !s.test_mode })}
      onDone=${() => { notice(s.test_mode ? 'Test mode is off.' : 'Test mode is on: records are transformed, not delivered.'); reload(); }} />
  </span>`;
}

function State({ s }) {
  return html`<${Status} value=${s.active ? 'active' : 'inactive'} />${s.test_mode ? html` <span class="status tone-warn">test mode</span>` : null}`;
}

export function Streams({ me, query }) {
  const [n, setN] = useState(0);
  return html`<${Screen} title="Streams" actions=${can(me.role, 'editor') && html`<a class="button primary" href="/streams/new">New stream</a>`}>
    <${PagedTable} path="/streams" query=${query} reloadKey=${n} csv="streams.csv" columns=${[
      { label: 'Stream', cell: (s) => html`<a href=${`/streams/${s.id}`}>${s.title}</a>` },
      { label: 'Data type', cell: (s) => s.data_type },
      { label: 'State', cell: (s) => html`<${State} s=${s} />` },
      { label: 'Jobs', cell: (s) => html`<a href=${`/jobs?stream_id=${s.id}`}>Jobs</a> · <a href=${`/events?stream_id=${s.id}`}>Events</a>` },
      { label: 'Actions', cell: (s) => html`<${Toggles} me=${me} s=${s} reload=${() => setN((x) => x + 1)} />` },
    ]} empty="No streams yet." />
  <//>`;
}

function Picker({ label, name, path, value, onChange, error, labelOf }) {
  const [page] = useApi(`${path}?limit=500`);
  return html`<${Field} label=${label} name=${name} error=${error}>
    <select id=${`f-${name}`} required value=${value || ''} onChange=${(e) => onChange(e.target.value)}>
      <option value="">Choose…</option>
      ${(page ? page.items : []).map((x) => html`<option value=${x.id}>${labelOf ? labelOf(x) : x.name || x.title}</option>`)}
    </select>
  <//>`;
}

function StreamForm({ s, onSaved }) {
  const [form, setForm] = useState(() => ({
    title: s ? s.title : '', data_type: s ? s.data_type : 'sales_order',
    source_id: s ? s.source_id : '', transformation_id: s ? s.transformation_id : '', destination_id: s ? s.destination_id : '',
    active: s ? s.active : true, test_mode: s ? s.test_mode : false,
    settings: JSON.stringify(s ? s.settings : {}, null, 2),
  }));
  const [error, setError] = useState(null);
  const [jsonError, setJsonError] = useState(null);
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    const settings = parseJson(form.settings);
    setJsonError(settings.error || null);
    if (settings.error) return;
    const body = { ...form, settings: settings.value };
    await save('/streams', s, body, 'stream', onSaved, setError);
  };
  return html`<form class="card" onSubmit=${submit} aria-label=${s ? 'Edit the stream' : 'New stream'}>
    <${Problem} error=${error} />
    <${Field} label="Title" name="title" required value=${form.title} onInput=${set('title')} error=${error} />
    <${Field} label="Data type" name="data_type" required value=${form.data_type} onInput=${set('data_type')} error=${error} hint="What each record is, e.g. sales_order, product, stock, shipment." />
    <${Picker} label="Source" name="source_id" path="/sources" value=${form.source_id} onChange=${set('source_id')} error=${error} />
    <${Picker} label="Transformation" name="transformation_id" path="/transformations" value=${form.transformation_id} onChange=${set('transformation_id')} error=${error} />
    <${Picker} label="Destination" name="destination_id" path="/destinations" value=${form.destination_id} onChange=${set('destination_id')} error=${error} />
    <div class="field check"><input id="f-active" type="checkbox" checked=${form.active} onChange=${(e) => setForm({ ...form, active: e.target.checked })} /><label for="f-active">Active</label></div>
    <div class="field check"><input id="f-test" type="checkbox" checked=${form.test_mode} onChange=${(e) => setForm({ ...form, test_mode: e.target.checked })} /><label for="f-test">Test mode (transform, do not deliver)</label></div>
    <${Field} label="Settings (JSON)" name="settings" error=${error}>
      <textarea id="f-settings" rows="5" class="code" aria-invalid=${jsonError ? 'true' : undefined} aria-describedby=${jsonError ? 'f-settings-json' : undefined} onInput=${(e) => set('settings')(e.target.value)} value=${form.settings}></textarea>
      ${jsonError && html`<small id="f-settings-json" class="field-error">${jsonError}</small>`}
    <//>
    <button type="submit" class="primary">${s ? 'Save' : 'Create stream'}</button>
  </form>`;
}

export function StreamDetail(props) {
  if (props.params.id === 'new') {
    return html`<${Screen} title="New stream"><${StreamForm} onSaved=${(out) => navigate(`/streams/${out.id}`)} /><//>`;
  }
  return html`<${StreamView} ...${props} />`;
}

function StreamView({ me, params, query }) {
  const [s, error, reload] = useApi(`/streams/${params.id}`);
  const [editing, setEditing] = useState(false);
  return html`<${Loaded} data=${s} error=${error}>${(st) => html`<${Screen} title=${st.title} actions=${html`<${Toggles} me=${me} s=${st} reload=${reload} />`}>
    <dl class="facts">
      <dt>State</dt><dd><${State} s=${st} /></dd>
      <dt>Data type</dt><dd>${st.data_type}</dd>
      <dt>Source</dt><dd><${NameRef} path='/sources' id=${st.source_id} /></dd>
      <dt>Transformation</dt><dd><${NameRef} path='/transformations' id=${st.transformation_id} /></dd>
      <dt>Destination</dt><dd><${NameRef} path='/destinations' id=${st.destination_id} /></dd>
      <dt>Created</dt><dd><${Time} at=${st.created_at} /></dd>
      <dt>Changed</dt><dd><${Time} at=${st.updated_at} /></dd>
    </dl>
    <p><a href=${`/events?stream_id=${st.id}&status=FAILED`}>Failed events</a> · <a href=${`/events?stream_id=${st.id}`}>All events</a> · <a href=${`/entities?data_type=${encodeURIComponent(st.data_type)}`}>Entities of this data type</a></p>
    ${can(me.role, 'editor') && (editing
      ? html`<${StreamForm} s=${st} onSaved=${() => { setEditing(false); reload(); }} />`
      : html`<p><button type="button" onClick=${() => setEditing(true)}>Edit</button>
          <${Action} kind="danger" label="Delete" action=${async () => { if (window.confirm(`Delete the stream “${st.title}”? Its jobs and events stay until retention removes them.`)) { await api('DELETE', `/streams/${st.id}`); navigate('/streams'); } }} /></p>`)}
    <h2>Recent jobs</h2>
    <${PagedTable} path=${`/jobs`} query=${new URLSearchParams({ stream_id: st.id, limit: '10', ...(query.get('cursor') ? { cursor: query.get('cursor') } : {}) })} filters=${['stream_id']} columns=${[
      { label: 'Job', cell: (j) => html`<a href=${`/jobs/${j.id}`}>${short(j.id)}</a>` },
      { label: 'Status', cell: (j) => html`<${Status} value=${j.status} />` },
      { label: 'Trigger', cell: (j) => j.trigger },
      { label: 'Events', cell: (j) => Object.entries(j.counts).map(([k, v]) => `${k} ${v}`).join(', ') || '—' },
      { label: 'Created', cell: (j) => html`<${Time} at=${j.created_at} />` },
    ]} />
  <//>`}<//>`;
}
