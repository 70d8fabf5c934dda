// Configuration: the system library (read-only), keys with masked secrets, sources with the
// webhook URL and install, transformations with an editor and a dry run, lookup tables with
// CSV upload, and destinations.

import { html, useState } from '../../vendor/htm-preact-standalone.module.js';
import { api, post, downloadCsv } from '../api.js';
import { navigate } from '../router.js';
import { Screen, useApi, Loaded, Action, notice, can, Problem, parseJson, Json, PagedTable } from '../ui.js';
import { ResourceList, ResourceDetail } from '../resource.js';
import { LibraryForm, TransformationForm } from '../forms.js';

const KINDS = {
  keys: {
    title: 'Keys', one: 'key', path: '/keys', write: 'editor',
    intro: 'Credentials for one account of one system. Secret fields are sealed and always shown as ********.',
    columns: [{ label: 'System', cell: (k) => k.system }],
    form: (props) => html`<${LibraryForm} kind="key" ...${props} />`,
  },
  sources: {
    title: 'Sources', one: 'source', path: '/sources', write: 'editor',
    intro: 'Where records come from: a system function with a key and a trigger (manual, scheduled or webhook).',
    columns: [{ label: 'System', cell: (s) => s.system }, { label: 'Function', cell: (s) => s.function }, { label: 'Trigger', cell: (s) => s.trigger }],
    form: (props) => html`<${LibraryForm} kind="source" ...${props} />`,
  },
  destinations: {
    title: 'Destinations', one: 'destination', path: '/destinations', write: 'editor',
    intro: 'Where records go: a system function with a key, a mode and a retry schedule.',
    columns: [{ label: 'System', cell: (d) => d.system }, { label: 'Function', cell: (d) => d.function }, { label: 'Mode', cell: (d) => d.mode }],
    form: (props) => html`<${LibraryForm} kind="destination" ...${props} />`,
  },
  transformations: {
    title: 'Transformations', one: 'transformation', path: '/transformations', write: 'admin',
    intro: 'How each record is reshaped between source and destination. Public ones ship with Wharf: copy one to change it.',
    columns: [{ label: 'Language', cell: (t) => t.language }, { label: 'Format', cell: (t) => t.format }, { label: 'Visibility', cell: (t) => t.visibility }],
    canWrite: (t) => t.visibility !== 'public',
    hide: ['code'],
    form: TransformationForm,
  },
  'lookup-tables': {
    title: 'Lookup tables', one: 'lookup table', path: '/lookup-tables', write: 'admin',
    intro: 'Key → value maps transformations read (a SKU to a warehouse code, a country to a carrier).',
    template: { name: 'carriers', description: '', default_value: null, entries: { GB: 'royal-mail' } },
    columns: [{ label: 'Description', cell: (t) => t.description }],
    editable: (t) => ({ name: t.name, description: t.description, default_value: t.default_value }),
  },
};

const BY_PATH = { '/keys': KINDS.keys, '/sources': KINDS.sources, '/destinations': KINDS.destinations, '/transformations': KINDS.transformations, '/lookup-tables': KINDS['lookup-tables'] };

function Systems() {
  const [systems, error] = useApi('/systems');
  return html`<${Screen} title="Systems">
    <p>The systems Wharf connects to, each with its functions and the fields of its keys.</p>
    <${Loaded} data=${systems} error=${error}>${(list) => html`<div class="grid">${(list.items || list).map((s) => html`<article class="card">
      <h2>${s.title || s.name} <small class="muted">${s.name}</small></h2>
      ${s.description && html`<p>${s.description}</p>`}
      <${Json} label="Functions and key template" value=${s} open=${false} />
    </article>`)}</div>`}<//>
  <//>`;
}

export function Config({ me, path, query }) {
  if (path === '/systems') return html`<${Systems} />`;
  return html`<${ResourceList} kind=${BY_PATH[path]} me=${me} query=${query} />`;
}

function SourceExtras({ me, s, reload }) {
  if (s.trigger !== 'webhook' && !s.next_run_at) return null;
  return html`<section aria-labelledby="trigger-title">
    <h2 id="trigger-title">${s.trigger === 'webhook' ? 'Webhook' : 'Schedule'}</h2>
    ${s.webhook_url && html`<p>Senders push records to <code class="secret">${s.webhook_url}</code> (it alone authorises a push: keep it private).</p>`}
    ${s.trigger === 'webhook' && can(me.role, 'editor') && html`<p class="buttons">
      <${Action} label="Install at the system" busyLabel="Installing…" action=${() => post(`/sources/${s.id}/webhooks/install`, {})} onDone=${() => { notice('The webhook is installed at the system.'); reload(); }} />
      <${Action} label="Uninstall" action=${() => post(`/sources/${s.id}/webhooks/uninstall`, {})} onDone=${() => { notice('The webhook is uninstalled.'); reload(); }} />
    </p>`}
    ${s.next_run_at && html`<p>Next scheduled run: ${s.next_run_at}</p>`}
  </section>`;
}

/** The code editor and a dry run on a sample record. */
function TransformationExtras({ me, t, reload }) {
  const writable = can(me.role, 'admin') && t.visibility !== 'public';
  const [code, setCode] = useState(t.code);
  const [sample, setSample] = useState('{\n  "id": 1001,\n  "name": "#1001"\n}');
  const [settings, setSettings] = useState('{}');
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [jsonError, setJsonError] = useState(null);
  const dryRun = async (e) => {
    e.preventDefault();
    setError(null);
    setResult(null);
    const payload = parseJson(sample);
    const s = parseJson(settings);
    setJsonError(payload.error || s.error || null);
    if (payload.error || s.error) return;
    try {
      if (writable && code !== t.code) {
        await api('PATCH', `/transformations/${t.id}`, { code });
        notice('The code is saved.');
        reload();
      }
      setResult(await post(`/transformations/${t.id}/test`, { payload: payload.value, settings: s.value }));
    } catch (err) {
      setError(err);
    }
  };
  return html`<section aria-labelledby="code-title">
    <h2 id="code-title">Code <small class="muted">${t.language}, ${t.format}</small></h2>
    ${!writable && t.visibility === 'public' && can(me.role, 'admin') && html`<p><${Action} label="Make a private copy" action=${() => post(`/transformations/${t.id}/copy`, {})} onDone=${(out) => navigate(`/transformations/${out.id}`)} /></p>`}
    <form onSubmit=${dryRun} aria-label="Code and dry run">
      <div class="field"><label for="f-editor-code">Code</label>
        <textarea id="f-editor-code" class="code editor" rows="18" spellcheck="false" readonly=${!writable} onInput=${(e) => setCode(e.target.value)} value=${code}></textarea></div>
      <div class="two">
        <div class="field"><label for="f-sample">Sample record (JSON)</label>
          <textarea id="f-sample" class="code" rows="8" spellcheck="false" onInput=${(e) => setSample(e.target.value)} value=${sample}></textarea></div>
        <div class="field"><label for="f-run-settings">Settings (JSON)</label>
          <textarea id="f-run-settings" class="code" rows="8" spellcheck="false" onInput=${(e) => setSettings(e.target.value)} value=${settings}></textarea></div>
      </div>
      ${jsonError && html`<p class="field-error" role="alert">${jsonError}</p>`}
      <button type="submit" class="primary">${writable && code !== t.code ? 'Save and dry run' : 'Dry run'}</button>
    </form>
    <${Problem} error=${error} />
    ${error && (() => {
      const p = error.problem || {};
      const at = p.line ? p : (p.errors || []).find((x) => x.field === 'code' && x.line) || {};
      return html`${at.line && html`<p>At line ${at.line}${at.column ? `, column ${at.column}` : ''}.</p>`}
        ${(p.logs || []).length > 0 && html`<pre tabindex="0">${p.logs.join('\n')}</pre>`}`;
    })()}
    ${result && html`<div role="status">
      <p>${result.skipped ? html`Skipped: ${result.skipped}` : html`${result.outputs} output${result.outputs === 1 ? '' : 's'} (${result.content_type})`} in ${result.duration_ms.toFixed(1)} ms.</p>
      ${typeof result.output === 'string' ? html`<pre tabindex="0">${result.output}</pre>` : html`<${Json} label="Output" value=${result.output} />`}
      ${result.logs.length > 0 && html`<pre tabindex="0">${result.logs.join('\n')}</pre>`}
    </div>`}
  </section>`;
}

function LookupExtras({ me, t, reload, query }) {
  const [file, setFile] = useState(null);
  const [replace, setReplace] = useState(true);
  const [n, setN] = useState(0);
  const [error, setError] = useState(null);
  const upload = async (e) => {
    e.preventDefault();
    setError(null);
    if (!file) return;
    try {
      await api('PUT', `/lookup-tables/${t.id}/csv?replace=${replace}`, await file.text(), { raw: true, contentType: 'text/csv' });
      notice('The CSV is uploaded.');
      setN((x) => x + 1);
      reload();
    } catch (err) {
      setError(err);
    }
  };
  return html`<section aria-labelledby="csv">
    <h2 id="csv">Entries as CSV</h2>
    <p><${Action} label="Download CSV" action=${() => downloadCsv(`/lookup-tables/${t.id}/csv`, {}, `${t.name}.csv`)} /></p>
    ${can(me.role, 'admin') && html`<form onSubmit=${upload} aria-label="Upload a CSV">
      <div class="field"><label for="f-csv">CSV file (key,value with a header row)</label>
        <input id="f-csv" type="file" accept=".csv,text/csv" onChange=${(e) => setFile(e.target.files[0])} /></div>
      <div class="field check"><input id="f-replace" type="checkbox" checked=${replace} onChange=${(e) => setReplace(e.target.checked)} />
        <label for="f-replace">Replace the whole table (otherwise only add and change the rows in the file)</label></div>
      <${Problem} error=${error} />
      <button type="submit" disabled=${!file}>Upload</button>
    </form>`}
    <h2>Entries</h2>
    <${PagedTable} path=${`/lookup-tables/${t.id}/entries`} query=${query} reloadKey=${n} columns=${[
      { label: 'Key', cell: (e) => html`<code>${e.key}</code>` },
      { label: 'Value', cell: (e) => e.value },
    ]} empty="No entries yet." />
  </section>`;
}

export function ConfigDetail({ me, path, params, query }) {
  const base = `/${path.split('/')[1]}`;
  const kind = BY_PATH[base];
  const extras = {
    '/sources': (s, reload) => html`<${SourceExtras} me=${me} s=${s} reload=${reload} />`,
    '/transformations': (t, reload) => html`<${TransformationExtras} key=${t.updated_at} me=${me} t=${t} reload=${reload} />`,
    '/lookup-tables': (t, reload) => html`<${LookupExtras} me=${me} t=${t} reload=${reload} query=${query} />`,
  }[base];
  return html`<${ResourceDetail} kind=${kind} me=${me} id=${params.id}>${extras}<//>`;
}

