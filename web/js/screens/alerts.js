// Alerts: the incidents (acknowledge, resolve, ignore), the rules that raise them, the
// channels they are sent to, and every notification sent or tried.

import { html, useState } from '../../vendor/htm-preact-standalone.module.js';
import { post } from '../api.js';
import { navigate } from '../router.js';
import { Screen, Time, Status, Action, notice, can, PagedTable, Filters, Ref, NameRef, useStreamOptions } from '../ui.js';
import { ResourceList, ResourceDetail } from '../resource.js';
import { RuleForm, ChannelForm } from '../forms.js';

export function Alerts({ me, query }) {
  const streams = useStreamOptions();
  const [n, setN] = useState(0);
  const act = (a, verb, done) => html`<${Action} label=${verb} ariaLabel=${`${verb}: ${a.summary}`} action=${() => post(`/alerts/${a.id}/${verb.toLowerCase()}`, {})} onDone=${() => { notice(done); setN((x) => x + 1); }} />`;
  return html`<${Screen} title="Alerts">
    <${Filters} query=${query} onApply=${navigate} fields=${[
      { name: 'status', label: 'Status', options: ['open', 'acknowledged', 'resolved', 'ignored'] },
      { name: 'stream_id', label: 'Stream', options: streams },
    ]} />
    <${PagedTable} path="/alerts" query=${query} filters=${['status', 'stream_id', 'rule_id']} csv="alerts.csv" reloadKey=${n} columns=${[
      { label: 'Alert', cell: (a) => a.summary },
      { label: 'Status', cell: (a) => html`<${Status} value=${a.status} />` },
      { label: 'Stream', cell: (a) => html`<${NameRef} path='/streams' id=${a.stream_id} />` },
      { label: 'Error', cell: (a) => (a.error_code ? html`<a href=${`/events?stream_id=${a.stream_id}&error_code=${a.error_code}`}><code>${a.error_code}</code></a>` : '') },
      { label: 'Count', cell: (a) => a.count },
      { label: 'Last seen', cell: (a) => html`<${Time} at=${a.last_seen_at} />` },
      { label: 'Actions', cell: (a) => (can(me.role, 'editor') && a.status !== 'resolved'
        ? html`<span class="buttons">${a.status === 'open' && act(a, 'Acknowledge', 'The alert is acknowledged.')}${act(a, 'Resolve', 'The alert is resolved.')}${a.status !== 'ignored' && act(a, 'Ignore', 'The alert is ignored.')}</span>`
        : '') },
    ]} empty="No alert matches these filters." />
  <//>`;
}

const RULES = {
  title: 'Alert rules', one: 'rule', path: '/alert-rules', write: 'admin',
  intro: 'When to raise an alert: a job or event failure, an error rate, silence, or work stuck — sent to channels at once or as a digest.',
  columns: [{ label: 'Kind', cell: (r) => r.kind }, { label: 'Enabled', cell: (r) => html`<${Status} value=${r.enabled ? 'active' : 'inactive'} />` }],
  form: RuleForm,
};

const CHANNELS = {
  title: 'Alert channels', one: 'channel', path: '/alert-channels', write: 'admin',
  intro: 'Where alert messages go: an e-mail address or a webhook (signed with the channel secret).',
  columns: [{ label: 'Kind', cell: (c) => c.kind }, { label: 'Target', cell: (c) => c.target }],
  form: ChannelForm,
};

export function AlertRules({ me, query, params }) {
  if (params.id) return html`<${ResourceDetail} kind=${RULES} me=${me} id=${params.id} />`;
  return html`<${ResourceList} kind=${RULES} me=${me} query=${query} />`;
}

export function AlertChannels({ me, query, params }) {
  if (params.id) return html`<${ResourceDetail} kind=${CHANNELS} me=${me} id=${params.id} />`;
  return html`<${ResourceList} kind=${CHANNELS} me=${me} query=${query} />`;
}

export function Notifications({ query }) {
  return html`<${Screen} title="Notifications">
    <${Filters} query=${query} onApply=${navigate} fields=${[{ name: 'status', label: 'Status', options: ['pending', 'sent', 'failed'] }]} />
    <${PagedTable} path="/notifications" query=${query} filters=${['status', 'channel_id', 'alert_id']} csv="notifications.csv" columns=${[
      { label: 'Subject', cell: (x) => x.subject },
      { label: 'Status', cell: (x) => html`<${Status} value=${x.status} />` },
      { label: 'Channel', cell: (x) => html`<${Ref} to=${`/alert-channels/${x.channel_id}`} id=${x.channel_id} />` },
      { label: 'Tries', cell: (x) => x.tries },
      { label: 'Sent', cell: (x) => html`<${Time} at=${x.sent_at} />` },
      { label: 'Error', cell: (x) => x.error || '' },
    ]} empty="No notification yet." />
  <//>`;
}
