// The console's router: hash routes, one module per page. A page's render
// returns an optional cleanup (to stop polling) run when leaving it.

import { session } from './api.js';
import * as signin from './signin.js';
import * as batches from './batches.js';
import * as batch from './batch.js';
import * as newBatch from './new.js';
import * as sims from './sims.js';

const routes = [
  [/^#\/signin$/, signin, null],
  [/^#\/batches$/, batches, 'batches'],
  [/^#\/batches\/([0-9a-fA-F-]{36})$/, batch, 'batches'],
  [/^#\/new$/, newBatch, 'new'],
  [/^#\/sims$/, sims, 'sims'],
];

let cleanup = null;

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  const [path, qs] = (location.hash || '#/batches').split('?');
  const params = new URLSearchParams(qs || '');
  if (cleanup) { try { cleanup(); } catch { /* ignore */ } cleanup = null; }
  const main = document.getElementById('main');
  main.replaceChildren();
  const signedIn = !!session.get();
  document.getElementById('nav').hidden = !signedIn;
  if (!signedIn && path !== '#/signin') {
    sessionStorage.setItem('simbatch.next', location.hash || '#/batches');
    go('#/signin');
    return;
  }
  const match = routes.map(([re, mod, nav]) => [re.exec(path), mod, nav]).find(([m]) => m);
  if (!match) { go('#/batches'); return; }
  const [m, mod, nav] = match;
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  cleanup = mod.render(main, { id: m[1], query: params }, go) || null;
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', route);
window.addEventListener('simbatch:signed-out', () => go('#/signin'));
document.getElementById('signout').addEventListener('click', () => {
  session.clear();
  go('#/signin');
});
route();
