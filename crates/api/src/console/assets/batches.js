// Batches: filters, counts per state, and a live list with progress bars.

import { api, query } from './api.js';
import {
  h, fill, when, badge, shortId, progress, problemText, table, every, operations, BATCH_STATUSES,
} from './ui.js';

const PAGE = 25;

/** RFC 3339 start of a local `yyyy-mm-dd` day (offset `days`). */
function dayStart(v, days = 0) {
  if (!v) return undefined;
  const d = new Date(`${v}T00:00:00`);
  d.setDate(d.getDate() + days);
  return d.toISOString();
}

export function render(main, { query: qp }, go) {
  const f = {
    status: qp.get('status') || '',
    operation: qp.get('operation') || '',
    from: qp.get('from') || '',
    to: qp.get('to') || '',
  };
  const cursors = [null];
  const statusSel = h('select', { id: 'f-status', name: 'status' },
    h('option', { value: '' }, 'Any status'),
    BATCH_STATUSES.map((s) => h('option', { value: s }, s.replaceAll('_', ' '))));
  statusSel.value = f.status;
  const opSel = h('select', { id: 'f-operation', name: 'operation' }, h('option', { value: '' }, 'Any operation'));
  const from = h('input', { id: 'f-from', type: 'date', name: 'from', value: f.from });
  const to = h('input', { id: 'f-to', type: 'date', name: 'to', value: f.to });
  const form = h('form', { class: 'card row', id: 'batch-filters', role: 'search', 'aria-label': 'Filter batches' },
    h('label', { for: 'f-status' }, 'Status', statusSel),
    h('label', { for: 'f-operation' }, 'Operation', opSel),
    h('label', { for: 'f-from' }, 'Created from', from),
    h('label', { for: 'f-to' }, 'Created to', to),
    h('button', { type: 'submit' }, 'Apply'),
    h('button', { type: 'button', class: 'secondary', onclick: () => go('#/batches') }, 'Clear'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    go(`#/batches${query({ status: statusSel.value, operation: opSel.value, from: from.value, to: to.value })}`);
  });
  operations(api).then((ops) => {
    for (const o of ops) opSel.append(h('option', { value: o.name }, o.name));
    opSel.value = f.operation;
  }).catch(() => {});

  const chips = h('ul', { class: 'chips', id: 'state-counts', 'aria-label': 'Batches per state' });
  const list = h('div', { id: 'batch-list', 'aria-live': 'off' });
  const prev = h('button', { type: 'button', class: 'secondary', disabled: true }, '← Newer');
  const next = h('button', { type: 'button', class: 'secondary', disabled: true }, 'Older →');
  const live = h('span', { class: 'muted', id: 'live' });
  main.append(
    h('div', { class: 'title-row' }, h('h1', {}, 'Batches'), h('a', { class: 'button', href: '#/new' }, 'New batch')),
    form, chips, list, h('div', { class: 'pager' }, prev, next, live));

  const base = {
    operation: f.operation,
    created_after: dayStart(f.from),
    created_before: dayStart(f.to, 1),
  };

  // One grouped count under the operation and date filters; each chip links
  // to the list filtered by its state.
  async function loadCounts() {
    const c = await api(`/v1/batches/counts${query(base)}`);
    fill(chips, BATCH_STATUSES.map((s) => h('li', { 'data-state': s, class: s === f.status ? 'current' : '' },
      h('a', { href: `#/batches${query({ status: s, operation: f.operation, from: f.from, to: f.to })}`,
        'aria-label': `${c.by_status[s] ?? 0} ${s.replaceAll('_', ' ').toLowerCase()}: show only these` },
      h('b', {}, (c.by_status[s] ?? 0).toLocaleString()), ' ', badge(s)))));
  }

  async function loadPage() {
    const cursor = cursors[cursors.length - 1];
    const page = await api(`/v1/batches${query({ ...base, status: f.status, limit: PAGE, cursor })}`);
    const cell = (label, attrs, ...content) => h('td', { 'data-label': label, ...attrs }, ...content);
    const rows = page.data.map((b) => h('tr', { 'data-batch': b.id, 'data-status': b.status },
      cell('Batch', {}, h('span', {},
        h('a', { href: `#/batches/${b.id}`, class: 'mono', title: b.id, 'aria-label': `Batch ${b.id}` }, shortId(b.id)),
        h('div', { class: 'muted' }, when(b.created_at)))),
      cell('Operation', {}, b.operation || 'mixed'),
      cell('Status', {}, badge(b.status)),
      cell('Progress', {}, progress(b.counts)),
      cell('Completed', { class: 'num' }, b.counts.completed.toLocaleString()),
      cell('Failed', { class: 'num' }, b.counts.failed.toLocaleString()),
      cell('Rejected', { class: 'num' }, b.counts.rejected.toLocaleString()),
      cell('Canceled', { class: 'num' }, b.counts.canceled.toLocaleString())));
    fill(list, page.data.length
      ? table(['Batch', 'Operation', 'Status', 'Progress',
        h('th', { class: 'num', scope: 'col' }, 'Completed'), h('th', { class: 'num', scope: 'col' }, 'Failed'),
        h('th', { class: 'num', scope: 'col' }, 'Rejected'), h('th', { class: 'num', scope: 'col' }, 'Canceled')], rows,
      { 'aria-label': 'Batches, newest first', class: 'cards' })
      : h('p', { class: 'card muted' }, 'No batches match.'));
    prev.disabled = cursors.length < 2;
    next.disabled = !page.next_cursor;
    next.onclick = () => { cursors.push(page.next_cursor); refresh(); };
    live.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }
  prev.addEventListener('click', () => { cursors.pop(); refresh(); });

  async function refresh() {
    try {
      await Promise.all([loadPage(), loadCounts()]);
    } catch (e) {
      fill(list, h('p', { class: 'error', role: 'alert' }, `Cannot list batches: ${problemText(e)}`));
    }
  }
  refresh();
  let n = 0;
  // The list every 2 s; the per-state counts (one grouped query) every 4 s.
  return every(2000, async () => {
    n += 1;
    await (n % 2 === 0 ? Promise.all([loadPage(), loadCounts()]) : loadPage());
  });
}
