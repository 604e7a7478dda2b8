// New batch: choose an operation, get its template, upload a CSV, read the
// dry-run report (row, field, reason), then submit and open the batch.

import { api, download, query } from './api.js';
import { h, fill, problemText, table, toast, operations } from './ui.js';

/**
 * Split CSV text the way the server reads it: one item per non-blank line
 * after the header. Returns the header line and, per item, its line number
 * in the file (1-based) and its text.
 */
export function csvItems(text) {
  const lines = text.split('\n');
  let header = null;
  const items = [];
  lines.forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return;
    if (header === null) header = line;
    else items.push({ line: i + 1, text: line });
  });
  return { header, items };
}

export function render(main, _params, go) {
  const opSel = h('select', { id: 'operation', name: 'operation', required: true });
  const modeSel = h('select', { id: 'mode', name: 'mode' },
    h('option', { value: 'parallel' }, 'parallel'),
    h('option', { value: 'sequential_per_iccid' }, 'sequential per ICCID'));
  const columns = h('p', { id: 'op-columns', class: 'muted' });
  const templateBtn = h('button', { type: 'button', class: 'secondary', id: 'template' }, 'Download CSV template');
  const file = h('input', { id: 'csv-file', type: 'file', accept: '.csv,text/csv', required: true });
  const report = h('section', { id: 'report', 'aria-live': 'polite' });

  main.append(
    h('h1', {}, 'New batch'),
    h('section', { class: 'card', 'aria-labelledby': 'step1' },
      h('h2', { id: 'step1' }, '1. Operation'),
      h('div', { class: 'row' },
        h('label', { for: 'operation' }, 'Operation', opSel),
        h('label', { for: 'mode' }, 'Mode', modeSel),
        templateBtn),
      columns),
    h('section', { class: 'card', 'aria-labelledby': 'step2' },
      h('h2', { id: 'step2' }, '2. Upload a CSV'),
      h('p', { class: 'muted' }, 'One header row of column names, then one SIM per row. Nothing is stored until you submit: the file is first checked (a dry run).'),
      h('label', { for: 'csv-file' }, 'CSV file', file)),
    report);

  let ops = [];
  const showColumns = () => {
    const o = ops.find((x) => x.name === opSel.value);
    fill(columns, o && o.fields.length
      ? ['Columns: ', o.fields.map((f, i) => [i ? ', ' : '',
        h(f.required ? 'strong' : 'span', {}, h('code', {}, f.name)),
        f.secret ? ' (secret: stored encrypted, never shown again)' : '']),
      '. Bold columns are required.']
      : '');
  };
  operations(api).then((list) => {
    ops = list;
    fill(opSel, list.map((o) => h('option', { value: o.name }, o.name)));
    if (list.some((o) => o.name === 'register_sim')) opSel.value = 'register_sim';
    showColumns();
  }).catch((e) => fill(columns, h('span', { class: 'error' }, `Cannot load operations: ${problemText(e)}`)));
  opSel.addEventListener('change', () => { showColumns(); if (file.files.length) check(); });

  templateBtn.addEventListener('click', async () => {
    try {
      const f = await download(`/v1/operations/${encodeURIComponent(opSel.value)}/template.csv`, `${opSel.value}.csv`);
      toast(`Saved ${f.name}.`);
    } catch (e) { toast(`Template download failed: ${problemText(e)}`, true); }
  });

  let parsed = null;
  async function check() {
    const f = file.files[0];
    if (!f) return;
    fill(report, h('p', { class: 'card muted' }, `Checking ${f.name}…`));
    const text = await f.text();
    parsed = csvItems(text);
    let r;
    try {
      r = await api(`/v1/batches${query({ operation: opSel.value, mode: modeSel.value, dry_run: 'true' })}`,
        { method: 'POST', body: text, type: 'text/csv' });
    } catch (e) {
      fill(report, h('div', { class: 'card' },
        h('p', { class: 'report-bad', role: 'alert', id: 'report-error' }, `The file cannot be used: ${problemText(e)}`)));
      return;
    }
    showReport(f.name, text, r);
  }
  file.addEventListener('change', check);

  function showReport(name, text, r) {
    const bad = r.rejected.length;
    const total = r.counts.total;
    const valid = total - r.counts.rejected;
    const lineOf = (idx) => parsed.items[idx]?.line ?? '?';
    const rows = r.rejected.map((x) => h('tr', { 'data-row': lineOf(x.index) },
      h('td', { class: 'num' }, lineOf(x.index)),
      h('td', {}, x.field || '—'),
      h('td', { class: 'mono' }, x.code),
      h('td', {}, x.reason)));
    const submitValid = h('button', { type: 'button', id: 'submit-valid', disabled: valid === 0 || r.rejected_truncated },
      bad ? `Submit the ${valid.toLocaleString()} valid rows` : `Submit ${valid.toLocaleString()} rows`);
    const submitAll = bad
      ? h('button', { type: 'button', class: 'secondary', id: 'submit-all' },
        `Submit all ${total.toLocaleString()} rows (the ${r.counts.rejected.toLocaleString()} invalid ones are kept as REJECTED)`)
      : null;
    fill(report, h('div', { class: 'card' },
      h('h2', {}, '3. Validation report'),
      h('p', { id: 'report-summary', class: bad ? 'report-bad' : 'report-ok' },
        `${name}: ${total.toLocaleString()} rows, ${valid.toLocaleString()} valid, ${r.counts.rejected.toLocaleString()} with errors.`),
      r.rejected_truncated ? h('p', { class: 'error' }, `Only the first ${bad} errors are listed; fix them and upload again, or submit all rows.`) : null,
      bad ? table([h('th', { class: 'num', scope: 'col' }, 'Row'), 'Field', 'Code', 'Reason'], rows,
        { id: 'report-errors', 'aria-label': 'Rows with errors (row numbers count the header as row 1)' }) : null,
      bad ? h('p', { class: 'muted' }, 'Row numbers are lines of the file; the header is row 1.') : null,
      h('div', { class: 'actions' }, submitValid, submitAll)));
    submitValid.addEventListener('click', () => {
      const skip = new Set(r.rejected.map((x) => x.index));
      const kept = parsed.items.filter((_, i) => !skip.has(i)).map((x) => x.text);
      submit([parsed.header, ...kept].join('\n') + '\n');
    });
    submitAll?.addEventListener('click', () => submit(text));
  }

  async function submit(body) {
    for (const b of report.querySelectorAll('button')) b.disabled = true;
    try {
      const r = await api(`/v1/batches${query({ operation: opSel.value, mode: modeSel.value })}`,
        { method: 'POST', body, type: 'text/csv' });
      toast(`Batch submitted: ${r.counts.total.toLocaleString()} items.`);
      go(`#/batches/${r.id}`);
    } catch (e) {
      toast(`Submit failed: ${problemText(e)}`, true);
      for (const b of report.querySelectorAll('button')) b.disabled = false;
    }
  }
}
