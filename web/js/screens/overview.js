// The overview: each stream's health over a period — jobs, events by outcome, success rate,
// delivery time, last OK — and the open alerts. Every count links to the list it counts.

import { html } from '../../vendor/htm-preact-standalone.module.js';
import { qs } from '../api.js';
import { navigate, withQuery } from '../router.js';
import { Screen, Time, useApi, Loaded, CountLink, Status } from '../ui.js';

const PERIODS = [['1', 'Last hour'], ['24', 'Last 24 hours'], ['168', 'Last 7 days'], ['720', 'Last 30 days']];

function percent(rate) {
  return rate === null || rate === undefined ? '—' : `${(rate * 100).toFixed(rate < 1 && rate > 0.99 ? 2 : 1)} %`;
}

function ms(v) {
  if (v === null || v === undefined) return '—';
  return v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
}

function Row({ label, link, s, from }) {
  const events = (status) => `/events${qs({ stream_id: s.stream_id, status, created_after: from })}`;
  const jobs = (status) => `/jobs${qs({ stream_id: s.stream_id, status, created_after: from })}`;
  const jobCount = Object.values(s.jobs).reduce((a, b) => a + b, 0);
  return html`<tr>
    <th scope="row">${link ? html`<a href=${link}>${label}</a>` : label}${s.data_type && html`<small class="muted"> ${s.data_type}</small>`}</th>
    <td data-label="Jobs"><${CountLink} n=${jobCount} to=${jobs()} label="Jobs" />${s.jobs.FAILED ? html` <span class="status tone-bad">${s.jobs.FAILED} failed</span>` : null}</td>
    <td data-label="OK"><${CountLink} n=${s.events.OK} to=${events('OK')} label="OK events" /></td>
    <td data-label="Error"><${CountLink} n=${s.events.ERROR} to=${events('ERROR')} label="ERROR events" /></td>
    <td data-label="Failed"><${CountLink} n=${s.events.FAILED} to=${events('FAILED')} label="FAILED events" /></td>
    <td data-label="Aborted"><${CountLink} n=${s.events.ABORTED} to=${events('ABORTED')} label="ABORTED events" /></td>
    <td data-label="Pending">${s.events.pending}</td>
    <td data-label="Success">${percent(s.success_rate)}</td>
    <td data-label="p95 delivery">${ms(s.p95_delivery_ms)}</td>
    <td data-label="Last OK"><${Time} at=${s.last_ok_at} /></td>
  </tr>`;
}

export function Overview({ query }) {
  const hours = query.get('hours') || '24';
  const from = new Date(Date.now() - Number(hours) * 3600 * 1000);
  from.setSeconds(0, 0);
  const fromIso = from.toISOString();
  const [report, error] = useApi(`/reports/summary${qs({ from: fromIso })}`);
  const [alerts, alertsError] = useApi('/alerts?status=open&limit=100');
  return html`<${Screen} title="Overview" actions=${html`<label>Period <select value=${hours} onChange=${(e) => navigate(withQuery(query, { hours: e.target.value }))}>
      ${PERIODS.map(([v, l]) => html`<option value=${v}>${l}</option>`)}</select></label>`}>
    <section aria-labelledby="open-alerts">
      <h2 id="open-alerts">Open alerts</h2>
      <${Loaded} data=${alerts} error=${alertsError}>${(a) => (a.items.length === 0
        ? html`<p><span class="status tone-ok">None open</span></p>`
        : html`<ul class="alerts">${a.items.slice(0, 10).map((al) => html`<li><${Status} value=${al.status} /> <a href=${`/alerts?status=open&stream_id=${al.stream_id}`}>${al.summary}</a> · ${al.count}× · last <${Time} at=${al.last_seen_at} /></li>`)}</ul>
          <p><a href="/alerts?status=open">All open alerts (${a.items.length}${a.next_cursor ? '+' : ''})</a></p>`)}<//>
    </section>
    <section aria-labelledby="streams-health">
      <h2 id="streams-health">Streams since <${Time} at=${fromIso} /></h2>
      <${Loaded} data=${report} error=${error}>${(r) => html`<div class="table-wrap"><table class="health">
        <thead><tr><th scope="col">Stream</th><th scope="col">Jobs</th><th scope="col">OK</th><th scope="col">Error</th><th scope="col">Failed</th><th scope="col">Aborted</th><th scope="col">Pending</th><th scope="col">Success</th><th scope="col">p95 delivery</th><th scope="col">Last OK</th></tr></thead>
        <tbody>
          ${r.streams.length === 0 && html`<tr><td colspan="10" class="muted">No streams yet. <a href="/streams">Create one</a>.</td></tr>`}
          ${r.streams.map((s) => html`<${Row} label=${s.title} link=${`/streams/${s.stream_id}`} s=${s} from=${fromIso} />`)}
        </tbody>
        <tfoot><${Row} label="All streams" s=${{ ...r.totals, stream_id: null }} from=${fromIso} /></tfoot>
      </table></div>`}<//>
    </section>
  <//>`;
}
