// SIM lookup by ICCID, IMSI or MSISDN: state, plans, custom fields and
// history. The API never returns secrets; only whether a Ki is on file.

import { api, query, ApiError } from './api.js';
import { h, fill, when, badge, problemText, table, shortId } from './ui.js';

/** Find SIMs: by ICCID directly, by IMSI or MSISDN through the list filters. */
async function find(by, raw) {
  // Spaces and dashes are only layout; an MSISDN's leading + is not stored.
  const value = raw.replace(/[\s-]/g, '');
  if (by === 'msisdn') {
    return (await api(`/v1/sims${query({ msisdn: value.replace(/^\+/, ''), limit: 20 })}`)).data;
  }
  if (by === 'iccid') {
    try { return [await api(`/v1/sims/${encodeURIComponent(value)}`)]; } catch (e) {
      if (e instanceof ApiError && e.status === 404) return [];
      throw e;
    }
  }
  if (by === 'imsi') {
    return (await api(`/v1/sims${query({ imsi: value, limit: 20 })}`)).data;
  }
  // Any: an ICCID has 18 to 22 digits; otherwise try IMSI, then MSISDN.
  if (/^\d{18,22}F?$/i.test(value)) {
    const r = await find('iccid', value);
    if (r.length) return r;
  }
  const byImsi = await find('imsi', value);
  return byImsi.length ? byImsi : find('msisdn', value);
}

export function render(main, { query: qp }, go) {
  const by = h('select', { id: 'lookup-by' },
    h('option', { value: 'any' }, 'Any'), h('option', { value: 'iccid' }, 'ICCID'),
    h('option', { value: 'imsi' }, 'IMSI'), h('option', { value: 'msisdn' }, 'MSISDN'));
  by.value = qp.get('by') || 'any';
  const input = h('input', { id: 'lookup-value', type: 'search', inputmode: 'numeric', required: true, value: qp.get('q') || '', autocomplete: 'off' });
  const out = h('div', { id: 'sim-result', 'aria-live': 'polite' });
  const form = h('form', { class: 'card row', role: 'search', 'aria-label': 'Find a SIM' },
    h('label', { for: 'lookup-by' }, 'Search by', by),
    h('label', { for: 'lookup-value' }, 'ICCID, IMSI or MSISDN', input),
    h('button', { type: 'submit' }, 'Look up'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    go(`#/sims${query({ by: by.value, q: input.value.trim() })}`);
  });
  main.append(h('h1', {}, 'SIM lookup'), form, out);
  const value = (qp.get('q') || '').trim();
  if (!value) { input.focus(); return; }

  find(by.value, value).then((sims) => {
    if (!sims.length) { fill(out, h('p', { class: 'card' }, `No SIM matches ${value}.`)); return; }
    if (sims.length > 1) {
      fill(out, h('p', {}, `${sims.length} SIMs match; choose one:`),
        table(['ICCID', 'IMSI', 'MSISDN', 'Status'], sims.map((s) => h('tr', {},
          h('td', {}, h('a', { class: 'mono', href: `#/sims${query({ by: 'iccid', q: s.iccid })}` }, s.iccid)),
          h('td', { class: 'mono' }, s.imsi || ''), h('td', { class: 'mono' }, s.msisdn || ''), h('td', {}, badge(s.status))))));
      return;
    }
    showSim(out, sims[0]);
  }).catch((e) => fill(out, h('p', { class: 'error', role: 'alert' }, problemText(e))));
}

function showSim(out, s) {
  const row = (k, v) => [h('dt', {}, k), h('dd', {}, v ?? h('span', { class: 'muted' }, '—'))];
  const customs = [1, 2, 3, 4, 5].map((n) => row(`Custom field ${n}`, s.custom_fields?.[String(n)]));
  const services = Object.entries(s.services || {});
  const history = h('div', { id: 'sim-history' }, h('p', { class: 'muted' }, 'Loading history…'));
  fill(out,
    h('section', { class: 'card', 'aria-labelledby': 'sim-h' },
      h('h2', { id: 'sim-h' }, 'SIM ', h('span', { class: 'mono' }, s.iccid), ' ', badge(s.status)),
      h('dl', { class: 'kv', id: 'sim-details' },
        row('Status', s.status),
        row('Rate plan', s.rate_plan),
        row('Supplementary plans', s.supplementary_plans?.length ? s.supplementary_plans.join(', ') : null),
        row('IMSI', s.imsi), row('MSISDN', s.msisdn), row('EID', s.eid), row('IMEI', s.imei),
        row('APN', s.apn_status),
        row('Subscription', s.subscription_state),
        row('Blocked', s.blocked ? 'yes' : 'no'),
        row('Services', services.length ? services.map(([k, v]) => `${k} ${JSON.stringify(v)}`).join('; ') : null),
        customs,
        row('Ki', s.has_ki ? 'on file (never shown)' : 'none'),
        row('Created', when(s.created_at)), row('Updated', when(s.updated_at)))),
    h('section', { 'aria-labelledby': 'hist-h' }, h('h2', { id: 'hist-h' }, 'History'), history));
  loadHistory(history, s.iccid, null, []);
}

async function loadHistory(box, iccid, cursor, prior) {
  try {
    const page = await api(`/v1/sims/${encodeURIComponent(iccid)}/history${query({ cursor, limit: 100 })}`);
    const all = prior.concat(page.data);
    const more = page.next_cursor
      ? h('button', { type: 'button', class: 'secondary', onclick: () => loadHistory(box, iccid, page.next_cursor, all) }, 'More')
      : null;
    fill(box, all.length
      ? table(['When', 'Operation', 'From', 'To', 'Batch'], all.map((x) => h('tr', {},
        h('td', {}, when(x.at)), h('td', {}, x.operation), h('td', {}, x.from_status || '—'), h('td', {}, x.to_status),
        h('td', {}, x.batch_id ? h('a', { class: 'mono', href: `#/batches/${x.batch_id}`, title: x.batch_id }, shortId(x.batch_id)) : '—'))),
      { 'aria-label': 'Status history, oldest first' })
      : h('p', { class: 'muted' }, 'No history.'), more);
  } catch (e) {
    fill(box, h('p', { class: 'error', role: 'alert' }, problemText(e)));
  }
}
