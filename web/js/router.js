// Addresses: every screen and its filters live in the URL, so links can be shared and the
// back button works. Links inside the panel change the page without reloading it.

import { useEffect, useState } from '../vendor/htm-preact-standalone.module.js';

const listeners = new Set();

function changed() {
  for (const f of listeners) f();
}

export function navigate(to, { replace = false } = {}) {
  if (to === location.pathname + location.search + location.hash) return;
  history[replace ? 'replaceState' : 'pushState'](null, '', to);
  changed();
  if (!replace) window.scrollTo(0, 0);
}

window.addEventListener('popstate', changed);

document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download') || e.defaultPrevented) return;
  if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  // A link within this page (the skip link) does what browsers do.
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  if (url.origin !== location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/docs')) return;
  e.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});

/** The current address; re-renders the caller when it changes. */
export function useLocation() {
  const [, tick] = useState(0);
  useEffect(() => {
    const f = () => tick((n) => n + 1);
    listeners.add(f);
    return () => listeners.delete(f);
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

/** Matches `path` against patterns like `/events/:id`; the first match and its parameters. */
export function match(routes, path) {
  for (const [pattern, screen] of routes) {
    const want = pattern.split('/');
    const got = path.replace(/\/+$/, '').split('/');
    if (pattern === '/' && (path === '/' || path === '')) return { screen, params: {}, pattern };
    if (want.length !== got.length) continue;
    const params = {};
    let ok = true;
    for (let i = 0; i < want.length; i++) {
      if (want[i].startsWith(':')) {
        try {
          params[want[i].slice(1)] = decodeURIComponent(got[i]);
        } catch (e) {
          ok = false;
        }
      }
      else if (want[i] !== got[i]) ok = false;
    }
    if (ok) return { screen, params, pattern };
  }
  return null;
}

/** The address of this screen with `changes` made to its query (empty values removed). */
export function withQuery(query, changes) {
  const next = new URLSearchParams(query);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined || v === null || v === '') next.delete(k);
    else next.set(k, v);
  }
  const s = next.toString();
  return location.pathname + (s ? `?${s}` : '');
}
