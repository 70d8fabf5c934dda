// My account: two-factor sign-in (enrol with a QR code, confirm, recovery codes), my
// sessions, my password.

import { html, useState } from '../../vendor/htm-preact-standalone.module.js';
import { api, post } from '../api.js';
import { Screen, Field, Problem, Time, Action, useApi, Loaded, notice } from '../ui.js';

function TwoFactor({ me, reloadMe }) {
  const [enrolment, setEnrolment] = useState(null);
  const [code, setCode] = useState('');
  const [codes, setCodes] = useState(null);
  const [error, setError] = useState(null);
  const on = me.user.totp_enabled || codes;
  const start = async () => {
    setError(null);
    setEnrolment(await post('/users/me/totp', null));
  };
  const confirm = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const out = await post('/users/me/totp/confirm', { code: code.trim() });
      setCodes(out.recovery_codes);
      setEnrolment(null);
      reloadMe();
    } catch (err) {
      setError(err);
    }
  };
  return html`<section class="card" aria-labelledby="twofa">
    <h2 id="twofa">Two-factor sign-in</h2>
    ${me.organisation.require_2fa && !on && html`<p class="problem" role="alert">Your organisation requires two-factor sign-in: turn it on to use the panel.</p>`}
    ${on && !codes && html`<p><span class="status tone-ok">On</span> Sign-in asks for a code from your authenticator app. ${me.user.recovery_codes_left} recovery codes left.</p>`}
    ${codes && html`<div role="status">
      <p><span class="status tone-ok">On</span> Two-factor sign-in is on. Keep these recovery codes somewhere safe: each works once, and they are not shown again.</p>
      <ul class="codes">${codes.map((c) => html`<li><code>${c}</code></li>`)}</ul>
      <p><a href="/">Continue to the overview</a></p>
    </div>`}
    ${!on && !enrolment && html`<p>Off.</p><${Action} kind="primary" label="Turn on two-factor sign-in" action=${start} onError=${setError} />`}
    ${enrolment && html`<div>
      <p>Scan this code with an authenticator app, or enter the key by hand, then type the six-digit code it shows.</p>
      <div class="qr" role="img" aria-label="QR code of the authenticator key" dangerouslySetInnerHTML=${{ __html: enrolment.qr_svg }}></div>
      <p>Key: <code class="secret">${enrolment.secret}</code></p>
      <form onSubmit=${confirm}>
        <${Problem} error=${error} />
        <${Field} label="Code from the app" name="code" autocomplete="one-time-code" inputmode="numeric" required value=${code} onInput=${setCode} error=${error} />
        <button type="submit" class="primary">Confirm</button>
      </form>
    </div>`}
    ${!enrolment && html`<${Problem} error=${error} />`}
  </section>`;
}

function Sessions() {
  const [list, error, reload] = useApi('/users/me/sessions');
  return html`<section class="card" aria-labelledby="sessions">
    <h2 id="sessions">Where I am signed in</h2>
    <${Loaded} data=${list} error=${error}>${(items) => html`<div class="table-wrap"><table>
      <thead><tr><th scope="col">Signed in</th><th scope="col">Last seen</th><th scope="col">Address</th><th scope="col">Browser</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${items.map((s) => html`<tr>
        <td data-label="Signed in"><${Time} at=${s.created_at} /></td>
        <td data-label="Last seen"><${Time} at=${s.last_seen_at} /></td>
        <td data-label="Address">${s.ip || '—'}</td>
        <td data-label="Browser">${s.user_agent || '—'}</td>
        <td>${s.current ? html`<span class="muted">This browser</span>` : html`<${Action} label="Sign out there" ariaLabel=${`Sign out the session from ${s.ip || 'an unknown address'}, signed in ${s.created_at}`} action=${() => api('DELETE', `/users/me/sessions/${s.id}`)} onDone=${() => { notice('That session has ended.'); reload(); }} />`}</td>
      </tr>`)}</tbody></table></div>`}<//>
  </section>`;
}

function Password() {
  const [form, setForm] = useState({ current_password: '', new_password: '' });
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      await post('/users/me/password', form);
      setForm({ current_password: '', new_password: '' });
      notice('Your password is changed; your other sessions have ended.');
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="card" onSubmit=${submit} aria-labelledby="pw">
    <h2 id="pw">Password</h2>
    <${Problem} error=${error} />
    <${Field} label="Current password" name="current_password" type="password" autocomplete="current-password" required value=${form.current_password} onInput=${(v) => setForm({ ...form, current_password: v })} error=${error} />
    <${Field} label="New password" name="new_password" type="password" autocomplete="new-password" required value=${form.new_password} onInput=${(v) => setForm({ ...form, new_password: v })} error=${error} />
    <button type="submit">Change password</button>
  </form>`;
}

export function Account({ me, reloadMe }) {
  if (!me.user) {
    return html`<${Screen} title="My account"><p>You are using an API token (${me.token.name}); sign in as a person to manage 2FA and sessions.</p><//>`;
  }
  return html`<${Screen} title="My account">
    <p>${me.user.name} · ${me.user.email} · ${me.role.replace('_', ' ')} of ${me.organisation.name}</p>
    <${TwoFactor} me=${me} reloadMe=${reloadMe} />
    ${!(me.organisation.require_2fa && !me.user.totp_enabled) && html`<${Sessions} /><${Password} />`}
  <//>`;
}
