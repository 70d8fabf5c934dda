// The control panel: who is signed in, the navigation their role allows, and the screen the
// address names. Every screen reads and acts through /api/v1.

import { html, render, useEffect, useState } from '../vendor/htm-preact-standalone.module.js';
import { api, whenSignedOut } from './api.js';
import { navigate, useLocation, match } from './router.js';
import { can, setNotice, Problem } from './ui.js';
import { SignIn, SetPassword } from './screens/signin.js';
import { Account } from './screens/account.js';
import { Overview } from './screens/overview.js';
import { Streams, StreamDetail } from './screens/streams.js';
import { Jobs, JobDetail } from './screens/jobs.js';
import { Events, EventDetail } from './screens/events.js';
import { Entities, EntityDetail } from './screens/entities.js';
import { Alerts, AlertRules, AlertChannels, Notifications } from './screens/alerts.js';
import { EventLog, AuditLog } from './screens/logs.js';
import { Config, ConfigDetail } from './screens/config.js';
import { Users, Tokens, Retention } from './screens/people.js';

/** Screens by address; `role` is the least role that sees it. */
const ROUTES = [
  ['/', Overview, 'viewer'],
  ['/streams', Streams, 'viewer'],
  ['/streams/:id', StreamDetail, 'viewer'],
  ['/jobs', Jobs, 'viewer'],
  ['/jobs/:id', JobDetail, 'viewer'],
  ['/events', Events, 'viewer'],
  ['/events/:id', EventDetail, 'viewer'],
  ['/entities', Entities, 'viewer'],
  ['/entities/:id', EntityDetail, 'viewer'],
  ['/alerts', Alerts, 'viewer'],
  ['/alert-rules', AlertRules, 'viewer'],
  ['/alert-rules/:id', AlertRules, 'viewer'],
  ['/alert-channels', AlertChannels, 'viewer'],
  ['/alert-channels/:id', AlertChannels, 'viewer'],
  ['/notifications', Notifications, 'viewer'],
  ['/event-log', EventLog, 'event_viewer'],
  ['/audit-log', AuditLog, 'admin'],
  ['/systems', Config, 'viewer'],
  ['/keys', Config, 'viewer'],
  ['/keys/:id', ConfigDetail, 'viewer'],
  ['/sources', Config, 'viewer'],
  ['/sources/:id', ConfigDetail, 'viewer'],
  ['/transformations', Config, 'viewer'],
  ['/transformations/:id', ConfigDetail, 'viewer'],
  ['/lookup-tables', Config, 'viewer'],
  ['/lookup-tables/:id', ConfigDetail, 'viewer'],
  ['/destinations', Config, 'viewer'],
  ['/destinations/:id', ConfigDetail, 'viewer'],
  ['/users', Users, 'owner'],
  ['/tokens', Tokens, 'admin'],
  ['/retention', Retention, 'viewer'],
  ['/account', Account, 'event_viewer'],
];

const NAV = [
  ['Monitor', [['/', 'Overview', 'viewer'], ['/streams', 'Streams', 'viewer'], ['/jobs', 'Jobs', 'viewer'], ['/events', 'Events', 'viewer'], ['/entities', 'Entities', 'viewer'], ['/event-log', 'Event log', 'event_viewer']]],
  ['Alerts', [['/alerts', 'Alerts', 'viewer'], ['/alert-rules', 'Rules', 'viewer'], ['/alert-channels', 'Channels', 'viewer'], ['/notifications', 'Notifications', 'viewer']]],
  ['Configure', [['/systems', 'Systems', 'viewer'], ['/keys', 'Keys', 'viewer'], ['/sources', 'Sources', 'viewer'], ['/transformations', 'Transformations', 'viewer'], ['/lookup-tables', 'Lookup tables', 'viewer'], ['/destinations', 'Destinations', 'viewer']]],
  ['Organisation', [['/users', 'Users', 'owner'], ['/tokens', 'API tokens', 'admin'], ['/audit-log', 'Audit log', 'admin'], ['/retention', 'Retention', 'viewer'], ['/account', 'My account', 'event_viewer']]],
];

function Notice() {
  const [note, setNote] = useState(null);
  useEffect(() => setNotice(setNote), []);
  useEffect(() => {
    if (!note) return undefined;
    const t = setTimeout(() => setNote(null), note.tone === 'bad' ? 12000 : 5000);
    return () => clearTimeout(t);
  }, [note]);
  if (!note) return html`<div class="notice-slot" aria-live="polite"></div>`;
  return html`<div class="notice-slot" aria-live="polite"><p class=${`notice tone-${note.tone}`} role=${note.tone === 'bad' ? 'alert' : 'status'}>${note.text}
    <button type="button" class="link" onClick=${() => setNote(null)} aria-label="Dismiss">×</button></p></div>`;
}

function Nav({ me, path }) {
  const [open, setOpen] = useState(false);
  const here = (to) => (to === '/' ? path === '/' : path === to || path.startsWith(`${to}/`));
  return html`<nav class=${`side ${open ? 'open' : ''}`} aria-label="Main">
    <button type="button" class="menu" aria-expanded=${open} aria-controls="nav-groups" onClick=${() => setOpen(!open)}>Menu</button>
    <div id="nav-groups">
      ${NAV.map(([group, links]) => {
        const shown = links.filter(([, , role]) => can(me.role, role));
        if (shown.length === 0) return null;
        return html`<div class="nav-group"><h2>${group}</h2><ul>
          ${shown.map(([to, label]) => html`<li><a href=${to} aria-current=${here(to) ? 'page' : undefined} onClick=${() => setOpen(false)}>${label}</a></li>`)}
        </ul></div>`;
      })}
    </div>
  </nav>`;
}

function Shell({ me, onSignOut, children, path }) {
  const who = me.user ? me.user.name || me.user.email : me.token ? `token ${me.token.name}` : '';
  const signOut = async () => {
    try {
      await api('DELETE', '/session', undefined, { signingIn: true });
    } catch (e) {
      // Signed out already.
    }
    onSignOut();
  };
  return html`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <a class="brand" href="/">Wharf</a>
      <span class="org">${me.organisation.name}</span>
      <span class="who">${who} <span class="role">${me.role.replace('_', ' ')}</span></span>
      ${me.user && html`<button type="button" class="link" onClick=${signOut}>Sign out</button>`}
    </header>
    <${Nav} me=${me} path=${path} />
    <main id="main" tabindex="-1"><${Notice} />${children}</main>
  </div>`;
}

function App() {
  const { path: raw, query } = useLocation();
  const path = raw.replace(/\/+$/, '') || '/';
  const [me, setMe] = useState(undefined);
  const [error, setError] = useState(null);
  const load = () =>
    api('GET', '/users/me', undefined, { signingIn: true }).then(
      (m) => {
        setMe(m);
        setError(null);
      },
      (e) => {
        if (e.status === 401) setMe(null);
        else setError(e);
      },
    );
  useEffect(() => {
    whenSignedOut(() => setMe(null));
    load();
  }, []);
  // On a new screen, move focus to its content, so keyboard and screen-reader users follow.
  const [first, setFirst] = useState(true);
  useEffect(() => {
    if (first) {
      setFirst(false);
      return;
    }
    const main = document.getElementById('main');
    if (main) main.focus({ preventScroll: true });
  }, [path]);
  // Only an address of this site is followed after sign-in.
  const next = (() => {
    const n = query.get('next') || '/';
    return n.startsWith('/') && !n.startsWith('//') ? n : '/';
  })();

  if (path === '/set-password') return html`<${SetPassword} />`;
  if (error) return html`<main class="center"><${Problem} error=${error} /><button type="button" onClick=${load}>Try again</button></main>`;
  if (me === undefined) return html`<main class="center"><p aria-live="polite">Loading…</p></main>`;
  if (me === null || path === '/sign-in') {
    if (me && path === '/sign-in') {
      navigate(next, { replace: true });
      return null;
    }
    if (path !== '/sign-in') {
      navigate(`/sign-in?next=${encodeURIComponent(path + location.search)}`, { replace: true });
      return null;
    }
    return html`<${SignIn} query=${query} onSignedIn=${(m) => { setMe(undefined); load().then(() => navigate(m.must_enrol_2fa ? '/account' : next, { replace: true })); }} />`;
  }
  const found = match(ROUTES.map(([p, s]) => [p, s]), path);
  const needed = found && ROUTES.find(([p]) => p === found.pattern)[2];
  let body;
  const mustEnrol = me.user && me.organisation.require_2fa && !me.user.totp_enabled;
  if (mustEnrol && path !== '/account') {
    navigate('/account', { replace: true });
    return null;
  }
  if (!found) {
    body = html`<section class="screen"><h1 id="screen-title" tabindex="-1">Not found</h1><p>No screen has this address. <a href="/">Go to the overview</a>.</p></section>`;
  } else if (!can(me.role, needed)) {
    if (path === '/' && me.role === 'event_viewer') {
      navigate('/event-log', { replace: true });
      return null;
    }
    body = html`<section class="screen"><h1 id="screen-title" tabindex="-1">Not for your role</h1><p>Your role (${me.role}) cannot see this screen.</p></section>`;
  } else {
    const Screen = found.screen;
    body = html`<${Screen} key=${path} me=${me} reloadMe=${load} params=${found.params} query=${query} path=${path} />`;
  }
  return html`<${Shell} me=${me} path=${path} onSignOut=${() => { setMe(null); navigate('/sign-in', { replace: true }); }}>${body}<//>`;
}

render(html`<${App} />`, document.getElementById('app'));
