// Forms built from the system library (GET /systems): a key's credential fields from its
// system's key template, a source's or destination's parameters from its function. Secret
// fields are password inputs; a stored secret shows as ******** and is kept unless retyped.

import { html, useState } from '../vendor/htm-preact-standalone.module.js';
import { post, patch } from './api.js';
import { Field, Problem, notice, useApi, Loaded, parseJson } from './ui.js';

const MASK = '********';

/**
 * Creates (POST `path`) or, given `item`, changes (PATCH `path/id`) a resource; says so and
 * hands the answer to `onSaved`, or the problem to `setError`.
 */
export async function save(path, item, body, one, onSaved, setError) {
  setError(null);
  try {
    const out = item ? await patch(`${path}/${item.id}`, body) : await post(path, body);
    notice(item ? `The ${one} is saved.` : `The ${one} is created.`);
    onSaved(out);
  } catch (err) {
    setError(err);
  }
}

/** The value at a dotted path of an object. */
function at(obj, path) {
  return path.split('.').reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), obj);
}

/** Sets a dotted path in an object, making the objects on the way. */
function put(obj, path, value) {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) {
    if (!o[k] || typeof o[k] !== 'object') o[k] = {};
    o = o[k];
  }
  o[keys[keys.length - 1]] = value;
}

/** The text a field's input starts with, from a stored object. */
function shown(f, stored) {
  const v = at(stored || {}, f.name);
  if (v === undefined || v === null) return f.type === 'boolean' ? false : '';
  if (f.type === 'object') return JSON.stringify(v, null, 2);
  if (f.type === 'string_list') return (Array.isArray(v) ? v : []).join('\n');
  return f.type === 'boolean' ? Boolean(v) : String(v);
}

/**
 * Reads the inputs back into an object for the API; `errors` collects what cannot be read
 * (JSON that does not parse). An empty optional field is left out.
 */
function collect(fields, values, errors) {
  const out = {};
  for (const f of fields) {
    const v = values[f.name];
    if (f.type === 'boolean') {
      put(out, f.name, Boolean(v));
    } else if (v === '' || v === undefined) {
      continue;
    } else if (f.type === 'integer') {
      put(out, f.name, Number(v));
    } else if (f.type === 'object') {
      const parsed = parseJson(v);
      if (parsed.error) errors[f.name] = parsed.error;
      else put(out, f.name, parsed.value);
    } else if (f.type === 'string_list') {
      put(out, f.name, v.split('\n').map((s) => s.trim()).filter(Boolean));
    } else {
      put(out, f.name, v);
    }
  }
  return out;
}

/** The inputs of a list of template fields; `prefix` is the API's field path (for errors). */
export function TemplateFields({ fields, values, setValues, prefix, error, local }) {
  return fields.map((f) => {
    const id = `f-${prefix}-${f.name}`.replace(/\W+/g, '-');
    const apiField = `${prefix}.${f.name}`;
    const message = local[f.name] || (error && error.field ? error.field(apiField) : null);
    const label = `${f.name}${f.required ? '' : ' (optional)'}`;
    const set = (v) => setValues({ ...values, [f.name]: v });
    const described = message ? `${id}-error` : `${id}-hint`;
    let input;
    if (f.type === 'boolean') {
      input = html`<input id=${id} type="checkbox" checked=${values[f.name]} onChange=${(e) => set(e.target.checked)} aria-describedby=${described} />`;
    } else if (f.type === 'enum') {
      input = html`<select id=${id} value=${values[f.name]} onChange=${(e) => set(e.target.value)} aria-describedby=${described} aria-invalid=${message ? 'true' : undefined}>
        ${!f.required && html`<option value="">—</option>`}
        ${(f.values || []).map((v) => html`<option value=${v}>${v}</option>`)}</select>`;
    } else if (f.type === 'object' || f.type === 'string_list') {
      input = html`<textarea id=${id} class="code" rows="4" spellcheck="false" aria-describedby=${described} aria-invalid=${message ? 'true' : undefined}
        placeholder=${f.type === 'object' ? '{"name": "value"}' : 'one per line'} onInput=${(e) => set(e.target.value)} value=${values[f.name]}></textarea>`;
    } else {
      input = html`<input id=${id} type=${f.secret ? 'password' : f.type === 'integer' ? 'number' : 'text'} value=${values[f.name]}
        autocomplete=${f.secret ? 'new-password' : 'off'} required=${f.required && !(f.secret && values[f.name] === MASK)}
        aria-describedby=${described} aria-invalid=${message ? 'true' : undefined} onInput=${(e) => set(e.target.value)} />`;
    }
    return html`<div key=${f.name} class=${`field${f.type === 'boolean' ? ' check' : ''}`}>
      ${f.type === 'boolean' ? html`${input}<label for=${id}>${label}</label>` : html`<label for=${id}>${label}${f.secret ? html` <span class="muted">(secret)</span>` : null}</label>${input}`}
      ${message ? html`<small id=${`${id}-error`} class="field-error">${message}</small>` : html`<small id=${`${id}-hint`} class="hint">${f.description}</small>`}
    </div>`;
  });
}

function startValues(fields, stored) {
  return Object.fromEntries(fields.map((f) => [f.name, shown(f, stored)]));
}

/** Picks a key of `system` (or none). */
function KeyPicker({ system, value, onChange, error, required }) {
  const [keys] = useApi('/keys?limit=500');
  const mine = keys ? keys.items.filter((k) => k.system === system) : [];
  return html`<${Field} label=${`Key${required ? '' : ' (optional)'}`} name="key_id" error=${error}>
    <select id="f-key_id" value=${value || ''} onChange=${(e) => onChange(e.target.value || null)}>
      <option value="">${required ? 'Choose…' : 'No key'}</option>
      ${mine.map((k) => html`<option value=${k.id}>${k.title}</option>`)}
    </select>
  <//>`;
}

function SystemPicker({ systems, value, onChange, disabled }) {
  return html`<${Field} label="System" name="system">
    <select id="f-system" value=${value} disabled=${disabled} onChange=${(e) => onChange(e.target.value)}>
      ${systems.map((s) => html`<option value=${s.name}>${s.title}</option>`)}
    </select>
  <//>`;
}

/** Creates or changes a key: its system's credential fields. */
function KeyForm({ systems, item, onSaved }) {
  const [system, setSystem] = useState(item ? item.system : systems[0].name);
  // A key of a system no longer offered keeps its title editable; its credentials as stored.
  const found = systems.find((s) => s.name === system);
  const template = found ? found.key_template : [];
  const [title, setTitle] = useState(item ? item.title : '');
  const [values, setValues] = useState(() => startValues(template, item && item.credentials));
  const [local, setLocal] = useState({});
  const [error, setError] = useState(null);
  const choose = (name) => {
    setSystem(name);
    setValues(startValues(systems.find((s) => s.name === name).key_template, null));
  };
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    const errors = {};
    const credentials = collect(template, values, errors);
    // A field emptied that held a value is removed (a PATCH keeps what it does not name).
    if (item) {
      for (const f of template) {
        if (at(credentials, f.name) === undefined && at(item.credentials || {}, f.name) !== undefined && f.type !== 'boolean') {
          put(credentials, f.name, null);
        }
      }
    }
    setLocal(errors);
    if (Object.keys(errors).length) return;
    await save('/keys', item, item ? { title, credentials } : { system, title, credentials }, 'key', onSaved, setError);
  };
  return html`<form class="card" onSubmit=${submit} aria-label=${item ? 'Change the key' : 'New key'}>
    <h2>${item ? 'Change the key' : 'New key'}</h2>
    <${Problem} error=${error} />
    ${found ? html`<${SystemPicker} systems=${systems} value=${system} onChange=${choose} disabled=${!!item} />` : html`<p>System: ${system}</p>`}
    <${Field} label="Title" name="title" required value=${title} onInput=${setTitle} error=${error} />
    <fieldset><legend>Credentials</legend>
      <${TemplateFields} fields=${template} values=${values} setValues=${setValues} prefix="credentials" error=${error} local=${local} />
    </fieldset>
    <button type="submit" class="primary">${item ? 'Save' : 'Create key'}</button>
  </form>`;
}

/** Creates or changes a source or destination: system, function, key and the function's params. */
function EndpointForm({ systems, item, kind, onSaved }) {
  const list = (s) => (kind === 'source' ? s.sources : s.destinations);
  const usable = systems.filter((s) => list(s).length > 0);
  const [system, setSystem] = useState(item ? item.system : usable[0].name);
  const sys = usable.find((s) => s.name === system) || usable[0];
  const [fn, setFn] = useState(item ? item.function : list(sys)[0].name);
  const func = list(sys).find((f) => f.name === fn) || list(sys)[0];
  const [title, setTitle] = useState(item ? item.title : '');
  const [keyId, setKeyId] = useState(item ? item.key_id : null);
  const [trigger, setTrigger] = useState(item && item.trigger ? item.trigger : (func.triggers || [])[0] || 'manual');
  const [schedule, setSchedule] = useState(item && item.schedule ? item.schedule : '');
  const [timezone, setTimezone] = useState(item && item.timezone ? item.timezone : '');
  const [mode, setMode] = useState(item && item.mode ? item.mode : 'realtime');
  const [retry, setRetry] = useState(item && item.retry ? JSON.stringify(item.retry) : '');
  const [active, setActive] = useState(item ? item.active !== false : true);
  const [values, setValues] = useState(() => startValues(func.params, item && item.params));
  const [local, setLocal] = useState({});
  const [error, setError] = useState(null);
  const chooseSystem = (name) => {
    const s = usable.find((x) => x.name === name);
    setSystem(name);
    setFn(list(s)[0].name);
    setValues(startValues(list(s)[0].params, null));
    setTrigger((list(s)[0].triggers || [])[0] || 'manual');
    setKeyId(null);
  };
  const chooseFunction = (name) => {
    const f = list(sys).find((x) => x.name === name);
    setFn(name);
    setValues(startValues(f.params, null));
    setTrigger((f.triggers || [])[0] || 'manual');
  };
  const path = kind === 'source' ? '/sources' : '/destinations';
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    const errors = {};
    const params = collect(func.params, values, errors);
    let retryValue;
    if (kind === 'destination' && retry.trim()) {
      const parsed = parseJson(retry);
      if (parsed.error) errors.retry = parsed.error;
      retryValue = parsed.value;
    }
    setLocal(errors);
    if (Object.keys(errors).length) return;
    const body = { title, key_id: keyId || null, params };
    if (!item) Object.assign(body, { system, function: fn });
    else if (fn !== item.function) body.function = fn;
    if (kind === 'source') Object.assign(body, { trigger, active, schedule: trigger === 'scheduled' ? schedule : null, timezone: trigger === 'scheduled' && timezone ? timezone : null });
    else {
      body.mode = mode;
      if (retryValue) body.retry = retryValue;
    }
    await save(path, item, body, kind, onSaved, setError);
  };
  return html`<form class="card" onSubmit=${submit} aria-label=${item ? `Change the ${kind}` : `New ${kind}`}>
    <h2>${item ? `Change the ${kind}` : `New ${kind}`}</h2>
    <${Problem} error=${error} />
    <${SystemPicker} systems=${usable} value=${system} onChange=${chooseSystem} disabled=${!!item} />
    <${Field} label="Function" name="function" error=${error} hint=${func.description}>
      <select id="f-function" value=${fn} onChange=${(e) => chooseFunction(e.target.value)}>
        ${list(sys).map((f) => html`<option value=${f.name}>${f.name}</option>`)}
      </select>
    <//>
    <${Field} label="Title" name="title" required value=${title} onInput=${setTitle} error=${error} />
    <${KeyPicker} system=${system} value=${keyId} onChange=${setKeyId} error=${error} required=${sys.key_required} />
    ${kind === 'source' && html`<${Field} label="Trigger" name="trigger" error=${error}>
        <select id="f-trigger" value=${trigger} onChange=${(e) => setTrigger(e.target.value)}>
          ${(func.triggers || []).map((t) => html`<option value=${t}>${t}</option>`)}
        </select>
      <//>
      ${trigger === 'scheduled' && html`
        <${Field} label="Schedule (cron, 5 fields)" name="schedule" required value=${schedule} onInput=${setSchedule} error=${error} hint="e.g. */15 * * * * for every 15 minutes" />
        <${Field} label="Time zone (optional)" name="timezone" value=${timezone} onInput=${setTimezone} error=${error} hint="e.g. Europe/London; UTC when empty" />`}
      <div class="field check"><input id="f-active" type="checkbox" checked=${active} onChange=${(e) => setActive(e.target.checked)} /><label for="f-active">Active</label></div>`}
    ${kind === 'destination' && html`<${Field} label="Mode" name="mode" error=${error} hint="realtime: each record as it comes; aggregate: a job's records together; scheduled: on the destination's schedule">
        <select id="f-mode" value=${mode} onChange=${(e) => setMode(e.target.value)}>
          ${['realtime', 'aggregate', 'scheduled'].map((m) => html`<option value=${m}>${m}</option>`)}
        </select>
      <//>
      <div class="field"><label for="f-retry">Retry schedule (JSON, optional)</label>
        <input id="f-retry" class="code" value=${retry} placeholder='{"schedule_seconds": [0, 5, 300], "timeout_seconds": 30}'
          aria-invalid=${local.retry || (error && error.field && error.field('retry')) ? 'true' : undefined} onInput=${(e) => setRetry(e.target.value)} />
        ${(local.retry || (error && error.field && error.field('retry'))) && html`<small class="field-error">${local.retry || error.field('retry')}</small>`}
      </div>`}
    ${func.params.length > 0 && html`<fieldset><legend>Parameters of ${fn}</legend>
      <${TemplateFields} fields=${func.params} values=${values} setValues=${setValues} prefix="params" error=${error} local=${local} />
    </fieldset>`}
    <button type="submit" class="primary">${item ? 'Save' : `Create ${kind}`}</button>
  </form>`;
}

/** The form of a key, source or destination, once the system library is loaded. */
export function LibraryForm({ kind, item, onSaved }) {
  const [systems, error] = useApi('/systems');
  return html`<${Loaded} data=${systems} error=${error}>${(s) => {
    const list = s.items || s;
    if (kind === 'key') return html`<${KeyForm} systems=${list.filter((x) => x.key_template.length > 0)} item=${item} onSaved=${onSaved} />`;
    if (item && !list.some((x) => x.name === item.system)) return html`<p class="problem">The system ${item.system} is no longer offered; this ${kind} can only be deleted.</p>`;
    return html`<${EndpointForm} systems=${list} item=${item} kind=${kind} onSaved=${onSaved} />`;
  }}<//>`;
}

/** Checkboxes for picking several of a list (streams, channels) by name. */
function ManyPicker({ legend, path, value, onChange, hint }) {
  const [page] = useApi(`${path}?limit=500`);
  const items = page ? page.items : [];
  const toggle = (id, on) => onChange(on ? [...value, id] : value.filter((x) => x !== id));
  return html`<fieldset><legend>${legend}</legend>
    ${hint && html`<p class="hint">${hint}</p>`}
    ${items.length === 0 && html`<p class="muted">None yet.</p>`}
    ${items.map((x) => html`<div class="field check"><input id=${`pick-${x.id}`} type="checkbox" checked=${value.includes(x.id)} onChange=${(e) => toggle(x.id, e.target.checked)} />
      <label for=${`pick-${x.id}`}>${x.title || x.name}</label></div>`)}
  </fieldset>`;
}

const RULE_KINDS = [
  ['job_failed', 'A job fails'],
  ['event_error', 'An event ends in ERROR'],
  ['event_failed', 'An event ends FAILED'],
  ['error_rate', 'The error rate passes a threshold'],
  ['silence', 'A stream receives nothing for a while'],
  ['stuck', 'Work waits too long'],
];

/** Creates or changes an alert rule: what raises it, which streams, which channels. */
export function RuleForm({ item, onSaved }) {
  const [form, setForm] = useState(() => ({
    name: item ? item.name : '', kind: item ? item.kind : 'event_failed',
    stream_ids: item ? item.stream_ids : [], channel_ids: item ? item.channel_ids : [],
    threshold_pct: item ? item.threshold_pct : 10, min_events: item ? item.min_events : 20,
    window_minutes: item ? item.window_minutes : 60, silence_minutes: item ? item.silence_minutes : 120,
    stuck_minutes: item ? item.stuck_minutes : 30, digest: item ? item.digest : 'none', enabled: item ? item.enabled : true,
  }));
  const [error, setError] = useState(null);
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const number = (k, label, hint) => html`<${Field} label=${label} name=${k} type="number" min="0" step="any" value=${form[k]} onInput=${(v) => set(k)(v)} error=${error} hint=${hint} />`;
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    const body = { name: form.name, kind: form.kind, stream_ids: form.stream_ids, channel_ids: form.channel_ids, digest: form.digest, enabled: form.enabled };
    if (form.kind === 'error_rate') Object.assign(body, { threshold_pct: Number(form.threshold_pct), min_events: Number(form.min_events), window_minutes: Number(form.window_minutes) });
    if (form.kind === 'silence') body.silence_minutes = Number(form.silence_minutes);
    if (form.kind === 'stuck') body.stuck_minutes = Number(form.stuck_minutes);
    await save('/alert-rules', item, body, 'rule', onSaved, setError);
  };
  return html`<form class="card" onSubmit=${submit} aria-label=${item ? 'Change the rule' : 'New rule'}>
    <h2>${item ? 'Change the rule' : 'New rule'}</h2>
    <${Problem} error=${error} />
    <${Field} label="Name" name="name" required value=${form.name} onInput=${set('name')} error=${error} />
    <${Field} label="Raise an alert when" name="kind" error=${error}>
      <select id="f-kind" value=${form.kind} disabled=${!!item} onChange=${(e) => set('kind')(e.target.value)}>
        ${RULE_KINDS.map(([k, l]) => html`<option value=${k}>${l}</option>`)}
      </select>
    <//>
    ${form.kind === 'error_rate' && html`${number('threshold_pct', 'Threshold (% of finished events not OK)')}${number('min_events', 'At least this many events', 'Fewer events in the window raise nothing.')}${number('window_minutes', 'Over the last (minutes)')}`}
    ${form.kind === 'silence' && number('silence_minutes', 'Nothing received for (minutes)')}
    ${form.kind === 'stuck' && number('stuck_minutes', 'Work waiting longer than (minutes)')}
    <${ManyPicker} legend="Streams" path="/streams" value=${form.stream_ids} onChange=${set('stream_ids')} hint="None chosen: every stream." />
    <${ManyPicker} legend="Send to" path="/alert-channels" value=${form.channel_ids} onChange=${set('channel_ids')} />
    <${Field} label="Digest" name="digest" error=${error} hint="A summary of each watched stream, besides the alerts.">
      <select id="f-digest" value=${form.digest} onChange=${(e) => set('digest')(e.target.value)}>
        ${['none', 'daily', 'weekly'].map((d) => html`<option value=${d}>${d}</option>`)}
      </select>
    <//>
    <div class="field check"><input id="f-enabled" type="checkbox" checked=${form.enabled} onChange=${(e) => set('enabled')(e.target.checked)} /><label for="f-enabled">Enabled</label></div>
    <button type="submit" class="primary">${item ? 'Save' : 'Create rule'}</button>
  </form>`;
}

/** Creates or changes an alert channel: an e-mail address or a signed webhook. */
export function ChannelForm({ item, onSaved }) {
  const [form, setForm] = useState({ name: item ? item.name : '', kind: item ? item.kind : 'email', target: item ? item.target : '' });
  const [error, setError] = useState(null);
  const [secret, setSecret] = useState(null);
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const out = item ? await patch(`/alert-channels/${item.id}`, { name: form.name, target: form.target }) : await post('/alert-channels', form);
      notice(item ? 'The channel is saved.' : 'The channel is created.');
      if (!item && out.secret) setSecret({ out, value: out.secret });
      else onSaved(out);
    } catch (err) {
      setError(err);
    }
  };
  if (secret) {
    return html`<div class="card" role="status"><p>The channel signs each message with this secret, shown once — give it to the receiver now:</p>
      <p><code class="secret">${secret.value}</code></p><button type="button" class="primary" onClick=${() => onSaved(secret.out)}>Done</button></div>`;
  }
  return html`<form class="card" onSubmit=${submit} aria-label=${item ? 'Change the channel' : 'New channel'}>
    <h2>${item ? 'Change the channel' : 'New channel'}</h2>
    <${Problem} error=${error} />
    <${Field} label="Name" name="name" required value=${form.name} onInput=${set('name')} error=${error} />
    <${Field} label="Kind" name="kind" error=${error}>
      <select id="f-kind" value=${form.kind} disabled=${!!item} onChange=${(e) => set('kind')(e.target.value)}>
        <option value="email">E-mail</option><option value="webhook">Webhook (a signed POST)</option>
      </select>
    <//>
    <${Field} label=${form.kind === 'email' ? 'E-mail address' : 'URL'} name="target" required value=${form.target} onInput=${set('target')} error=${error} />
    <button type="submit" class="primary">${item ? 'Save' : 'Create channel'}</button>
  </form>`;
}

/** Creates a transformation: its title, data type, language, output format and code. */
export function TransformationForm({ item, onSaved }) {
  const [form, setForm] = useState({
    title: item ? item.title : '', description: item ? item.description : '', data_type: item ? item.data_type : 'sales_order',
    language: item ? item.language : 'javascript', format: item ? item.format : 'json',
    code: item ? item.code : 'function transform(record, ctx) {\n  return record;\n}\n',
  });
  const [error, setError] = useState(null);
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const submit = async (e) => {
    e.preventDefault();
    await save('/transformations', item, form, 'transformation', onSaved, setError);
  };
  return html`<form class="card wide" onSubmit=${submit} aria-label=${item ? 'Change the transformation' : 'New transformation'}>
    <h2>${item ? 'Change the transformation' : 'New transformation'}</h2>
    <${Problem} error=${error} />
    <${Field} label="Title" name="title" required value=${form.title} onInput=${set('title')} error=${error} />
    <${Field} label="Description" name="description" value=${form.description} onInput=${set('description')} error=${error} />
    <${Field} label="Data type" name="data_type" required value=${form.data_type} onInput=${set('data_type')} error=${error} />
    <div class="two">
      <${Field} label="Language" name="language" error=${error}>
        <select id="f-language" value=${form.language} onChange=${(e) => set('language')(e.target.value)}>
          <option value="javascript">JavaScript</option><option value="template">Template</option>
        </select>
      <//>
      <${Field} label="Output format" name="format" error=${error}>
        <select id="f-format" value=${form.format} onChange=${(e) => set('format')(e.target.value)}>
          ${['json', 'csv', 'xml', 'text'].map((f) => html`<option value=${f}>${f}</option>`)}
        </select>
      <//>
    </div>
    <${Field} label="Code" name="code" error=${error}>
      <textarea id="f-code" class="code editor" rows="16" spellcheck="false" onInput=${(e) => set('code')(e.target.value)} value=${form.code}></textarea>
    <//>
    <button type="submit" class="primary">${item ? 'Save' : 'Create transformation'}</button>
  </form>`;
}
