// The event log (every job and event status change, in commit order, followed by cursor)
// and the audit log (every change anyone made, with the fields before and after).

import { html } from '../../vendor/htm-preact-standalone.module.js';
import { navigate } from '../router.js';
import { Screen, Time, Status, PagedTable, Filters, Ref, can, short } from '../ui.js';

export function EventLog({ me, query }) {
  const q = new URLSearchParams(query);
  if (!q.get('cursor')) q.set('cursor', '0');
  // Event viewers follow the log only: they see ids, not links to screens they cannot open.
  const sees = can(me.role, 'viewer');
  const ref = (path, id) => (sees ? html`<${Ref} to=${`${path}/${id}`} id=${id} />` : html`<code>${short(id)}</code>`);
  return html`<${Screen} title="Event log">
    <p>Every status change of jobs and events, oldest first. Scripts follow it with <code>GET /api/v1/event-log?cursor=</code>.</p>
    <${PagedTable} path="/event-log" query=${q} filters=${[]} first="0" more=${(p) => p.items.length > 0} columns=${[
      { label: 'Position', cell: (e) => e.id },
      { label: 'Type', cell: (e) => e.type },
      { label: 'Change', cell: (e) => html`${e.details.from ? html`<${Status} value=${e.details.from} /> → ` : null}<${Status} value=${e.details.to} />` },
      { label: 'Object', cell: (e) => (e.details.event_id ? ref('/events', e.details.event_id) : ref('/jobs', e.details.job_id)) },
      { label: 'At', cell: (e) => html`<${Time} at=${e.event_at} />` },
    ]} empty="Nothing newer yet." />
  <//>`;
}

function changes(c) {
  const entries = Object.entries(c || {});
  if (entries.length === 0) return html`<span class="muted">—</span>`;
  return html`<details><summary>${entries.length} field${entries.length === 1 ? '' : 's'}</summary><dl class="changes">
    ${entries.map(([k, v]) => html`<dt>${k}</dt><dd>${Array.isArray(v) && v.length === 2
      ? html`<code>${JSON.stringify(v[0])}</code> → <code>${JSON.stringify(v[1])}</code>`
      : html`<code>${JSON.stringify(v)}</code>`}</dd>`)}
  </dl></details>`;
}

export function AuditLog({ query }) {
  const filters = ['action', 'object_type', 'object_id', 'actor_type', 'actor_id', 'after', 'before', 'order'];
  return html`<${Screen} title="Audit log">
    <p>Every change made through the API or this panel: who, what, and the fields before and after (secrets masked). Entries are never changed.</p>
    <${Filters} query=${query} onApply=${navigate} fields=${[
      { name: 'action', label: 'Action', placeholder: 'stream.update' },
      { name: 'object_type', label: 'Object type', placeholder: 'stream' },
      { name: 'actor_type', label: 'By', options: [['user', 'People'], ['token', 'API tokens']] },
      { name: 'after', label: 'After', type: 'datetime' },
      { name: 'order', label: 'Order', options: [['desc', 'Newest first'], ['asc', 'Oldest first']] },
    ]} />
    <${PagedTable} path="/audit-log" query=${query} filters=${filters} csv="audit-log.csv" columns=${[
      { label: 'At', cell: (a) => html`<${Time} at=${a.at} />` },
      { label: 'Who', cell: (a) => html`${a.actor.name} <small class="muted">${a.actor.type || a.actor.kind}</small>` },
      { label: 'Action', cell: (a) => html`<code>${a.action}</code>` },
      { label: 'Object', cell: (a) => html`${a.object.type || a.object.kind} ${a.object.id ? html`<small class="muted">${String(a.object.id).slice(-8)}</small>` : null}` },
      { label: 'Changes', cell: (a) => changes(a.changes) },
      { label: 'From', cell: (a) => a.ip || '—' },
    ]} empty="No entry matches these filters." />
  <//>`;
}
