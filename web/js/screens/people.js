// People and the organisation: users (invite, role, password reset, 2FA reset), API tokens,
// and the organisation's settings (its retention policy, required 2FA).

import { html, useState } from '../../vendor/htm-preact-standalone.module.js';
import { api, post, patch } from '../api.js';
import { Screen, Time, Action, notice, can, PagedTable, Problem, Field, useApi, Loaded } from '../ui.js';

const ROLES = ['owner', 'admin', 'editor', 'viewer', 'event_viewer'];

function RoleSelect({ id, value, onChange, max }) {
  const allowed = ROLES.filter((r) => !max || ROLES.indexOf(r) >= ROLES.indexOf(max));
  return html`<select id=${id} value=${value} onChange=${(e) => onChange(e.target.value)}>${allowed.map((r) => html`<option value=${r}>${r.replace('_', ' ')}</option>`)}</select>`;
}

function Link({ link, what }) {
  if (!link) return null;
  return html`<div class="card" role="status"><p>${what} Hand over this link; it works once, until <${Time} at=${link.expires_at} />:</p>
    <p><code class="secret">${link.url.startsWith('/') ? location.origin + link.url : link.url}</code></p></div>`;
}

export function Users({ me, query }) {
  const [form, setForm] = useState({ email: '', name: '', role: 'viewer' });
  const [error, setError] = useState(null);
  const [link, setLink] = useState(null);
  const [n, setN] = useState(0);
  const invite = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const out = await post('/users', form);
      setLink({ ...out.invitation, what: `${out.email} is invited.` });
      setForm({ email: '', name: '', role: 'viewer' });
      setN((x) => x + 1);
    } catch (err) {
      setError(err);
    }
  };
  const act = (label, f, done, who) => html`<${Action} label=${label} ariaLabel=${`${label}: ${who}`} action=${f} onDone=${(out) => { done(out); setN((x) => x + 1); }} />`;
  return html`<${Screen} title="Users">
    <form class="card" onSubmit=${invite} aria-labelledby="invite">
      <h2 id="invite">Invite someone</h2>
      <${Problem} error=${error} />
      <${Field} label="E-mail address" name="email" type="email" required value=${form.email} onInput=${(v) => setForm({ ...form, email: v })} error=${error} />
      <${Field} label="Name" name="name" required value=${form.name} onInput=${(v) => setForm({ ...form, name: v })} error=${error} />
      <${Field} label="Role" name="role" error=${error}><${RoleSelect} id="f-role" value=${form.role} onChange=${(v) => setForm({ ...form, role: v })} /><//>
      <button type="submit" class="primary">Invite</button>
    </form>
    ${link && html`<${Link} link=${link} what=${link.what} />`}
    <${PagedTable} path="/users" query=${query} reloadKey=${n} csv="users.csv" columns=${[
      { label: 'Name', cell: (u) => html`${u.name}<br /><small class="muted">${u.email}</small>` },
      { label: 'Role', cell: (u) => (u.id === (me.user && me.user.id) ? u.role : html`<label class="sr-only" for=${`role-${u.id}`}>Role of ${u.name}</label><${RoleSelect} id=${`role-${u.id}`} value=${u.role}
        onChange=${async (role) => { try { await patch(`/users/${u.id}`, { role }); notice(`${u.name} is now ${role}.`); } catch (e) { notice(e.message, 'bad'); } setN((x) => x + 1); }} />`) },
      { label: 'Added', cell: (u) => html`<${Time} at=${u.created_at} />` },
      { label: 'Actions', cell: (u) => (u.id === (me.user && me.user.id) ? html`<a href="/account">My account</a>` : html`<span class="buttons">
        ${act('Password reset link', () => post(`/users/${u.id}/password-reset`, {}), (out) => setLink({ ...out, what: `A password reset link for ${u.name}.` }), u.name)}
        ${act('Reset 2FA', () => post(`/users/${u.id}/totp/reset`, {}), () => notice(`${u.name}'s two-factor sign-in is off; they enrol again.`), u.name)}
        ${act('Remove', async () => { if (window.confirm(`Remove ${u.name}?`)) await api('DELETE', `/users/${u.id}`); }, () => {}, u.name)}
      </span>`) },
    ]} />
  <//>`;
}

export function Tokens({ me, query }) {
  const [form, setForm] = useState({ name: '', role: 'viewer', days: '', user_id: '' });
  const [error, setError] = useState(null);
  const [made, setMade] = useState(null);
  const [people] = useApi(can(me.role, 'owner') ? '/users?limit=500' : null);
  const [n, setN] = useState(0);
  const writes = can(me.role, 'admin');
  const create = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const body = { name: form.name, role: form.role };
      if (form.days) body.expires_at = new Date(Date.now() + Number(form.days) * 86400000).toISOString();
      if (form.user_id) body.user_id = form.user_id;
      setMade(await post('/tokens', body));
      setN((x) => x + 1);
    } catch (err) {
      setError(err);
    }
  };
  return html`<${Screen} title="API tokens">
    ${writes && html`<form class="card" onSubmit=${create} aria-labelledby="new-token">
      <h2 id="new-token">New token</h2>
      <${Problem} error=${error} />
      <${Field} label="Name" name="name" required value=${form.name} onInput=${(v) => setForm({ ...form, name: v })} error=${error} />
      <${Field} label="Role" name="role" error=${error}><${RoleSelect} id="f-role" value=${form.role} max=${me.role} onChange=${(v) => setForm({ ...form, role: v })} /><//>
      <${Field} label="Expires" name="expires_at" error=${error}>
        <select id="f-expires_at" value=${form.days} onChange=${(e) => setForm({ ...form, days: e.target.value })}>
          <option value="">Never</option><option value="30">In 30 days</option><option value="90">In 90 days</option><option value="365">In a year</option>
        </select>
      <//>
      ${people && html`<${Field} label="For a person (acts with the lower of the two roles)" name="user_id" error=${error}>
        <select id="f-user_id" value=${form.user_id} onChange=${(e) => setForm({ ...form, user_id: e.target.value })}>
          <option value="">Nobody in particular</option>${people.items.map((u) => html`<option value=${u.id}>${u.name} (${u.email})</option>`)}
        </select>
      <//>`}
      <button type="submit" class="primary">Create token</button>
    </form>`}
    ${made && html`<div class="card" role="status"><p>The token, shown once — copy it now:</p><p><code class="secret">${made.token}</code></p></div>`}
    <${PagedTable} path="/tokens" query=${query} reloadKey=${n} csv="tokens.csv" columns=${[
      { label: 'Name', cell: (t) => t.name },
      { label: 'Role', cell: (t) => t.role },
      { label: 'Token', cell: (t) => html`<code>${t.hint}</code>` },
      { label: 'Last used', cell: (t) => html`<${Time} at=${t.last_used_at} />` },
      { label: 'Expires', cell: (t) => html`<${Time} at=${t.expires_at} />` },
      { label: 'Created', cell: (t) => html`<${Time} at=${t.created_at} />` },
      { label: 'Actions', cell: (t) => writes && html`<${Action} kind="danger" label="Revoke" ariaLabel=${`Revoke ${t.name}`} action=${() => api('DELETE', `/tokens/${t.id}`)} onDone=${() => { notice('The token is revoked.'); setN((x) => x + 1); }} />` },
    ]} />
  <//>`;
}

const KINDS = [
  ['payload_days', 'Payloads kept (days)', 'Event payloads, transformation logs, response excerpts and uploaded files are cleared after this; the rows stay.'],
  ['records_days', 'Records kept (days)', 'Finished jobs, events and their attempts are deleted after this. Entities keep their last status.'],
  ['log_days', 'Event log kept (days)', 'Event-log entries and sent notifications are deleted after this.'],
  ['audit_days', 'Audit log kept (days)', 'Audit-log entries are deleted after this.'],
];

export function Retention({ me, reloadMe }) {
  const [orgs, error, reload] = useApi('/organisations');
  const [form, setForm] = useState(null);
  const [problem, setProblem] = useState(null);
  const owner = can(me.role, 'owner');
  return html`<${Screen} title="Retention and sign-in">
    <${Loaded} data=${orgs} error=${error}>${(page) => {
      const org = page.items.find((o) => o.id === me.organisation.id) || page.items[0];
      const values = form || { ...org.retention, require_2fa: org.require_2fa, name: org.name };
      const save = async (e) => {
        e.preventDefault();
        setProblem(null);
        const retention = Object.fromEntries(KINDS.map(([k]) => [k, Number(values[k])]));
        // The policy is sent only when a day count changed: otherwise the organisation keeps
        // following the server's defaults.
        const changed = KINDS.some(([k]) => retention[k] !== org.retention[k]);
        const body = { name: values.name, require_2fa: values.require_2fa };
        if (changed) body.retention = retention;
        try {
          await patch(`/organisations/${org.id}`, body);
          notice('The settings are saved.');
          setForm(null);
          reload();
          reloadMe();
        } catch (err) {
          setProblem(err);
        }
      };
      const reset = async () => {
        await patch(`/organisations/${org.id}`, { retention: null });
        notice('The retention policy is back to the defaults.');
        setForm(null);
        reload();
      };
      return html`<form class="card" onSubmit=${save} aria-label="Retention policy">
        <p>${org.retention_is_default ? 'This organisation uses the default policy.' : 'This organisation has its own policy.'}</p>
        <${Problem} error=${problem} />
        <${Field} label="Organisation name" name="name" required value=${values.name} disabled=${!owner} error=${problem} onInput=${(v) => setForm({ ...values, name: v })} />
        ${KINDS.map(([k, label, hint]) => html`<${Field} label=${label} name=${`retention.${k}`} type="number" min="1" max="3650" required
          value=${values[k]} disabled=${!owner} hint=${hint} error=${problem} onInput=${(v) => setForm({ ...values, [k]: v })} />`)}
        <div class="field check"><input id="f-2fa" type="checkbox" disabled=${!owner} checked=${values.require_2fa} onChange=${(e) => setForm({ ...values, require_2fa: e.target.checked })} />
          <label for="f-2fa">Everyone must use two-factor sign-in</label></div>
        ${owner && html`<button type="submit" class="primary">Save</button> ${!org.retention_is_default && html`<${Action} label="Back to the defaults" action=${reset} />`}`}
      </form>`;
    }}<//>
  <//>`;
}
