// Jobs: runs of streams with their events by status. A job is replicated (with the same
// records, or an edited payload or settings) or aborted from its page.

import { html, useState } from '../../vendor/htm-preact-standalone.module.js';
import { post } from '../api.js';
import { navigate } from '../router.js';
import { Screen, Time, Status, useApi, Loaded, Action, notice, can, PagedTable, Filters, Json, Problem, parseJson, short, Ref, NameRef, useStreamOptions } from '../ui.js';

const JOB_STATUSES = ['PENDING', 'PROCESSING', 'FINISHED', 'FINISHED_WITH_ISSUES', 'FAILED'];

export function counts(c) {
  const parts = Object.entries(c || {}).filter(([, v]) => v > 0);
  if (parts.length === 0) return html`<span class="muted">—</span>`;
  return parts.map(([k, v]) => html`<span class="count"><${Status} value=${k} /> ${v}</span> `);
}

export function Jobs({ query }) {
  const streams = useStreamOptions();
  const filters = ['stream_id', 'status', 'trigger', 'created_after', 'created_before', 'sort', 'order'];
  return html`<${Screen} title="Jobs">
    <${Filters} query=${query} onApply=${navigate} fields=${[
      { name: 'status', label: 'Status', options: JOB_STATUSES },
      { name: 'stream_id', label: 'Stream', options: streams },
      { name: 'trigger', label: 'Trigger', options: ['manual', 'scheduled', 'webhook', 'upload', 'replicate'] },
      { name: 'created_after', label: 'Created after', type: 'datetime' },
      { name: 'order', label: 'Order', options: [['desc', 'Newest first'], ['asc', 'Oldest first']] },
    ]} />
    <${PagedTable} path="/jobs" query=${query} filters=${filters} csv="jobs.csv" columns=${[
      { label: 'Job', cell: (j) => html`<a href=${`/jobs/${j.id}`}>${short(j.id)}</a>` },
      { label: 'Stream', cell: (j) => html`<${NameRef} path='/streams' id=${j.stream_id} />` },
      { label: 'Status', cell: (j) => html`<${Status} value=${j.status} />` },
      { label: 'Trigger', cell: (j) => j.trigger },
      { label: 'Events', cell: (j) => counts(j.counts) },
      { label: 'Created', cell: (j) => html`<${Time} at=${j.created_at} />` },
      { label: 'Finished', cell: (j) => html`<${Time} at=${j.finished_at} />` },
    ]} empty="No job matches these filters." />
  <//>`;
}

function ReplicateJob({ job }) {
  const [open, setOpen] = useState(false);
  const [settings, setSettings] = useState(JSON.stringify(job.settings || {}, null, 2));
  const [records, setRecords] = useState('');
  const [jsonError, setJsonError] = useState(null);
  const [recordsError, setRecordsError] = useState(null);
  const [error, setError] = useState(null);
  if (!open) return html`<button type="button" onClick=${() => setOpen(true)}>Replicate…</button>`;
  const send = async (e) => {
    e.preventDefault();
    const parsed = parseJson(settings);
    const payload = records.trim() ? parseJson(records) : { value: undefined };
    setJsonError(parsed.error || null);
    setRecordsError(payload.error || null);
    if (parsed.error || payload.error) return;
    setError(null);
    try {
      const out = await post(`/jobs/${job.id}/replicate`, { settings: parsed.value, payload: payload.value });
      notice('The job is replicated: a new job runs with the same records.');
      navigate(`/jobs/${out.job_id}`);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="card" onSubmit=${send} aria-label="Replicate the job">
    <h2>Replicate this job</h2>
    <p>A new job runs with the same records (or the records given here), and these settings.</p>
    <${Problem} error=${error} />
    <div class="field"><label for="f-job-settings">Settings (JSON)</label>
      <textarea id="f-job-settings" class="code" rows="6" aria-invalid=${jsonError ? 'true' : undefined} aria-describedby=${jsonError ? 'f-job-settings-error' : undefined} onInput=${(e) => setSettings(e.target.value)} value=${settings}></textarea>
      ${jsonError && html`<small id="f-job-settings-error" class="field-error">${jsonError}</small>`}</div>
    <div class="field"><label for="f-job-records">Records instead of the job's (JSON array, optional)</label>
      <textarea id="f-job-records" class="code" rows="6" spellcheck="false" placeholder='[{"name": "#1001"}]' aria-invalid=${recordsError ? 'true' : undefined} aria-describedby=${recordsError ? 'f-job-records-error' : undefined} onInput=${(e) => setRecords(e.target.value)} value=${records}></textarea>
      ${recordsError && html`<small id="f-job-records-error" class="field-error">${recordsError}</small>`}</div>
    <button type="submit" class="primary">Replicate</button> <button type="button" onClick=${() => setOpen(false)}>Cancel</button>
  </form>`;
}

export function JobDetail({ me, params, query }) {
  const [job, error, reload] = useApi(`/jobs/${params.id}`);
  return html`<${Loaded} data=${job} error=${error}>${(j) => html`<${Screen} title=${`Job ${short(j.id)}`} actions=${html`<span class="buttons"><button type="button" onClick=${reload}>Refresh</button>${can(me.role, 'admin') && html`
      <${ReplicateJob} job=${j} />
      ${['PENDING', 'PROCESSING'].includes(j.status) && html`<${Action} kind="danger" label="Abort" action=${() => post(`/jobs/${j.id}/abort`, {})} onDone=${() => { notice('The job is aborted.'); reload(); }} />`}
    `}</span>`}>
    <dl class="facts">
      <dt>Status</dt><dd><${Status} value=${j.status} /></dd>
      <dt>Stream</dt><dd><${NameRef} path='/streams' id=${j.stream_id} /></dd>
      <dt>Trigger</dt><dd>${j.trigger}</dd>
      <dt>Events</dt><dd>${counts(j.counts)}</dd>
      ${j.message && html`<dt>Message</dt><dd>${j.message}</dd>`}
      ${j.original_job_id && html`<dt>Replica of</dt><dd><${Ref} to=${`/jobs/${j.original_job_id}`} id=${j.original_job_id} /></dd>`}
      <dt>Created</dt><dd><${Time} at=${j.created_at} /></dd>
      <dt>Started</dt><dd><${Time} at=${j.started_at} /></dd>
      <dt>Finished</dt><dd><${Time} at=${j.finished_at} /></dd>
    </dl>
    <${Json} label="Settings" value=${j.settings} open=${false} />
    <h2>Events</h2>
    <${PagedTable} path="/events" query=${new URLSearchParams({ job_id: j.id, ...(query.get('cursor') ? { cursor: query.get('cursor') } : {}) })} filters=${['job_id']} csv="events.csv" columns=${[
      { label: 'Event', cell: (e) => html`<a href=${`/events/${e.id}`}>${short(e.id)}</a>` },
      { label: 'Status', cell: (e) => html`<${Status} value=${e.status} />` },
      { label: 'Entity', cell: (e) => e.entity_id || '—' },
      { label: 'Message', cell: (e) => e.message || '' },
      { label: 'Updated', cell: (e) => html`<${Time} at=${e.updated_at} />` },
    ]} />
  <//>`}<//>`;
}
