// Events: every record with its status, payloads and delivery attempts. Find what failed,
// read why, fix the data and replicate it — one event, or everything a filter selects.

import { html, useState } from '../../vendor/htm-preact-standalone.module.js';
import { post, patch, qs, get } from '../api.js';
import { navigate } from '../router.js';
import { Screen, Time, Status, useApi, Loaded, Action, notice, can, PagedTable, Filters, Json, Problem, parseJson, short, Ref, NameRef, useStreamOptions } from '../ui.js';

const EVENT_STATUSES = ['NEW', 'TRANSFORMED', 'OK', 'ERROR', 'FAILED', 'ABORTED'];
const FILTERS = ['stream_id', 'job_id', 'status', 'error_code', 'entity_id', 'message', 'payload', 'ignored', 'created_after', 'created_before', 'sort', 'order'];

/** Replicates everything the current filters select, after saying how many that is. */
function BulkReplicate({ query }) {
  const filter = {};
  for (const f of FILTERS) {
    if (query.get(f) && f !== 'sort' && f !== 'order') filter[f] = f === 'ignored' ? query.get(f) === 'true' : query.get(f);
  }
  const [counted, setCounted] = useState(null);
  const [error, setError] = useState(null);
  if (Object.keys(filter).length === 0) return null;
  const count = async () => {
    setError(null);
    setCounted(await get(`/events/count${qs(filter)}`));
  };
  const replicate = async () => {
    const out = await post('/events/replicate', { filter });
    setCounted(null);
    notice(`${out.replicated} events are replicated in ${out.job_ids.length} new job${out.job_ids.length === 1 ? '' : 's'}.`);
    navigate(out.job_ids.length === 1 ? `/jobs/${out.job_ids[0]}` : '/jobs');
  };
  return html`<div class="bulk">
    ${!counted && html`<${Action} label="Replicate all matching…" busyLabel="Counting…" action=${count} onError=${setError} />`}
    ${counted && html`<div class="confirm" role="group" aria-label="Confirm the bulk replication">
      ${counted.more
        ? html`<p>More than ${counted.count} events match: narrow the filters (e.g. by time) to replicate them.</p>`
        : html`<p>${counted.count} event${counted.count === 1 ? '' : 's'} match${counted.count === 1 ? 'es' : ''} these filters.</p>
          ${counted.count > 0 && html`<${Action} kind="primary" label=${`Replicate ${counted.count} event${counted.count === 1 ? '' : 's'}`} busyLabel="Replicating…" action=${replicate} onError=${setError} />`}`}
      <button type="button" onClick=${() => setCounted(null)}>Cancel</button>
    </div>`}
    <${Problem} error=${error} />
  </div>`;
}

export function Events({ me, query }) {
  const streams = useStreamOptions();
  return html`<${Screen} title="Events">
    <${Filters} query=${query} onApply=${navigate} fields=${[
      { name: 'status', label: 'Status', options: EVENT_STATUSES },
      { name: 'stream_id', label: 'Stream', options: streams },
      { name: 'entity_id', label: 'Entity', placeholder: '#1001' },
      { name: 'error_code', label: 'Error code' },
      { name: 'message', label: 'Message contains' },
      { name: 'payload', label: 'Payload contains' },
      { name: 'ignored', label: 'Ignored', options: [['false', 'Not ignored'], ['true', 'Ignored']] },
      { name: 'created_after', label: 'Created after', type: 'datetime' },
      { name: 'created_before', label: 'Created before', type: 'datetime' },
      { name: 'order', label: 'Order', options: [['desc', 'Newest first'], ['asc', 'Oldest first']] },
    ]} />
    ${can(me.role, 'admin') && html`<${BulkReplicate} key=${query.toString()} query=${query} />`}
    <${PagedTable} path="/events" query=${query} filters=${FILTERS} csv="events.csv" columns=${[
      { label: 'Event', cell: (e) => html`<a href=${`/events/${e.id}`}>${short(e.id)}</a>` },
      { label: 'Status', cell: (e) => html`<${Status} value=${e.status} />${e.ignored ? html` <${Status} value="ignored" />` : null}` },
      { label: 'Entity', cell: (e) => e.entity_id || '—' },
      { label: 'Data type', cell: (e) => e.data_type },
      { label: 'Error', cell: (e) => (e.error_code ? html`<code>${e.error_code}</code>` : '') },
      { label: 'Message', cell: (e) => e.message || '' },
      { label: 'Attempts', cell: (e) => e.attempt_count },
      { label: 'Updated', cell: (e) => html`<${Time} at=${e.updated_at} />` },
    ]} empty="No event matches these filters." />
  <//>`;
}

/** Replicates one event, with its payload as received or as edited here (checked as JSON first). */
function ReplicateEvent({ event }) {
  const [open, setOpen] = useState(false);
  const [text, setText] = useState('');
  const [jsonError, setJsonError] = useState(null);
  const [error, setError] = useState(null);
  if (!open) {
    return html`<button type="button" onClick=${() => { setText(JSON.stringify(event.payload_in, null, 2)); setOpen(true); }}>Replicate…</button>`;
  }
  const send = async (e) => {
    e.preventDefault();
    setError(null);
    const parsed = parseJson(text);
    setJsonError(parsed.error || null);
    if (parsed.error) return;
    try {
      const out = await post(`/events/${event.id}/replicate`, { payload: parsed.value });
      notice('The event is replicated: the new event runs in a new job.');
      navigate(`/events/${out.event_id}`);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="card wide" onSubmit=${send} aria-label="Replicate the event">
    <h2>Replicate with this payload</h2>
    <p>Edit the record if it needs fixing; it is transformed and delivered again as a new event.</p>
    <${Problem} error=${error} />
    <div class="field"><label for="f-payload">Payload (JSON)</label>
      <textarea id="f-payload" class="code" rows="16" spellcheck="false" aria-invalid=${jsonError ? 'true' : undefined} aria-describedby=${jsonError ? 'f-payload-error' : undefined} onInput=${(ev) => setText(ev.target.value)} value=${text}></textarea>
      ${jsonError && html`<small id="f-payload-error" class="field-error" role="alert">${jsonError}</small>`}</div>
    <button type="submit" class="primary">Replicate</button> <button type="button" onClick=${() => setOpen(false)}>Cancel</button>
  </form>`;
}

function Attempts({ id }) {
  const [page, error] = useApi(`/events/${id}/attempts?limit=100`);
  return html`<${Loaded} data=${page} error=${error}>${(p) => (p.items.length === 0
    ? html`<p class="muted">No delivery attempt yet.</p>`
    : html`<ol class="attempts">${p.items.map((a) => html`<li class="card">
        <p><${Status} value=${a.outcome} /> ${a.http_status ? html`<strong>HTTP ${a.http_status}</strong> ${a.http_status_name || ''}` : null}
          ${a.error_code ? html` <code>${a.error_code}</code>` : null} · <${Time} at=${a.started_at} />${a.duration_ms !== null && a.duration_ms !== undefined ? ` · ${a.duration_ms} ms` : ''}</p>
        ${a.response_excerpt ? html`<details><summary>Response</summary><pre tabindex="0">${a.response_excerpt}</pre></details>` : null}
      </li>`)}</ol>`)}<//>`;
}

export function EventDetail({ me, params }) {
  const [event, error, reload] = useApi(`/events/${params.id}`);
  const [codes] = useApi('/error-codes');
  return html`<${Loaded} data=${event} error=${error}>${(e) => {
    const finished = ['OK', 'ERROR', 'FAILED', 'ABORTED'].includes(e.status);
    const explained = codes && e.error_code ? (codes.items || codes).find((c) => c.code === e.error_code) : null;
    return html`<${Screen} title=${`Event ${short(e.id)}`} actions=${html`<span class="buttons"><button type="button" onClick=${reload}>Refresh</button>${can(me.role, 'admin') && e.payload_in !== null && html`<${ReplicateEvent} event=${e} />`}${can(me.role, 'editor') && html`
        ${finished && html`<${Action} label=${e.ignored ? 'Stop ignoring' : 'Ignore'} action=${() => patch(`/events/${e.id}`, { ignored: !e.ignored })} onDone=${() => { notice(e.ignored ? 'The event counts again.' : 'The event is ignored: it no longer counts as a failure.'); reload(); }} />`}
      `}${can(me.role, 'admin') && !finished && html`<${Action} kind="danger" label="Abort" action=${() => post(`/events/${e.id}/abort`, {})} onDone=${() => { notice('The event is aborted.'); reload(); }} />`}</span>`}>
      <dl class="facts">
        <dt>Status</dt><dd><${Status} value=${e.status} />${e.ignored ? html` <${Status} value="ignored" />` : null}${e.is_running ? html` <span class="status tone-info">running now</span>` : null}</dd>
        <dt>Entity</dt><dd>${e.entity_id ? html`<a href=${`/entities${qs({ entity_id: e.entity_id })}`}>${e.entity_id}</a>` : '—'} <small class="muted">${e.data_type}</small></dd>
        ${e.error_code && html`<dt>Error</dt><dd><code>${e.error_code}</code>${explained ? html` — ${explained.title}. ${explained.action}` : null}</dd>`}
        ${e.message && html`<dt>Message</dt><dd>${e.message}</dd>`}
        <dt>Stream</dt><dd><${NameRef} path='/streams' id=${e.stream_id} /></dd>
        <dt>Job</dt><dd><${Ref} to=${`/jobs/${e.job_id}`} id=${e.job_id} /></dd>
        ${e.original_event_id && html`<dt>Replica of</dt><dd><${Ref} to=${`/events/${e.original_event_id}`} id=${e.original_event_id} /></dd>`}
        ${e.origin && html`<dt>From</dt><dd><code>${e.origin}</code></dd>`}
        ${e.destination_ref && html`<dt>At the destination</dt><dd><code>${e.destination_ref}</code></dd>`}
        <dt>Attempts</dt><dd>${e.attempt_count}${e.retries_remaining ? ` · ${e.retries_remaining} retries to come` : ''}${e.next_attempt_at ? html` · next <${Time} at=${e.next_attempt_at} />` : null}</dd>
        <dt>Created</dt><dd><${Time} at=${e.created_at} /></dd>
        <dt>Updated</dt><dd><${Time} at=${e.updated_at} /></dd>
      </dl>
      <div class="payloads">
        <${Json} label="Payload in (as received)" value=${e.payload_in} />
        <${Json} label="Payload out (as transformed)" value=${e.payload_out} />
      </div>
      ${e.logs && e.logs.length > 0 && html`<details><summary>Transformation log (${e.logs.length})</summary><pre tabindex="0">${e.logs.join('\n')}</pre></details>`}
      <h2>Delivery attempts</h2>
      <${Attempts} id=${e.id} />
    <//>`;
  }}<//>`;
}
