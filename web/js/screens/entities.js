// Entities: business objects (a sales order #1001, a product) with the outcome of the newest
// finished event about each, and the history of every event about one.

import { html } from '../../vendor/htm-preact-standalone.module.js';
import { navigate } from '../router.js';
import { Screen, Time, Status, useApi, Loaded, PagedTable, Filters, short, Ref } from '../ui.js';

export function Entities({ query }) {
  const filters = ['data_type', 'entity_id', 'message', 'status', 'error_code', 'updated_after', 'updated_before', 'sort', 'order'];
  return html`<${Screen} title="Entities">
    <${Filters} query=${query} onApply=${navigate} fields=${[
      { name: 'entity_id', label: 'Entity', placeholder: '#1001' },
      { name: 'data_type', label: 'Data type', placeholder: 'sales_order' },
      { name: 'status', label: 'Last status', options: ['OK', 'ERROR', 'FAILED', 'ABORTED'] },
      { name: 'error_code', label: 'Error code' },
      { name: 'message', label: 'Message contains' },
    ]} />
    <${PagedTable} path="/entities" query=${query} filters=${filters} csv="entities.csv" columns=${[
      { label: 'Entity', cell: (e) => html`<a href=${`/entities/${e.id}`}>${e.entity_id}</a>` },
      { label: 'Data type', cell: (e) => e.data_type },
      { label: 'Last status', cell: (e) => html`<${Status} value=${e.last_status} />` },
      { label: 'Error', cell: (e) => (e.last_error_code ? html`<code>${e.last_error_code}</code>` : '') },
      { label: 'Message', cell: (e) => e.last_message || '' },
      { label: 'Last event', cell: (e) => html`<${Ref} to=${`/events/${e.last_event_id}`} id=${e.last_event_id} />` },
      { label: 'Updated', cell: (e) => html`<${Time} at=${e.updated_at} />` },
    ]} empty="No entity matches these filters." />
  <//>`;
}

export function EntityDetail({ params }) {
  const [entity, error] = useApi(`/entities/${params.id}`);
  return html`<${Loaded} data=${entity} error=${error}>${(e) => html`<${Screen} title=${`${e.entity_id} (${e.data_type})`}>
    <dl class="facts">
      <dt>Last status</dt><dd><${Status} value=${e.last_status} /></dd>
      ${e.last_error_code && html`<dt>Error</dt><dd><code>${e.last_error_code}</code></dd>`}
      ${e.last_message && html`<dt>Message</dt><dd>${e.last_message}</dd>`}
      <dt>First seen</dt><dd><${Time} at=${e.created_at} /></dd>
      <dt>Updated</dt><dd><${Time} at=${e.updated_at} /></dd>
    </dl>
    <h2>History</h2>
    <div class="table-wrap"><table>
      <thead><tr><th scope="col">Event</th><th scope="col">Status</th><th scope="col">Error</th><th scope="col">Message</th><th scope="col">Job</th><th scope="col">Updated</th></tr></thead>
      <tbody>${(e.history || []).map((ev) => html`<tr>
        <td data-label="Event"><a href=${`/events/${ev.id}`}>${short(ev.id)}</a></td>
        <td data-label="Status"><${Status} value=${ev.status} /></td>
        <td data-label="Error">${ev.error_code ? html`<code>${ev.error_code}</code>` : ''}</td>
        <td data-label="Message">${ev.message || ''}</td>
        <td data-label="Job"><${Ref} to=${`/jobs/${ev.job_id}`} id=${ev.job_id} /></td>
        <td data-label="Updated"><${Time} at=${ev.updated_at} /></td>
      </tr>`)}</tbody>
    </table></div>
  <//>`}<//>`;
}
