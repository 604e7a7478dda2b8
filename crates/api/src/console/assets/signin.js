// Sign-in: check the token against the API, then keep it for this tab.

import { api, session, ApiError } from './api.js';
import { h, problemText } from './ui.js';

export function render(main, _params, go) {
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false',
    required: true, placeholder: 'sk_…', 'aria-describedby': 'token-help',
  });
  const msg = h('p', { id: 'signin-error', class: 'error', role: 'alert' });
  const form = h('form', { class: 'card', id: 'signin-form' },
    h('label', { for: 'token' }, 'API token', input),
    h('p', { id: 'token-help', class: 'muted' },
      'The token printed by the first start, or by ', h('code', {}, 'simbatch keys create'),
      '. It is kept in this tab only and sent as the X-API-Key header.'),
    msg,
    h('button', { type: 'submit', id: 'signin-submit' }, 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.textContent = '';
    const token = input.value.trim();
    if (!token) { msg.textContent = 'Enter a token.'; return; }
    try {
      await api('/v1/batches?limit=1', { token });
      session.set(token);
      go(sessionStorage.getItem('simbatch.next') || '#/batches');
      sessionStorage.removeItem('simbatch.next');
    } catch (e) {
      msg.textContent = e instanceof ApiError && e.status === 401
        ? 'This token is not valid.'
        : `Sign-in failed: ${problemText(e)}`;
    }
  });
  main.append(h('section', { class: 'signin' }, h('h1', {}, 'Sign in'), form));
  input.focus();
}
