// One batch: summary, counters, actions, downloads and the item table.

import { api, download, query } from './api.js';
import {
  h, fill, when, badge, progress, problemText, table, toast, every, isTerminal, ITEM_STATUSES,
} from './ui.js';

const PAGE = 50;

/** Export splits offered for download: [query status, label]. */
const SPLITS = [['succeeded', 'Succeeded'], ['failed', 'Failed'], ['unprocessed', 'Unprocessed']];

export function render(main, { id, query: qp }, go) {
  const summary = h('dl', { class: 'kv', id: 'batch-summary' });
  const tiles = h('dl', { class: 'tiles', id: 'batch-counters', 'aria-label': 'Item counts' });
  const bar = h('div', { id: 'batch-progress' });
  const title = h('h1', {}, 'Batch ', h('span', { class: 'mono' }, id));
  const statusEl = h('span', { id: 'batch-status', 'aria-live': 'polite' });
  const cancelBtn = h('button', { type: 'button', class: 'danger', id: 'cancel-batch' }, 'Cancel batch');
  const retryBtn = h('button', { type: 'button', class: 'secondary', id: 'retry-failed' }, 'Retry failed');
  const dlStatus = h('p', { id: 'download-status', class: 'muted', role: 'status' });
  const dlRows = SPLITS.map(([s, label]) => h('tr', {},
    h('th', { scope: 'row' }, label),
    ['csv', 'xlsx'].map((fmt) => h('td', {}, h('button', {
      type: 'button', class: 'secondary', id: `dl-${s}-${fmt}`, 'data-split': s, 'data-format': fmt,
      'aria-label': `Download ${label.toLowerCase()} items as ${fmt.toUpperCase()}`,
    }, fmt.toUpperCase())))));
  const downloads = h('section', { class: 'card', 'aria-labelledby': 'dl-h' },
    h('h2', { id: 'dl-h' }, 'Download results'),
    h('table', { class: 'downloads' }, h('tbody', {}, dlRows)), dlStatus);

  const itemStatus = h('select', { id: 'item-status' },
    h('option', { value: '' }, 'All'), ITEM_STATUSES.map((s) => h('option', { value: s }, s)));
  itemStatus.value = qp.get('status') || '';
  const items = h('div', { id: 'items' });
  const prev = h('button', { type: 'button', class: 'secondary', id: 'items-prev', disabled: true }, '← Previous');
  const next = h('button', { type: 'button', class: 'secondary', id: 'items-next', disabled: true }, 'Next →');
  const pageInfo = h('span', { class: 'muted', id: 'items-page' });

  main.append(
    h('p', {}, h('a', { href: '#/batches' }, '← All batches')),
    title,
    h('section', { class: 'card', 'aria-label': 'Summary' }, h('div', { class: 'row' }, statusEl, bar), h('br'), summary),
    tiles,
    h('div', { class: 'actions card' }, cancelBtn, retryBtn),
    downloads,
    h('section', { 'aria-labelledby': 'items-h' },
      h('h2', { id: 'items-h' }, 'Items'),
      h('div', { class: 'row' }, h('label', { for: 'item-status' }, 'Status', itemStatus)),
      h('div', { class: 'pager' }, prev, next, pageInfo),
      items));

  let batch = null;
  let cursors = [null];

  function showBatch(b) {
    batch = b;
    fill(statusEl, badge(b.status));
    fill(bar, progress(b.counts));
    const row = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
    fill(summary,
      row('Operation', b.operation || 'mixed'),
      row('Mode', b.mode),
      row('Source', b.source + (b.external_ref ? ` (${b.external_ref})` : '')),
      b.parent_id ? row('Retry of', h('a', { href: `#/batches/${b.parent_id}`, class: 'mono' }, b.parent_id)) : null,
      row('Created', when(b.created_at)),
      row('Updated', when(b.updated_at)),
      row('Finished', when(b.completed_at)));
    fill(tiles, ['total', 'approved', 'processing', 'completed', 'failed', 'rejected', 'canceled']
      .map((k) => h('div', { 'data-count': k }, h('dt', {}, k), h('dd', {}, b.counts[k].toLocaleString()))));
    cancelBtn.disabled = isTerminal(b.status);
    retryBtn.disabled = !isTerminal(b.status) || b.counts.failed === 0;
  }

  async function loadBatch() {
    showBatch(await api(`/v1/batches/${id}`));
  }

  async function loadItems() {
    const cursor = cursors[cursors.length - 1];
    const page = await api(`/v1/batches/${id}/items${query({ status: itemStatus.value, limit: PAGE, cursor })}`);
    const rows = page.data.map((it) => h('tr', { 'data-index': it.index, 'data-status': it.status },
      h('td', { class: 'num' }, it.index),
      h('td', { class: 'mono' }, it.iccid),
      h('td', {}, badge(it.status)),
      h('td', { class: 'mono' }, it.error?.code || ''),
      h('td', {}, it.error?.field || ''),
      h('td', {}, it.error?.reason || ''),
      h('td', { class: 'hide-narrow' }, when(it.updated_at))));
    fill(items, page.data.length
      ? table([h('th', { class: 'num', scope: 'col', title: 'Position in the batch, from 0 (as in the API and exports)' }, 'Index'), 'ICCID', 'Status', 'Error code', 'Field', 'Reason', h('th', { class: 'hide-narrow', scope: 'col' }, 'Updated')],
        rows, { id: 'item-table', 'aria-label': 'Items of this batch' })
      : h('p', { class: 'card muted' }, 'No items match.'));
    prev.disabled = cursors.length < 2;
    next.disabled = !page.next_cursor;
    next.onclick = () => { cursors.push(page.next_cursor); loadItems().catch(showError); };
    pageInfo.textContent = `Page ${cursors.length}`;
  }
  prev.addEventListener('click', () => { cursors.pop(); loadItems().catch(showError); });
  itemStatus.addEventListener('change', () => { cursors = [null]; loadItems().catch(showError); });

  function showError(e) {
    fill(items, h('p', { class: 'error', role: 'alert' }, problemText(e)));
  }

  cancelBtn.addEventListener('click', async () => {
    if (!window.confirm('Cancel this batch? Items not yet started will not run.')) return;
    try {
      showBatch(await api(`/v1/batches/${id}/cancel`, { method: 'POST' }));
      toast('Batch cancelled.');
      loadItems().catch(showError);
    } catch (e) { toast(`Cancel failed: ${problemText(e)}`, true); }
  });
  retryBtn.addEventListener('click', async () => {
    try {
      const b = await api(`/v1/batches/${id}/retry`, { method: 'POST' });
      toast(`Retrying ${b.counts.total} failed items.`);
      go(`#/batches/${b.id}`);
    } catch (e) { toast(`Retry failed: ${problemText(e)}`, true); }
  });
  for (const btn of downloads.querySelectorAll('button[data-split]')) {
    btn.addEventListener('click', async () => {
      const { split, format } = btn.dataset;
      btn.disabled = true;
      dlStatus.textContent = `Preparing ${split} ${format.toUpperCase()}…`;
      try {
        const f = await download(`/v1/batches/${id}/export${query({ format, status: split })}`,
          `batch-${id}-${split}.${format}`);
        dlStatus.textContent = `Saved ${f.name} (${f.size.toLocaleString()} bytes).`;
      } catch (e) {
        dlStatus.textContent = `Download failed: ${problemText(e)}`;
      } finally { btn.disabled = false; }
    });
  }

  loadBatch().then(() => loadItems()).catch((e) => {
    fill(main, h('h1', {}, 'Batch not found'), h('p', { class: 'error', role: 'alert' }, problemText(e)),
      h('p', {}, h('a', { href: '#/batches' }, '← All batches')));
  });
  // Live while the batch runs: counters every second, the item page with them.
  return every(1000, async () => {
    if (batch && isTerminal(batch.status)) return;
    await loadBatch();
    await loadItems();
  });
}
