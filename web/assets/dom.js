// Small DOM helpers shared by the page's modules. No framework: elements are made
// with h(), text is always set as text (never parsed as HTML).

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** An element: h('td', {class: 'x', title: 't'}, 'text', child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export const STATUS_LABEL = { open: 'Open', active: 'Active', waiting: 'Waiting', wrap_up: 'Wrap-up', closed: 'Closed' };

/** "45 s", "12 min", "3 h 5 min", "2 d 4 h" since an RFC 3339 time. */
export function age(since, now = Date.now()) {
  const t = Date.parse(since);
  if (Number.isNaN(t)) return '';
  let s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hours = Math.floor(m / 60);
  if (hours < 24) return m % 60 ? `${hours} h ${m % 60} min` : `${hours} h`;
  const d = Math.floor(hours / 24);
  return hours % 24 ? `${d} d ${hours % 24} h` : `${d} d`;
}

/** A time for people: local date and time, to the second. */
export function when(iso) {
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? String(iso ?? '') : t.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

export function intentText(intent) {
  if (!intent) return '';
  return [intent.family, intent.group, intent.intent].filter(Boolean).join(' › ');
}

/** Keeps Tab and Shift+Tab inside `container` (a modal dialog) while it is open. */
export function trapFocus(container, event) {
  if (event.key !== 'Tab') return;
  const focusable = $$('a[href], button, input, select, textarea, [tabindex]:not([tabindex="-1"])', container)
    .filter((el) => !el.disabled && !el.closest('[hidden]') && el.getClientRects().length > 0);
  if (focusable.length === 0) return;
  const first = focusable[0];
  const last = focusable[focusable.length - 1];
  if (event.shiftKey && document.activeElement === first) { last.focus(); event.preventDefault(); }
  else if (!event.shiftKey && document.activeElement === last) { first.focus(); event.preventDefault(); }
}
