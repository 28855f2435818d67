// The supervisor's web view of the Ongoing record conversations: sign-in, filters,
// the grid with keyset paging, the toolbar's actions, the counts per queue, and the
// live feed that keeps the rows current. Everything goes through the daemon's /v1 API.

import { Api } from './api.js';
import { $, $$, h } from './dom.js';
import { Grid } from './grid.js';
import { confirmAction, distributeDialog, targetDialog } from './dialogs.js';
import { LiveFeed } from './live.js';
import { showCounts, showHistory, showRules } from './panels.js';

const TOKEN_KEY = 'switchboard.token';
/** The status table of docs/api.md: the statuses each action starts from. */
const ALLOWED = {
  assign: ['open'],
  transfer: ['open', 'active', 'waiting'],
  release: ['active', 'waiting'],
  remove: ['open', 'active', 'waiting', 'wrap_up'],
};
const ONGOING = ['open', 'active', 'waiting', 'wrap_up'];
const SIZES = [50, 100, 250, 500, 1000];

const state = {
  api: null,
  me: null,
  filters: { status: [], queue: '', representative: '', entity: '', intent_based: '' },
  size: 100,
  cursors: [null], // the cursor of each page seen, for Previous
  page: 0,
  next: null,
  reps: new Map(),
  queues: new Map(),
  live: null,
  firstRender: true,
  loading: 0,
};

const repName = (id) => state.reps.get(id)?.name ?? id;
const queueName = (id) => state.queues.get(id)?.name ?? id;

function matches(c) {
  const f = state.filters;
  const statuses = f.status.length ? f.status : ONGOING;
  return statuses.includes(c.status)
    && (!f.queue || c.queue === f.queue)
    && (!f.representative || c.representative === f.representative)
    && (!f.entity || c.record.entity === f.entity)
    && (!f.intent_based || String(!!c.intent_based) === f.intent_based);
}

const grid = new Grid($('#rows'), $('#row-template'), {
  repName, queueName, matches,
  onSelection: () => updateToolbar(),
  onOpen: (c) => c && showHistory(ctx, c.id),
});

function notice(text, kind = 'info') {
  const el = $('#notice');
  el.textContent = text;
  el.dataset.kind = kind;
}

/** What the dialogs and panels may use. */
const ctx = {
  get api() { return state.api; },
  get may() { return state.me?.may ?? {}; },
  repName,
  queueName,
  queues: () => [...state.queues.values()],
  notice,
  apply: (c) => { if (c) shown(c); },
  refreshRow,
  focusGrid: () => grid.focus(),
};

/** A conversation as it now is: its row, its open history, and any open dialog about it. */
function shown(c) {
  grid.upsert(c, state.next === null);
  refreshHistoryOf(c.id);
  document.dispatchEvent(new CustomEvent('sb:conversation', { detail: c }));
}

async function refreshRow(id) {
  try {
    const c = await state.api.conversation(id);
    shown(c);
    return c;
  } catch (p) {
    return null;
  }
}

function refreshHistoryOf(id) {
  const panel = $('#history-panel');
  if (id && !panel.hidden && panel.dataset.id === id) showHistory(ctx, id);
}

// ---- the hash keeps the view (filters, page size) without a query string on `/`

function readHash() {
  const q = new URLSearchParams(location.hash.slice(1));
  state.filters = {
    status: q.getAll('status').filter((s) => [...ONGOING, 'closed'].includes(s)),
    queue: q.get('queue') || '',
    representative: q.get('representative') || '',
    entity: q.get('entity') || '',
    intent_based: ['true', 'false'].includes(q.get('intent_based')) ? q.get('intent_based') : '',
  };
  const size = Number(q.get('size'));
  state.size = SIZES.includes(size) ? size : 100;
  const form = $('#filters');
  for (const box of $$('input[name="status"]', form)) box.checked = state.filters.status.includes(box.value);
  for (const k of ['queue', 'representative', 'entity', 'intent_based']) form.elements[k].value = state.filters[k];
  form.elements.size.value = String(state.size);
}

function writeHash() {
  const q = new URLSearchParams();
  for (const s of state.filters.status) q.append('status', s);
  for (const k of ['queue', 'representative', 'entity', 'intent_based']) if (state.filters[k]) q.set(k, state.filters[k]);
  if (state.size !== 100) q.set('size', String(state.size));
  const hash = q.toString();
  if (location.hash.slice(1) !== hash) history.replaceState(null, '', hash ? `#${hash}` : location.pathname);
}

function readFilterForm() {
  const form = $('#filters');
  const fd = new FormData(form);
  state.filters = {
    status: fd.getAll('status').map(String),
    queue: String(fd.get('queue') || ''),
    representative: String(fd.get('representative') || '').trim(),
    entity: String(fd.get('entity') || '').trim().toLowerCase(),
    intent_based: String(fd.get('intent_based') || ''),
  };
  state.size = Number(fd.get('size')) || 100;
  writeHash();
  state.cursors = [null];
  state.page = 0;
  loadPage();
}

// ---- the grid's pages

async function loadPage() {
  const seq = ++state.loading;
  const first = state.firstRender;
  $('#grid').setAttribute('aria-busy', 'true');
  try {
    if (first) performance.mark('sb:list-request');
    const page = await state.api.conversations(state.filters, state.size, state.cursors[state.page]);
    if (seq !== state.loading) return;
    if (first) performance.mark('sb:list-response');
    grid.render(page.items);
    if (first) {
      state.firstRender = false;
      performance.mark('sb:rendered');
      performance.measure('sb:fetch', 'sb:list-request', 'sb:list-response');
      performance.measure('sb:build', 'sb:list-response', 'sb:rendered');
      // Two frames later the rows have been laid out and painted.
      requestAnimationFrame(() => requestAnimationFrame(() => {
        performance.mark('sb:painted');
        performance.measure('sb:paint', 'sb:rendered', 'sb:painted');
        performance.measure('sb:first-render', 'sb:list-request', 'sb:painted');
        document.body.dataset.firstRender = String(page.items.length);
      }));
    }
    state.next = page.next_cursor;
    $('#empty').hidden = page.items.length > 0;
    const start = state.page * state.size;
    $('#page-info').textContent = page.items.length
      ? `Page ${state.page + 1} · rows ${start + 1}–${start + page.items.length}${state.next ? '' : ' (end)'}`
      : `Page ${state.page + 1}`;
    $('#prev').disabled = state.page === 0;
    $('#next').disabled = !state.next;
    if (!first) notice('');
  } catch (p) {
    if (seq === state.loading) notice(`The list could not be loaded: ${p.detail || p.message}`, 'error');
  } finally {
    if (seq === state.loading) $('#grid').removeAttribute('aria-busy');
  }
}

let countsTimer = null;
function refreshCounts(delay = 300) {
  clearTimeout(countsTimer);
  countsTimer = setTimeout(() => showCounts(ctx).catch((p) => notice(`Counts: ${p.detail || p.message}`, 'error')), delay);
}

// ---- the toolbar

function updateToolbar() {
  const sel = grid.selected();
  for (const b of $$('.toolbar [data-action]')) {
    const action = b.dataset.action;
    if (ALLOWED[action]) {
      const bad = sel.filter((c) => !ALLOWED[action].includes(c.status));
      b.disabled = sel.length === 0 || bad.length > 0;
      b.title = sel.length === 0 ? 'Select one or more conversations'
        : bad.length ? `Not allowed from ${[...new Set(bad.map((c) => c.status))].join(', ')}` : '';
    } else if (action === 'history') {
      b.disabled = sel.length !== 1;
    }
  }
  $('#selection').textContent = sel.length === 0 ? 'No conversation selected'
    : sel.length === 1 ? `Selected: ${sel[0].id}` : `${sel.length} conversations selected`;
}

function onToolbar(action) {
  const sel = grid.selected();
  if (action === 'refresh') { loadPage(); refreshCounts(0); return; }
  if (sel.length === 0) return;
  if (action === 'history') showHistory(ctx, sel[0].id).then(() => $('#history-panel').focus());
  else if (action === 'assign' || action === 'transfer') targetDialog(ctx, action, sel);
  else confirmAction(ctx, action, sel);
}

// ---- directory names (representatives, queues), kept current by the feed

async function loadDirectory() {
  const [reps, queues] = await Promise.all([state.api.all('representatives'), state.api.all('queues')]);
  state.reps = new Map(reps.map((r) => [r.id, r]));
  state.queues = new Map(queues.map((q) => [q.id, q]));
  fillDirectoryControls();
}

function fillDirectoryControls() {
  const select = $('#f-queue');
  const current = state.filters.queue;
  select.replaceChildren(h('option', { value: '' }, 'Any'),
    ...[...state.queues.values()].map((q) => h('option', { value: q.id }, q.name)));
  select.value = current;
  $('#rep-ids').replaceChildren(...[...state.reps.values()].map((r) => h('option', { value: r.id }, r.name)));
}

let namesTimer = null;
async function onDirectoryChange(kind, id) {
  try {
    if (kind === 'representative') state.reps.set(id, await state.api.representative(id));
    else state.queues.set(id, await state.api.queue(id));
  } catch { return; }
  clearTimeout(namesTimer);
  namesTimer = setTimeout(() => { fillDirectoryControls(); grid.refreshNames(); }, 200);
}

// ---- live

const pending = new Map(); // conversation id -> version announced
let flushing = false;
function onItem(item) {
  if (item.kind === 'conversation') {
    refreshCounts();
    const row = grid.get(item.id);
    if (row && typeof item.version === 'number' && row.version >= item.version) return; // already shown
    if (!row && state.next !== null) return; // not on this page, and new ones go at the end
    pending.set(item.id, item.version);
    if (!flushing) { flushing = true; queueMicrotask(flush); }
  } else if (item.kind === 'representative' || item.kind === 'queue') {
    onDirectoryChange(item.kind, item.id);
    if (item.kind === 'queue') refreshCounts();
  } else if (item.kind === 'rules') {
    if (!$('#rules-panel').hidden) showRules(ctx);
  }
}

async function flush() {
  const ids = [...pending.keys()];
  pending.clear();
  flushing = false;
  await Promise.all(ids.map((id) => refreshRow(id)));
}

function setLive(s, detail) {
  const el = $('#live');
  el.dataset.state = s;
  el.textContent = s === 'live' ? 'Live' : s === 'reconnecting' ? 'Reconnecting…' : 'Offline';
  el.title = s === 'reconnecting' && detail ? `Connection lost (${detail}); resuming from the last change received` : '';
}

// ---- sign-in

async function signIn(token) {
  const api = new Api(token);
  const me = await api.me();
  sessionStorage.setItem(TOKEN_KEY, token);
  state.api = api;
  state.me = me;
  api.onUnauthorized = () => signOut('The daemon no longer accepts this token; sign in again.');
  $('#me-name').textContent = me.name;
  $('#me-role').textContent = me.role;
  document.body.dataset.role = me.role;
  for (const el of $$('.sup')) el.hidden = !me.may.supervise;
  $('#signin').hidden = true;
  $('#app').hidden = false;
  $('#who').hidden = false;
  readHash();
  // The feed position first: every change after it reaches the page through the stream.
  const head = await api.feedHead();
  await loadDirectory();
  await loadPage();
  refreshCounts(0);
  state.live = new LiveFeed(api, head, { onItem, onState: setLive });
  state.live.start();
  window.switchboardLive = state.live; // lets the browser tests cut the connection
}

function signOut(message = '') {
  state.live?.stop();
  state.live = null;
  sessionStorage.removeItem(TOKEN_KEY);
  state.api = null;
  state.me = null;
  grid.render([]);
  $('#app').hidden = true;
  $('#who').hidden = true;
  $('#history-panel').hidden = true;
  $('#rules-panel').hidden = true;
  for (const d of $$('dialog[open]')) d.close();
  $('#signin').hidden = false;
  $('#signin-error').textContent = message;
  $('#token').value = '';
  $('#token').focus();
}

// ---- wiring

$('#signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const token = $('#token').value.trim();
  $('#signin-error').textContent = '';
  try {
    await signIn(token);
    grid.focus();
  } catch (p) {
    sessionStorage.removeItem(TOKEN_KEY);
    $('#signin-error').textContent = p.status === 401 ? 'This token is not known to the daemon.' : `Sign-in failed: ${p.detail || p.message}`;
  }
});
$('#sign-out').addEventListener('click', () => signOut());
// The skip link moves focus to the grid without touching the address (its hash holds the filters).
$('.skip').addEventListener('click', (e) => { e.preventDefault(); grid.focus(); });

const filters = $('#filters');
filters.addEventListener('change', () => readFilterForm());
filters.addEventListener('reset', () => setTimeout(readFilterForm));
filters.addEventListener('submit', (e) => { e.preventDefault(); readFilterForm(); });
window.addEventListener('hashchange', () => { readHash(); state.cursors = [null]; state.page = 0; loadPage(); });

$('.toolbar').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-action]');
  if (b && !b.disabled) onToolbar(b.dataset.action);
});
$('.toolbar').addEventListener('keydown', (e) => {
  if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
  const buttons = $$('.toolbar button').filter((b) => !b.disabled && !b.hidden);
  const i = buttons.indexOf(document.activeElement);
  if (i < 0) return;
  buttons[(i + (e.key === 'ArrowRight' ? 1 : buttons.length - 1)) % buttons.length].focus();
  e.preventDefault();
});

$('#prev').addEventListener('click', () => { if (state.page > 0) { state.page -= 1; loadPage(); } });
$('#next').addEventListener('click', () => {
  if (!state.next) return;
  state.cursors[state.page + 1] = state.next;
  state.page += 1;
  loadPage();
});

$('#counts').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-distribute]');
  if (b) distributeDialog(ctx, state.queues.get(b.dataset.distribute) ?? { id: b.dataset.distribute, name: b.dataset.distribute });
});

$('#rules-toggle').addEventListener('click', () => {
  const panel = $('#rules-panel');
  if (panel.hidden) showRules(ctx).then(() => panel.focus());
  else { panel.hidden = true; $('#rules-toggle').setAttribute('aria-expanded', 'false'); }
});
for (const b of $$('[data-close]')) {
  b.addEventListener('click', () => {
    $(`#${b.dataset.close}`).hidden = true;
    if (b.dataset.close === 'rules-panel') { $('#rules-toggle').setAttribute('aria-expanded', 'false'); $('#rules-toggle').focus(); }
    else grid.focus();
  });
}
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && !document.querySelector('dialog[open]')) {
    const panel = e.target.closest?.('.panel');
    if (panel) { panel.hidden = true; grid.focus(); }
  }
});

setInterval(() => grid.tickAges(), 30_000);

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) {
  signIn(saved).catch((p) => signOut(p.status === 401 ? 'The daemon no longer accepts this token; sign in again.' : `Sign-in failed: ${p.detail || p.message}`));
} else {
  signOut();
}
