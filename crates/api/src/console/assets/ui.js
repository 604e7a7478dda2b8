// Small DOM helpers. Text is always set as text (never parsed as HTML).

/** Create an element: h('a', {href: '#/x', class: 'y'}, 'text', child...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A time as local date and time (the full RFC 3339 value as a tooltip). */
export function when(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

/** A short form of a batch id: its random tail (a UUID v7 starts with the time). */
export function shortId(id) {
  return `…${id.slice(-12)}`;
}

/** A status badge. */
export function badge(status) {
  const s = status || 'UNKNOWN';
  return h('span', { class: `badge s-${s}` }, s.replaceAll('_', ' '));
}

/** Items that reached a final state. */
export function done(c) {
  return c.completed + c.failed + c.rejected + c.canceled;
}

/** A progress bar of a batch's counts: completed, failed, rejected, canceled. */
export function progress(c) {
  const total = Math.max(c.total, 1);
  const fin = done(c);
  const pct = Math.floor((fin * 100) / total);
  const bar = h('div', {
    class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': c.total,
    'aria-valuenow': fin, 'aria-label': `${fin} of ${c.total} items finished`,
  });
  for (const k of ['completed', 'failed', 'rejected', 'canceled']) {
    const seg = h('span', { class: k, title: `${k}: ${c[k]}` });
    seg.style.width = `${(c[k] * 100) / total}%`;
    bar.append(seg);
  }
  return h('div', { class: 'progress' }, bar,
    h('small', { class: 'muted' }, `${fin.toLocaleString()} / ${c.total.toLocaleString()} (${pct}%)`));
}

/** A user-facing description of an API error. */
export function problemText(e) {
  if (!e) return 'unknown error';
  const p = e.problem || {};
  const code = p.code ? ` (${p.code})` : '';
  const first = Array.isArray(p.errors) && p.errors.length
    ? ` — ${p.errors.slice(0, 3).map((x) => [x.field, x.reason].filter(Boolean).join(': ')).join('; ')}`
    : '';
  return `${e.message || 'request failed'}${code}${first}`;
}

/** A short message in the corner (role=status, read by screen readers). */
export function toast(message, bad = false) {
  const box = document.getElementById('toast');
  const m = h('div', { class: bad ? 'msg bad' : 'msg' }, message);
  box.append(m);
  setTimeout(() => m.remove(), bad ? 8000 : 3000);
}

/** A table with a header row; rows are arrays of cells. */
export function table(headers, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      h('thead', {}, h('tr', {}, headers.map((x) => (x instanceof Node ? x : h('th', { scope: 'col' }, x))))),
      h('tbody', {}, rows)));
}

/** Every batch status, in lifecycle order. */
export const BATCH_STATUSES = ['INITIALISING', 'PROCESSING', 'COMPLETED', 'PARTIALLY_COMPLETED', 'CANCELLED'];
/** Every item status. */
export const ITEM_STATUSES = ['APPROVED', 'PROCESSING', 'COMPLETED', 'FAILED', 'REJECTED', 'CANCELED'];
/** Whether a batch status is final. */
export const isTerminal = (s) => ['COMPLETED', 'PARTIALLY_COMPLETED', 'CANCELLED'].includes(s);

/** Repeat `fn` every `ms` while the tab is visible; returns a stopper. */
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await fn(); } catch { /* the next tick tries again */ }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => { stopped = true; clearTimeout(timer); };
}

/** The operations and their CSV columns (cached per page load): [{name, fields: [{name, required, secret}]}]. */
let opsCache = null;
export async function operations(api) {
  if (!opsCache) {
    opsCache = api('/v1/operations').then((r) => (Array.isArray(r) ? r : (r.data || [])).map((o) => ({
      name: o.name,
      fields: (o.fields || []).map((f) => (typeof f === 'string' ? { name: f } : f)),
    }))).catch((e) => { opsCache = null; throw e; });
  }
  return opsCache;
}
