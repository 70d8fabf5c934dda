// Signing in (with the second factor when the account has 2FA on), and setting a password
// from an invitation or reset link.

import { html, useState } from '../../vendor/htm-preact-standalone.module.js';
import { api } from '../api.js';
import { Field, Problem } from '../ui.js';

export function SignIn({ onSignedIn }) {
  const [form, setForm] = useState({ email: '', password: '', code: '' });
  const [second, setSecond] = useState(null); // null, 'totp' or 'recovery'
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const body = { email: form.email, password: form.password };
    if (second === 'totp') body.totp = form.code.trim();
    if (second === 'recovery') body.recovery_code = form.code.trim();
    try {
      const out = await api('POST', '/session', body, { signingIn: true });
      onSignedIn(out);
    } catch (err) {
      if (err.type === 'second-factor-needed') {
        setSecond('totp');
        setTimeout(() => document.getElementById('f-code')?.focus(), 0);
      } else {
        setError(err);
      }
    } finally {
      setBusy(false);
    }
  };
  document.title = 'Sign in · Wharf';
  return html`<main class="center" id="main">
    <form class="card sign-in" onSubmit=${submit} aria-labelledby="sign-in-title">
      <h1 id="sign-in-title">Sign in to Wharf</h1>
      <${Problem} error=${error} />
      <${Field} label="E-mail address" name="email" type="email" autocomplete="username" required value=${form.email} onInput=${set('email')} error=${error} />
      <${Field} label="Password" name="password" type="password" autocomplete="current-password" required value=${form.password} onInput=${set('password')} error=${error} />
      ${second && html`<${Field} label=${second === 'totp' ? 'Code from your authenticator app' : 'Recovery code'} name="code"
          autocomplete="one-time-code" inputmode=${second === 'totp' ? 'numeric' : undefined} required value=${form.code} onInput=${set('code')}
          hint=${second === 'totp' ? 'Two-factor authentication is on for this account: enter the six-digit code.' : 'Each recovery code works once.'} />
        <button type="button" class="link" onClick=${() => setSecond(second === 'totp' ? 'recovery' : 'totp')}>
          ${second === 'totp' ? 'Use a recovery code instead' : 'Use the authenticator app instead'}</button>`}
      <button type="submit" class="primary" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
    </form>
  </main>`;
}

export function SetPassword() {
  const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
  const [form, setForm] = useState({ password: '', again: '' });
  const [error, setError] = useState(null);
  const [done, setDone] = useState(false);
  const [mismatch, setMismatch] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    if (form.password !== form.again) {
      setMismatch(true);
      return;
    }
    setMismatch(false);
    try {
      await api('POST', '/password', { token, password: form.password }, { signingIn: true });
      setDone(true);
    } catch (err) {
      setError(err);
    }
  };
  document.title = 'Choose a password · Wharf';
  if (!token) {
    return html`<main class="center" id="main"><div class="card"><h1>Choose a password</h1>
      <p>This address has no link token. Open the whole link you were given, or ask an owner for a new one.</p></div></main>`;
  }
  if (done) {
    return html`<main class="center" id="main"><div class="card"><h1>Password set</h1>
      <p role="status">Your password is set. <a href="/sign-in">Sign in</a>.</p></div></main>`;
  }
  return html`<main class="center" id="main">
    <form class="card" onSubmit=${submit} aria-labelledby="pw-title">
      <h1 id="pw-title">Choose a password</h1>
      <${Problem} error=${error} />
      <${Field} label="New password" name="password" type="password" autocomplete="new-password" required value=${form.password}
        onInput=${(v) => setForm({ ...form, password: v })} error=${error} hint="At least 10 characters; a few unrelated words make a good one." />
      <div class="field">
        <label for="f-again">The same password again</label>
        <input id="f-again" type="password" autocomplete="new-password" required value=${form.again}
          aria-invalid=${mismatch ? 'true' : undefined} aria-describedby=${mismatch ? 'f-again-error' : undefined}
          onInput=${(e) => setForm({ ...form, again: e.target.value })} />
        ${mismatch && html`<small id="f-again-error" class="field-error">The two passwords differ.</small>`}
      </div>
      <button type="submit" class="primary">Set password</button>
    </form>
  </main>`;
}
